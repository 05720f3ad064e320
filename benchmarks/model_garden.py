"""Peer worker of `bert-tf bench`: TF Model Garden (tf-models-official, tf_keras).

    .venv/bin/python benchmarks/model_garden.py BENCH_DIR/work/<job>.json

- encoder: `official.nlp.modeling.networks.BertEncoderV2` with the model dir's
  weights, called in a `tf.function` (`jit_compile` when the job says `xla`).
- train: `official.nlp.modeling.models.BertClassifier` on that encoder, trained by
  tf_keras `fit` with Model Garden's `create_optimizer` (AdamW, linear warm-up and
  decay), batches padded to the max length as its fixed-length input pipelines do.
Prints one JSON line (benchmarks/common.py).
"""
from importlib.metadata import version

import numpy as np
import tensorflow as tf
import tf_keras
from official.nlp import optimization
from official.nlp.modeling import models, networks

from common import assign_google_weights, bert_config, emit, encoder_layer_names, load_job, timed

NAMES = {"query": "self_attention/query/", "key": "self_attention/key/",
         "value": "self_attention/value/", "attention_output": "self_attention/attention_output/",
         "attention_norm": "self_attention_layer_norm/", "intermediate": "intermediate/",
         "output": "output/", "output_norm": "output_layer_norm/"}


def checkpoint_names(config: dict) -> dict:
    """BertEncoderV2 weight name -> Google checkpoint name."""
    names = {"word_embeddings/embeddings": "bert/embeddings/word_embeddings",
             "position_embedding/embeddings": "bert/embeddings/position_embeddings",
             "type_embeddings/embeddings": "bert/embeddings/token_type_embeddings",
             "embeddings/layer_norm/gamma": "bert/embeddings/LayerNorm/gamma",
             "embeddings/layer_norm/beta": "bert/embeddings/LayerNorm/beta",
             "pooler_transform/kernel": "bert/pooler/dense/kernel",
             "pooler_transform/bias": "bert/pooler/dense/bias"}
    for i in range(config["num_hidden_layers"]):
        google = encoder_layer_names(i)
        for role, ours in NAMES.items():
            weights = ("gamma", "beta") if role.endswith("norm") else ("kernel", "bias")
            for w in weights:
                names[f"transformer/layer_{i}/{ours}{w}"] = google[role] + w
    return names


def build_encoder(model_dir: str):
    config = bert_config(model_dir)
    approximate = not config["exact_gelu"]
    encoder = networks.BertEncoderV2(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
        max_sequence_length=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"], inner_dim=config["intermediate_size"],
        inner_activation=lambda x: tf_keras.activations.gelu(x, approximate=approximate),
        output_dropout=config["hidden_dropout_prob"],
        attention_dropout=config["attention_probs_dropout_prob"])
    dummy = tf.ones((1, 2), tf.int32)
    encoder(dict(input_word_ids=dummy, input_mask=dummy, input_type_ids=dummy))
    prefix = encoder.name + "/"
    variables = {v.name.removeprefix(prefix).removesuffix(":0"): v for v in encoder.weights}
    assign_google_weights(variables, checkpoint_names(config), model_dir)
    return encoder


def encoder_case(job: dict, detail: str) -> None:
    encoder = build_encoder(job["model"])
    inputs = {k: tf.constant(v) for k, v in np.load(job["data"]).items()}
    call = tf.function(lambda x: encoder(x, training=False), jit_compile=job["xla"])

    def run():
        out = call(inputs)
        return {"sequence_output": out["sequence_output"].numpy(),
                "pooled_output": out["pooled_output"].numpy()}
    times, outputs = timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    emit(detail + (", XLA" if job["xla"] else ""), times)


def train_case(job: dict, detail: str) -> None:
    data = dict(np.load(job["data"]))
    labels = data.pop("labels")
    length = job["seq_length"]
    features = {k: np.pad(v, ((0, 0), (0, length - v.shape[1]))) for k, v in data.items()}
    batch = job["batch_size"]
    ds = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(len(labels), seed=0)
    ds = ds.batch(batch).prefetch(tf.data.AUTOTUNE)
    steps = -(-len(labels) // batch) * (job["repeats"] + 1)
    model = models.BertClassifier(build_encoder(job["model"]), num_classes=2,
                                  initializer=tf_keras.initializers.TruncatedNormal(stddev=0.02))
    model.compile(optimizer=optimization.create_optimizer(job["learning_rate"], steps,
                                                          int(0.1 * steps)),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times, _ = timed(lambda: model.fit(ds, verbose=0), job["repeats"])
    emit(detail + ", tf_keras fit, padded to max length", times,
         tokens_per_run=int(len(labels) * length))


def main():
    job = load_job()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    detail = (f"Model Garden (tf-models-official {version('tf-models-official')}, "
              f"TensorFlow {tf.__version__})")
    {"encoder": encoder_case, "train": train_case}[job["case"]](job, detail)


if __name__ == "__main__":
    main()
