"""`build_encoder`: BERT as a functional Keras model with dict inputs and outputs.

Example:
    >>> import numpy as np
    >>> from bert_tf.config import BertConfig
    >>> encoder = build_encoder(BertConfig.preset("tiny", vocab_size=100))
    >>> ids = np.ones((2, 7), "int32")
    >>> out = encoder({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})
    >>> out["sequence_output"].shape, out["pooled_output"].shape, len(out["encoder_outputs"])
    (TensorShape([2, 7, 128]), TensorShape([2, 128]), 2)
"""
from __future__ import annotations

import keras

from bert_tf.config import BertConfig
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")


def encoder_inputs():
    """The three int32 `[batch, seq]` inputs of every BERT model here, both dims dynamic."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}


def build_encoder(config: BertConfig, name: str = "bert_encoder",
                  skip_padding: bool = False) -> keras.Model:
    """A BERT encoder: dict of `input_word_ids`, `input_mask`, `input_type_ids` ->
    dict of `sequence_output` `[B, S, H]`, `pooled_output` `[B, H]` and
    `encoder_outputs` (one `[B, S, H]` per layer; the last is `sequence_output`).
    `skip_padding`: the blocks' dense layers run on the real tokens only (see
    `TransformerBlock`); padding positions of the outputs are then zeros.
    """
    inputs = encoder_inputs()
    x = BertEmbeddings(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, dropout=config.hidden_dropout_prob,
        layer_norm_eps=config.layer_norm_eps, initializer_range=config.initializer_range,
        name="embeddings")(inputs["input_word_ids"], inputs["input_type_ids"])
    encoder_outputs = []
    for i in range(config.num_hidden_layers):
        x = TransformerBlock(
            hidden_size=config.hidden_size, num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size, hidden_act=config.hidden_act,
            hidden_dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            layer_norm_eps=config.layer_norm_eps, initializer_range=config.initializer_range,
            skip_padding=skip_padding, name=f"layer_{i}")(x, inputs["input_mask"])
        encoder_outputs.append(x)
    pooled = BertPooler(config.hidden_size, config.initializer_range, name="pooler")(x)
    outputs = {"sequence_output": x, "pooled_output": pooled, "encoder_outputs": encoder_outputs}
    return keras.Model(inputs, outputs, name=name)


def encoder_checkpoint_variables(encoder: keras.Model) -> dict:
    """Google checkpoint name (`bert/encoder/layer_0/...`) -> Keras variable."""
    out = {}
    blocks = [layer for layer in encoder.layers if isinstance(layer, TransformerBlock)]
    parts = [("bert/embeddings", encoder.get_layer("embeddings")),
             *[(f"bert/encoder/layer_{i}", block) for i, block in enumerate(blocks)],
             ("bert/pooler", encoder.get_layer("pooler"))]
    for prefix, layer in parts:
        for name, var in layer.checkpoint_variables().items():
            out[f"{prefix}/{name}"] = var
    return out
