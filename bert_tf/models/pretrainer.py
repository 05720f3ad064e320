"""The pre-training model: the encoder with BERT's masked-LM and next-sentence heads."""
from __future__ import annotations

import keras

from bert_tf.config import BertConfig
from bert_tf.layers.heads import MaskedLMHead, NextSentenceHead
from bert_tf.models.encoder import encoder_inputs


def build_mlm_model(encoder: keras.Model, config: BertConfig) -> keras.Model:
    """Encoder + masked-LM head: the three inputs and `masked_lm_positions` `[B, P]` ->
    the encoder's outputs plus `mlm_logits` `[B, P, vocab]` (the `.mlm` export)."""
    inputs = encoder_inputs()
    positions = keras.Input(shape=(None,), dtype="int32", name="masked_lm_positions")
    outputs = dict(encoder(inputs))
    head = MaskedLMHead(config.hidden_size, config.vocab_size, config.hidden_act,
                        config.layer_norm_eps, config.initializer_range,
                        embeddings=encoder.get_layer("embeddings"), name="mlm_head")
    outputs["mlm_logits"] = head(outputs["sequence_output"], positions)
    return keras.Model({**inputs, "masked_lm_positions": positions}, outputs, name="bert_mlm")


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
