"""Sentence vectors from a model dir: one vector per text, in input order.

Example:
    >>> embedder = Embedder(model_dir, pooling="mean")    # e.g. "saved_models/minilm"
    >>> embedder.embed(["a cat", "a dog"]).shape           # [N, hidden size]
    (2, 128)
    >>> unit = Embedder(model_dir, pooling="mean", normalize=True)   # cosine-ready
    >>> [round(float(n), 5) for n in np.linalg.norm(unit.embed(["a cat", "a dog"]), axis=1)]
    [1.0, 1.0]
"""
from __future__ import annotations

import json

import keras
import numpy as np
import tensorflow as tf

from bert_tf.choices import EMBED_POOLINGS
from bert_tf.errors import ConfigError
from bert_tf.io.atomic import atomic_file
from bert_tf.models.encoder import encoder_inputs
from bert_tf.models.loading import check_model_dir, load_encoder, load_tokenizer
from bert_tf.layers.pooling import pool


class Embedder:
    """Text -> `[N, H]` vectors with a pooling strategy; batches are padded to their
    own longest text (at most `max_seq_length`, longer texts trimmed and counted).
    `normalize`: each vector divided by its L2 norm (dot products are then cosines)."""

    def __init__(self, model_dir: str, pooling: str = "pooled_output", max_seq_length: int = 128,
                 batch_size: int = 64, normalize: bool = False):
        if pooling not in EMBED_POOLINGS:
            raise ConfigError(f"pooling {pooling!r}: choose one of {EMBED_POOLINGS} "
                              "(attention pooling has weights only in a fine-tuned model)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size {batch_size!r}: must be a positive integer")
        check_model_dir(model_dir).check_seq_length(max_seq_length, "max_seq_length")
        self.tokenizer = load_tokenizer(model_dir)
        encoder = load_encoder(model_dir)
        inputs = encoder_inputs()
        vector = pool(pooling, encoder(inputs), inputs["input_mask"])
        if normalize:
            vector = keras.ops.normalize(vector, axis=-1, order=2)
        self.model = keras.Model(inputs, vector)
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.trimmed = 0
        spec = [tf.TensorSpec([None], tf.string)]
        self._embed_batch = tf.function(self._embed_batch_eager, input_signature=spec)

    def _embed_batch_eager(self, texts):
        inputs = self.tokenizer.preprocess(texts, self.max_seq_length, pad_to_longest=True)
        trimmed = self.tokenizer.count_trimmed(texts, self.max_seq_length)
        return self.model(inputs, training=False), trimmed

    def embed_batch(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """One batch: `[len(texts), H]` vectors and how many texts were trimmed."""
        vectors, trimmed = self._embed_batch(tf.constant(texts))
        return vectors.numpy(), int(trimmed)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """All texts, in batches of `batch_size`; `self.trimmed` counts the trimmed."""
        bar = keras.utils.Progbar(len(texts), unit_name="text") if progress else None
        vectors = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start:start + self.batch_size]
            v, trimmed = self.embed_batch(batch)
            vectors.append(v)
            self.trimmed += trimmed
            if bar:
                bar.add(len(batch))
        if not vectors:
            return np.zeros((0, self.model.output_shape[-1]), np.float32)
        return np.concatenate(vectors)


def write_vectors(path: str, vectors: np.ndarray, texts: list[str]) -> None:
    """`.npy` (an `[N, H]` float32 array) or `.jsonl` (`{"text", "vector"}` per line),
    written to a temporary file and renamed: `path` is never left half-written."""
    check_output_name(path)
    if path.endswith(".npy"):
        with atomic_file(path, "wb") as f:
            np.save(f, vectors.astype(np.float32))
    else:
        with atomic_file(path) as f:
            for text, v in zip(texts, vectors):
                f.write(json.dumps({"text": text, "vector": [round(float(x), 7) for x in v]}) + "\n")


def check_output_name(path: str) -> None:
    if not path.endswith((".npy", ".jsonl")):
        raise ConfigError(f"output {path}: use a .npy or .jsonl file name")
