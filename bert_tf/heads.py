"""Pre-training heads: masked-LM over the word embeddings, and next-sentence
prediction (NSP) over `pooled_output`. Their checkpoint names are Google's."""
from __future__ import annotations

import keras
from keras import ops

from bert_tf.config import BertConfig
from bert_tf.layers import activation


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


def build_mlm_model(encoder: keras.Model, config: BertConfig) -> keras.Model:
    """Encoder + masked-LM head: the three inputs and `masked_lm_positions` `[B, P]` ->
    the encoder's outputs plus `mlm_logits` `[B, P, vocab]` (the `.mlm` export)."""
    from bert_tf.encoder import encoder_inputs
    inputs = encoder_inputs()
    positions = keras.Input(shape=(None,), dtype="int32", name="masked_lm_positions")
    outputs = dict(encoder(inputs))
    head = MaskedLMHead(config.hidden_size, config.vocab_size, config.hidden_act,
                        config.layer_norm_eps, config.initializer_range,
                        embeddings=encoder.get_layer("embeddings"), name="mlm_head")
    outputs["mlm_logits"] = head(outputs["sequence_output"], positions)
    return keras.Model({**inputs, "masked_lm_positions": positions}, outputs, name="bert_mlm")


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


def build_pretraining_model(encoder: keras.Model, config: BertConfig) -> keras.Model:
    """Encoder + MLM head + NSP head: the three inputs and `masked_lm_positions` ->
    `mlm_logits` `[B, P, vocab]` and `nsp_logits` `[B, 2]` (float32 under mixed
    precision, so that the losses are computed in float32)."""
    mlm = build_mlm_model(encoder, config)
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
              for name in mlm.input}
    outputs = mlm(inputs)
    nsp = NextSentenceHead(config.hidden_size, config.initializer_range, name="nsp_head")
    to_float = keras.layers.Activation("linear", dtype="float32", name="mlm_logits")
    return keras.Model(inputs, {
        "mlm_logits": to_float(outputs["mlm_logits"]),
        "nsp_logits": keras.layers.Activation("linear", dtype="float32", name="nsp_logits")(
            nsp(outputs["pooled_output"]))}, name="bert_pretraining")


def pretraining_heads(model: keras.Model) -> dict:
    """Google names -> variables of a `build_pretraining_model` model's two heads."""
    found = {}
    for layer in _all_layers(model):
        if isinstance(layer, (MaskedLMHead, NextSentenceHead)):
            found.update(layer.checkpoint_variables())
    return found


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
