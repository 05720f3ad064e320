"""Peer worker of `bert-tf bench`: keras-hub's `BertBackbone` (Keras 3, TensorFlow backend).

    PYTHONPATH=.venv/keras-hub .venv/bin/python benchmarks/keras_hub_bert.py JOB.json

keras-hub is not a bert-tf dependency: it is installed beside the venv, see
benchmarks/requirements-keras-hub.txt. Case `encoder` only: the backbone with the
model dir's weights, called in a `tf.function` (`jit_compile` when the job says `xla`).

keras-hub's BertBackbone hard-codes the tanh approximation of GELU. For a model
trained with the exact GELU (all-MiniLM-L6-v2, like every HF BERT) the worker
swaps in the exact form before building, so that its outputs can match the others';
the throughput is that of the same graph either way.
Prints one JSON line (benchmarks/common.py).
"""
import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras_hub.src.models.bert import bert_backbone

from common import assign_google_weights, bert_config, emit, encoder_layer_names, load_job, timed

NAMES = {"query": "self_attention_layer/query/", "key": "self_attention_layer/key/",
         "value": "self_attention_layer/value/",
         "attention_output": "self_attention_layer/attention_output/",
         "attention_norm": "self_attention_layer_norm/",
         "intermediate": "feedforward_intermediate_dense/", "output": "feedforward_output_dense/",
         "output_norm": "feedforward_layer_norm/"}


def checkpoint_names(config: dict) -> dict:
    """BertBackbone weight path -> Google checkpoint name."""
    names = {"token_embedding/embeddings": "bert/embeddings/word_embeddings",
             "position_embedding/embeddings": "bert/embeddings/position_embeddings",
             "segment_embedding/embeddings": "bert/embeddings/token_type_embeddings",
             "embeddings_layer_norm/gamma": "bert/embeddings/LayerNorm/gamma",
             "embeddings_layer_norm/beta": "bert/embeddings/LayerNorm/beta",
             "pooled_dense/kernel": "bert/pooler/dense/kernel",
             "pooled_dense/bias": "bert/pooler/dense/bias"}
    for i in range(config["num_hidden_layers"]):
        google = encoder_layer_names(i)
        for role, ours in NAMES.items():
            weights = ("gamma", "beta") if role.endswith("norm") else ("kernel", "bias")
            for w in weights:
                names[f"transformer_layer_{i}/{ours}{w}"] = google[role] + w
    return names


def main():
    job = load_job()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    config = bert_config(job["model"])
    note = ""
    if config["exact_gelu"]:
        bert_backbone.gelu_approximate = lambda x: keras.activations.gelu(x, approximate=False)
        note = ", GELU set to the exact form"
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], hidden_dim=config["hidden_size"],
        intermediate_dim=config["intermediate_size"], dropout=config["hidden_dropout_prob"],
        max_sequence_length=config["max_position_embeddings"],
        num_segments=config["type_vocab_size"])
    assign_google_weights({w.path: w for w in backbone.weights}, checkpoint_names(config),
                          job["model"])
    data = np.load(job["data"])
    inputs = {"token_ids": tf.constant(data["input_word_ids"]),
              "segment_ids": tf.constant(data["input_type_ids"]),
              "padding_mask": tf.constant(data["input_mask"])}
    call = tf.function(lambda x: backbone(x, training=False), jit_compile=job["xla"])

    def run():
        out = call(inputs)
        return {"sequence_output": out["sequence_output"].numpy(),
                "pooled_output": out["pooled_output"].numpy()}
    times, outputs = timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    emit(f"keras-hub {keras_hub.__version__} BertBackbone (Keras {keras.__version__}, "
         f"TensorFlow {tf.__version__}{note}){', XLA' if job['xla'] else ''}", times)


if __name__ == "__main__":
    main()
