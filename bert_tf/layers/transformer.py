"""`TransformerBlock`: one post-LayerNorm Transformer encoder block, as in BERT, and
the pieces it shares with other layers (activations by name, the attention mask bias)."""
from __future__ import annotations

import math

import keras
from keras import ops

from bert_tf.errors import ConfigError


# Added to attention scores of padding keys. Large enough that exp() underflows
# to exactly 0 in float32, small enough to stay finite in float16.
MASK_BIAS = -10000.0


def _init(config_or_range):
    stddev = getattr(config_or_range, "initializer_range", config_or_range)
    return keras.initializers.TruncatedNormal(stddev=stddev)


def activation(name: str):
    """BERT's activations by name; `gelu` is exact (erf), `gelu_tanh` the approximation."""
    if name == "gelu":
        return lambda x: keras.activations.gelu(x, approximate=False)
    if name == "gelu_tanh":
        return lambda x: keras.activations.gelu(x, approximate=True)
    return keras.activations.get(name)


@keras.saving.register_keras_serializable(package="bert_tf")
class TransformerBlock(keras.layers.Layer):
    """One post-LayerNorm Transformer encoder block, as in BERT.

    `x = LayerNorm(x + Dropout(SelfAttention(x)))`, then
    `x = LayerNorm(x + Dropout(Dense(act(Dense(x)))))`.

    Call with `x` `[B, S, H]` and `input_mask` `[B, S]` (1 for tokens, 0 for
    padding; padding keys get no attention).

    With `skip_padding=True` the dense layers (four of the five matmuls per
    token) see only the real tokens, gathered into `[tokens, H]`; only the
    attention scores are computed on the padded `[B, heads, S, S]`. Real tokens'
    outputs are the same (padding keys get no attention either way) and padding
    positions come out as zeros. It pays off whenever batches hold padding
    (serving, length-bucketed fine-tuning: BENCHMARKS.md); it needs dynamic shapes,
    so leave it off under XLA or TPU.

    Example:
        >>> from keras import ops
        >>> block = TransformerBlock(hidden_size=8, num_heads=2, intermediate_size=16)
        >>> tuple(block(ops.ones((2, 5, 8)), ops.ones((2, 5), "int32")).shape)
        (2, 5, 8)
    """

    def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act="gelu",
                 hidden_dropout=0.1, attention_dropout=0.1, layer_norm_eps=1e-12,
                 initializer_range=0.02, skip_padding=False, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ConfigError(f"hidden_size={hidden_size} is not a multiple of num_heads={num_heads}")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.skip_padding = skip_padding
        init = _init(initializer_range)

        def dense(units, name, act=None):
            return keras.layers.Dense(units, activation=act, kernel_initializer=init, name=name)

        self.query = dense(hidden_size, "query")
        self.key = dense(hidden_size, "key")
        self.value = dense(hidden_size, "value")
        self.attention_output = dense(hidden_size, "attention_output")
        self.attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, name="attention_LayerNorm")
        self.intermediate = dense(intermediate_size, "intermediate", activation(hidden_act))
        self.output_dense = dense(hidden_size, "output")
        self.output_layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_eps, name="output_LayerNorm")
        self.attention_probs_dropout = keras.layers.Dropout(attention_dropout)
        self.attention_output_dropout = keras.layers.Dropout(hidden_dropout)
        self.output_dropout = keras.layers.Dropout(hidden_dropout)

    def build(self, input_shape=None):
        h = (None, None, self.hidden_size)
        for layer in (self.query, self.key, self.value, self.attention_output,
                      self.attention_layer_norm, self.intermediate, self.output_layer_norm):
            layer.build(h)
        self.output_dense.build((None, None, self.intermediate_size))
        self.built = True

    def _split_heads(self, x, b, s):
        # [B*S, H] -> [B, heads, S, head_size]
        return _swap_axes_1_2(ops.reshape(x, (b, s, self.num_heads, self.head_size)))

    def call(self, x, input_mask, training=False):
        if self.skip_padding and not training:
            # A batch without padding (a single text, always) has nothing to skip:
            # the plain path saves the gather and scatter of every dense layer.
            return ops.cond(ops.all(input_mask > 0),
                            lambda: self._block(x, input_mask, False, training),
                            lambda: self._block(x, input_mask, True, training))
        return self._block(x, input_mask, self.skip_padding, training)

    def _block(self, x, input_mask, skip_padding, training):
        b, s = ops.shape(x)[0], ops.shape(x)[1]
        attention_bias = attention_bias_from_mask(input_mask)
        # Dense layers see [B*S, H] (or [tokens, H]): one large 2-D matmul each, not a
        # batched one (TensorFlow's CPU kernel for [B, S, H] x [H, O] is several times slower).
        x = ops.reshape(x, (-1, self.hidden_size))
        if skip_padding:
            tokens = ops.where(ops.reshape(input_mask, (-1,)) > 0)[0]
            x = ops.take(x, tokens, axis=0)

            def padded(t):  # [tokens, H] -> [B*S, H], zeros at padding
                return ops.scatter(tokens[:, None], t, (b * s, self.hidden_size))
        else:
            def padded(t):
                return t
        q = self._split_heads(padded(self.query(x)), b, s)
        k = self._split_heads(padded(self.key(x)), b, s)
        v = self._split_heads(padded(self.value(x)), b, s)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(self.head_size))
        scores = scores + ops.cast(attention_bias, scores.dtype)
        probs = self.attention_probs_dropout(ops.softmax(scores, axis=-1), training=training)
        context = ops.reshape(_swap_axes_1_2(ops.matmul(probs, v)), (-1, self.hidden_size))
        if skip_padding:
            context = ops.take(context, tokens, axis=0)
        attention = self.attention_output_dropout(self.attention_output(context), training=training)
        x = self.attention_layer_norm(x + attention)
        ffn = self.output_dropout(self.output_dense(self.intermediate(x)), training=training)
        return ops.reshape(padded(self.output_layer_norm(x + ffn)), (b, s, self.hidden_size))

    def dense_layers(self) -> dict:
        """Google name -> the block's six dense layers (their Keras names: `query`,
        `key`, `value`, `attention_output`, `intermediate`, `output`)."""
        return {
            "attention/self/query": self.query, "attention/self/key": self.key,
            "attention/self/value": self.value, "attention/output/dense": self.attention_output,
            "intermediate/dense": self.intermediate, "output/dense": self.output_dense,
        }

    def checkpoint_variables(self):
        out = {}
        for name, layer in self.dense_layers().items():
            # With LoRA (`bert_tf.models.lora`) `kernel` is the merged W + (alpha/rank)·A·B.
            out[f"{name}/kernel"] = layer.kernel
            out[f"{name}/bias"] = layer.bias
        for name, ln in (("attention/output/LayerNorm", self.attention_layer_norm),
                         ("output/LayerNorm", self.output_layer_norm)):
            out[f"{name}/gamma"] = ln.gamma
            out[f"{name}/beta"] = ln.beta
        return out

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "hidden_act": self.hidden_act, "hidden_dropout": self.hidden_dropout,
                "attention_dropout": self.attention_dropout, "layer_norm_eps": self.layer_norm_eps,
                "initializer_range": self.initializer_range, "skip_padding": self.skip_padding}


def _swap_axes_1_2(x):
    """`[a, b, c, d]` -> `[a, c, b, d]` (the heads' split and merge).

    An einsum, not `ops.transpose`: with oneDNN on, TensorFlow runs a 4-D transpose
    as `_MklTranspose`, about 50 us each at a short request's size (4 per layer,
    ~1 ms of a 10 ms request); the einsum's own transpose takes a few us and is as
    fast at batch 32 (docs/benchmarks.md; 2026-12-07, commit 4bc592b).
    """
    return ops.einsum("abcd->acbd", x)


def attention_bias_from_mask(input_mask):
    """`[B, S]` mask of 1 (token) / 0 (padding) -> additive bias `[B, 1, 1, S]`."""
    mask = ops.cast(input_mask, "float32")
    return (1.0 - mask)[:, None, None, :] * MASK_BIAS
