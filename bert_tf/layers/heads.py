"""Task heads: BERT's pre-training heads (masked-LM over the word embeddings,
next-sentence prediction over `pooled_output`) and the SQuAD span head. Their
checkpoint names are Google's."""
from __future__ import annotations

import keras
from keras import ops

from bert_tf.config import BertConfig
from bert_tf.layers.transformer import activation


def pretraining_head_shapes(config: BertConfig) -> dict[str, tuple]:
    """Google names and shapes of the MLM (`cls/predictions`) and NSP
    (`cls/seq_relationship`) heads."""
    h, v = config.hidden_size, config.vocab_size
    return {
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    }


@keras.saving.register_keras_serializable(package="bert_tf")
class MaskedLMHead(keras.layers.Layer):
    """BERT's masked-LM head: gather the hidden states at `masked_lm_positions`,
    `LayerNorm(act(Dense(x)))`, then logits against the word embeddings (tied)
    plus an output bias: `[B, S, H]`, `[B, P]` -> `[B, P, vocab]`."""

    def __init__(self, hidden_size, vocab_size, hidden_act="gelu", layer_norm_eps=1e-12,
                 initializer_range=0.02, embeddings=None, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = embeddings  # the BertEmbeddings whose word embeddings are tied
        self.hidden_size = hidden_size
        self.vocab_size = vocab_size
        self.hidden_act = hidden_act
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(
            hidden_size, activation=activation(hidden_act), name="transform_dense",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range))
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps,
                                                          name="transform_LayerNorm")

    def build(self, sequence_output_shape=None, masked_lm_positions_shape=None):
        self.dense.build((None, self.hidden_size))
        self.layer_norm.build((None, self.hidden_size))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.vocab_size,),
                                           initializer="zeros")
        self.built = True

    def call(self, sequence_output, masked_lm_positions):
        word_embeddings = self.embeddings.word_embeddings
        x = ops.take_along_axis(sequence_output, ops.cast(masked_lm_positions, "int32")[..., None],
                                axis=1)
        # 2-D matmuls [B·P, H]: TensorFlow's CPU batched matmul (what a 3-D input
        # becomes) and its gradient are several times slower.
        batch, predictions = ops.shape(x)[0], ops.shape(x)[1]
        x = self.layer_norm(self.dense(ops.reshape(x, (-1, self.hidden_size))))
        logits = ops.matmul(x, ops.transpose(ops.cast(word_embeddings, x.dtype)))
        logits = logits + ops.cast(self.output_bias, logits.dtype)
        return ops.reshape(logits, (batch, predictions, self.vocab_size))

    def checkpoint_variables(self):
        return {"cls/predictions/transform/dense/kernel": self.dense.kernel,
                "cls/predictions/transform/dense/bias": self.dense.bias,
                "cls/predictions/transform/LayerNorm/gamma": self.layer_norm.gamma,
                "cls/predictions/transform/LayerNorm/beta": self.layer_norm.beta,
                "cls/predictions/output_bias": self.output_bias}

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "vocab_size": self.vocab_size, "hidden_act": self.hidden_act,
                "layer_norm_eps": self.layer_norm_eps, "initializer_range": self.initializer_range}


@keras.saving.register_keras_serializable(package="bert_tf")
class NextSentenceHead(keras.layers.Layer):
    """BERT's next-sentence head: `pooled_output` `[B, H]` -> logits `[B, 2]`
    (0: B follows A, 1: B is random). Stored as Google's `cls/seq_relationship`
    (`output_weights` `[2, H]`, transposed)."""

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range

    def build(self, pooled_output_shape=None):
        self.output_weights = self.add_weight(
            name="output_weights", shape=(2, self.hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range))
        self.output_bias = self.add_weight(name="output_bias", shape=(2,), initializer="zeros")
        self.built = True

    def call(self, pooled_output):
        weights = ops.cast(self.output_weights, pooled_output.dtype)
        return ops.matmul(pooled_output, ops.transpose(weights)) + ops.cast(self.output_bias,
                                                                             pooled_output.dtype)

    def checkpoint_variables(self):
        return {"cls/seq_relationship/output_weights": self.output_weights,
                "cls/seq_relationship/output_bias": self.output_bias}

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "initializer_range": self.initializer_range}


MASKED = -10_000.0


@keras.saving.register_keras_serializable(package="bert_tf")
class SpanLogits(keras.layers.Layer):
    """`sequence_output` `[B, L, H]` -> start/end logits `[B, 2, L]`.

    Positions outside the second segment (the question, its [SEP], padding) are set
    to -10,000, except [CLS] at position 0, the target of windows without the
    answer. The final [SEP] belongs to the second segment and stays (post-processing
    never picks it). Computed in float32 under mixed precision.

    >>> import keras, numpy as np
    >>> layer = SpanLogits()
    >>> x = keras.random.normal([2, 5, 8])
    >>> mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    >>> types = np.array([[0, 0, 1, 1, 0], [0, 0, 0, 1, 1]])
    >>> tuple(layer(x, mask, types).shape)
    (2, 2, 5)
    """

    def __init__(self, initializer_range: float = 0.02, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.initializer_range = initializer_range

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(input_shape[-1], 2),
            initializer=keras.initializers.TruncatedNormal(stddev=self.initializer_range))
        self.bias = self.add_weight(name="bias", shape=(2,), initializer="zeros")

    def call(self, sequence_output, input_mask, input_type_ids):
        x = keras.ops.cast(sequence_output, "float32")
        logits = keras.ops.einsum("blh,hk->bkl", x, self.kernel) + self.bias[None, :, None]
        positions = keras.ops.arange(keras.ops.shape(input_mask)[1])
        allowed = keras.ops.logical_or(
            keras.ops.logical_and(input_mask > 0, input_type_ids > 0), positions[None, :] == 0)
        return keras.ops.where(allowed[:, None, :], logits, MASKED)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2, input_shape[1])

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}
