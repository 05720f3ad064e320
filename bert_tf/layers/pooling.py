"""Ways to reduce BERT's `[B, S, H]` sequence output to one `[B, H]` vector.

- `pooled_output`: BERT's own pooler (`BertPooler`: dense + tanh over the first
  token, trained by next-sentence prediction). Taken from the encoder's outputs.
- `cls`: the first ([CLS]) token's final hidden state, with no dense layer.
- `mean`: mean over real tokens (sentence-transformers' pooling for MiniLM).
- `max`: max over real tokens (what `GlobalMaxPool1D` does, minus the padding).
- `mean_sqrt_len`: sum over real tokens divided by √(number of tokens).
- `attention`: a learned query vector; softmax over the real tokens' scores.

Padding never counts: every layer takes `input_mask` `[B, S]`.

Example:
    >>> import numpy as np
    >>> x = np.arange(12, dtype="float32").reshape(1, 3, 4)
    >>> MaskedPooling("mean")(x, np.array([[1, 1, 0]])).numpy().tolist()
    [[2.0, 3.0, 4.0, 5.0]]
"""
from __future__ import annotations

import keras
from keras import ops

from bert_tf.choices import POOLINGS as STRATEGIES
from bert_tf.errors import ConfigError


@keras.saving.register_keras_serializable(package="bert_tf")
class MaskedPooling(keras.layers.Layer):
    """Parameter-free pooling over real tokens: `cls`, `mean`, `max`, `mean_sqrt_len`."""

    def __init__(self, strategy: str, **kwargs):
        super().__init__(**kwargs)
        if strategy not in ("cls", "mean", "max", "mean_sqrt_len"):
            raise ConfigError(f"MaskedPooling has no strategy {strategy!r}")
        self.strategy = strategy

    def call(self, sequence_output, input_mask):
        if self.strategy == "cls":
            return sequence_output[:, 0, :]
        mask = ops.cast(input_mask, sequence_output.dtype)[:, :, None]
        if self.strategy == "max":
            lowest = ops.cast(-1e4 if sequence_output.dtype == "float16" else -1e9,
                              sequence_output.dtype)
            return ops.max(ops.where(mask > 0, sequence_output, lowest), axis=1)
        total = ops.sum(sequence_output * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1.0)
        return total / (count if self.strategy == "mean" else ops.sqrt(count))

    def get_config(self):
        return {**super().get_config(), "strategy": self.strategy}


@keras.saving.register_keras_serializable(package="bert_tf")
class AttentionPooling(keras.layers.Layer):
    """Learned attention pooling: `softmax(x·q / √H)` over real tokens, then the
    weighted sum of `x`. Checkpoint names: `pooling/attention/query`."""

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, sequence_output_shape, input_mask_shape=None):
        self.query = self.add_weight(
            name="query", shape=(sequence_output_shape[-1],),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range))
        self.built = True

    def call(self, sequence_output, input_mask):
        hidden = ops.shape(sequence_output)[-1]
        scores = ops.einsum("bsh,h->bs", sequence_output, ops.cast(self.query, sequence_output.dtype))
        scores = scores / ops.sqrt(ops.cast(hidden, scores.dtype))
        scores = ops.where(ops.cast(input_mask, "bool"), scores, ops.cast(-1e4, scores.dtype))
        weights = ops.softmax(scores, axis=-1)
        return ops.einsum("bs,bsh->bh", weights, sequence_output)

    def checkpoint_variables(self):
        return {"pooling/attention/query": self.query}

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}


def pool(strategy: str, encoder_outputs: dict, input_mask, name: str = "pooling"):
    """The `[B, H]` vector of `strategy` from an encoder's output dict (symbolic or eager)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown pooling {strategy!r}; choose one of {STRATEGIES}")
    if strategy == "pooled_output":
        return encoder_outputs["pooled_output"]
    layer = AttentionPooling(name=name) if strategy == "attention" else MaskedPooling(strategy,
                                                                                       name=name)
    return layer(encoder_outputs["sequence_output"], input_mask)
