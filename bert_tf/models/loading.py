"""Loading models from a model dir: the public Python API.

Example:
    >>> import bert_tf                                        # doctest: +SKIP
    >>> encoder = bert_tf.load_encoder("saved_models/minilm")
    >>> preprocess = bert_tf.load_preprocessor("saved_models/minilm", seq_length=64)
    >>> outputs = encoder(preprocess(tf.constant(["hello world"])))
    >>> outputs["pooled_output"].shape
    TensorShape([1, 384])
"""
from __future__ import annotations

import os

import keras

from bert_tf.io.checkpoint import CKPT_NAME, check_tensors, read_checkpoint, read_meta
from bert_tf.config import BertConfig, load_config
from bert_tf.models.encoder import build_encoder, encoder_checkpoint_variables
from bert_tf.preprocessing.tokenizer import BertTokenizer, vocab_path


def assign(variables: dict, tensors: dict, source: str) -> None:
    """Assigns checkpoint tensors to Keras variables by name, checking every shape."""
    check_tensors(tensors, {n: tuple(v.shape) for n, v in variables.items()}, source,
                  optional_prefixes=())
    for name, var in variables.items():
        var.assign(tensors[name])


def load_encoder(model_dir: str, config: BertConfig | None = None,
                 skip_padding: bool = False) -> keras.Model:
    """The encoder of a model dir as a functional Keras model with its weights
    (`skip_padding`: see `build_encoder`)."""
    config = config or load_config(model_dir)
    encoder = build_encoder(config, skip_padding=skip_padding)
    prefix = os.path.join(model_dir, CKPT_NAME)
    assign(encoder_checkpoint_variables(encoder), read_checkpoint(prefix), prefix)
    return encoder


def load_mlm_model(model_dir: str, encoder: keras.Model) -> keras.Model | None:
    """Encoder + masked-LM head (`bert_tf.models.pretrainer.build_mlm_model`) with the model dir's
    `cls/predictions/...` weights, or None when it has no MLM head."""
    from bert_tf.models.pretrainer import MaskedLMHead, build_mlm_model
    prefix = os.path.join(model_dir, CKPT_NAME)
    tensors = read_checkpoint(prefix)
    if "cls/predictions/output_bias" not in tensors:
        return None
    model = build_mlm_model(encoder, load_config(model_dir))
    head = next(layer for layer in model.layers if isinstance(layer, MaskedLMHead))
    assign(head.checkpoint_variables(), tensors, prefix)
    return model


def load_tokenizer(model_dir: str) -> BertTokenizer:
    return BertTokenizer(vocab_path(model_dir), lower_case=read_meta(model_dir)["do_lower_case"])


def load_preprocessor(model_dir: str, seq_length: int | None = 128, pad_to_longest=False):
    """A callable: string tensor `[B]` (one segment) or a list of two (pairs) ->
    dict of int32 `input_word_ids`, `input_mask`, `input_type_ids` `[B, seq_length]`.
    Longer texts are trimmed to `seq_length`; with `pad_to_longest` (or
    `seq_length=None`, no limit) a batch is padded only to its longest sequence."""
    tokenizer = load_tokenizer(model_dir)
    return lambda texts: tokenizer.preprocess(texts, seq_length, pad_to_longest)
