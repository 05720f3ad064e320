"""Peer worker of `bert-tf bench`: the TF Hub way of running BERT on text.

    .venv/bin/python benchmarks/tfhub_pipeline.py JOB.json

Case `e2e`: bert-tf's exported `preprocessor/1` and `encoder/1` SavedModels used as
TF Hub's BERT models are (what `hub.KerasLayer` calls): the preprocessor pads every
batch to its fixed `seq_length`, then the encoder runs on that. Imports only
TensorFlow and tensorflow-text (for the preprocessing ops).
Prints one JSON line (benchmarks/common.py).
"""
import json

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the preprocessor's ops)

from common import emit, load_job, timed


def main():
    job = load_job()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    preprocess = tf.saved_model.load(f"{job['export']}/preprocessor/1")
    encoder = tf.saved_model.load(f"{job['export']}/encoder/1")
    with open(job["data"]) as f:
        texts = json.load(f)
    batches = [tf.constant(texts[i:i + job["batch_size"]])
               for i in range(0, len(texts), job["batch_size"])]

    def run():
        pooled, tokens = [], 0
        for batch in batches:
            inputs = preprocess(batch)
            pooled.append(encoder(inputs, training=False)["pooled_output"].numpy())
            tokens += int(np.prod(inputs["input_word_ids"].shape))
        return np.concatenate(pooled), tokens
    times, (pooled, tokens) = timed(run, job["repeats"])
    np.savez(job["outputs"], pooled_output=pooled)
    emit(f"TF Hub-style preprocessor + encoder SavedModels, padded to {job['seq_length']} "
         f"(TensorFlow {tf.__version__})", times, tokens_per_run=tokens)


if __name__ == "__main__":
    main()
