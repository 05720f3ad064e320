"""Loading a model dir: the encoder, the preprocessor, or the whole model it holds.

Example:
    >>> import bert_tf, tensorflow as tf
    >>> encoder = bert_tf.load_encoder(model_dir)      # e.g. "saved_models/minilm"
    >>> preprocess = bert_tf.load_preprocessor(model_dir, seq_length=64)
    >>> encoder(preprocess(tf.constant(["hello world"])))["pooled_output"].shape
    TensorShape([1, 128])
"""
from __future__ import annotations

import os

import keras

from bert_tf.config import BertConfig, load_config
from bert_tf.io.checkpoint import CKPT_NAME, META_NAME, check_tensors, check_vocab, \
    checkpoint_shapes, read_checkpoint, read_meta, vocab_path
from bert_tf.models.classifier import BertClassifier
from bert_tf.models.encoder import BertEncoder, checkpoint_shapes as encoder_shapes
from bert_tf.models.pretrainer import BertPretrainer
from bert_tf.models.span import BertSpanModel
from bert_tf.models.token_classifier import BertTokenClassifier
from bert_tf.preprocessing.preprocessor import BertPreprocessor
from bert_tf.preprocessing.tokenizer import BertTokenizer
from bert_tf.presets import resolve_model_dir


def load_encoder(model_dir: str, skip_padding: bool = False) -> BertEncoder:
    """The encoder of a model dir (or of a preset: a name from `bert_tf.presets`, such
    as "all-MiniLM-L6-v2") as a `BertEncoder` (a functional Keras model) with its
    weights (`skip_padding`: see `BertEncoder`)."""
    return BertEncoder.from_preset(model_dir, skip_padding=skip_padding)


def load_preprocessor(model_dir: str, seq_length: int | None = 128,
                      pad_to_longest: bool = False) -> BertPreprocessor:
    """The `BertPreprocessor` (a Keras layer) of a model dir: string tensor `[B]`
    (one segment) or a pair `(a, b)` -> dict of int32 `input_word_ids`,
    `input_mask`, `input_type_ids` `[B, seq_length]`. Longer texts are trimmed to
    `seq_length`; with `pad_to_longest` (or `seq_length=None`, no limit) a batch is
    padded only to its longest sequence. A preset's name will do for `model_dir`."""
    return BertPreprocessor.from_preset(model_dir, seq_length, pad_to_longest)


def load_tokenizer(model_dir: str) -> BertTokenizer:
    """The in-graph `BertTokenizer` of a model dir or preset (its vocab and casing)."""
    model_dir = resolve_model_dir(model_dir)
    return BertTokenizer(vocab_path(model_dir), lower_case=read_meta(model_dir)["do_lower_case"])


def load_model(model_dir: str) -> keras.Model:
    """The model a model dir holds, by its `bert_tf.json` task and checkpoint heads:
    a `BertClassifier` (fine-tuned by `bert-tf finetune`), a `BertSpanModel`
    (`bert-tf squad`), a `BertTokenClassifier` (tags per word), a `BertPretrainer` (a masked-LM head, as Google's checkpoints
    and `bert-tf pretrain` have), else a `BertEncoder`. Task models come with their
    preprocessor. The whole dir is checked first (`check_model_dir`), before a model
    is built. A preset's name (`bert_tf.presets`) will do for `model_dir`."""
    model_dir = resolve_model_dir(model_dir)
    check_model_dir(model_dir)
    task = (read_meta(model_dir).get("task") or {}).get("type")
    if task == "classification":
        return BertClassifier.from_model_dir(model_dir)
    if task == "squad":
        return BertSpanModel.from_model_dir(model_dir)
    if task == "token_classification":
        return BertTokenClassifier.from_model_dir(model_dir)
    if "cls/predictions/output_bias" in checkpoint_shapes(os.path.join(model_dir, CKPT_NAME)):
        return BertPretrainer.from_model_dir(model_dir)
    return BertEncoder.from_model_dir(model_dir)


def check_model_dir(model_dir: str) -> BertConfig:
    """Reads everything loading `model_dir` will need, config, vocab, `bert_tf.json`
    and every checkpoint tensor (names and shapes against the config and the task's
    head), without building a model: jobs call it before they write anything.
    Returns the config; raises the project's errors (`CheckpointError`,
    `ConfigError`, `FileNotFoundError`) naming the file."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir}: no such model dir")
    config = load_config(model_dir)
    check_vocab(vocab_path(model_dir), config)
    task = read_meta(model_dir).get("task") or {}
    if "max_seq_length" in task:
        config.check_seq_length(task["max_seq_length"],
                                f"{os.path.join(model_dir, META_NAME)}: task max_seq_length")
    prefix = os.path.join(model_dir, CKPT_NAME)
    tensors = read_checkpoint(prefix)
    check_tensors(tensors, encoder_shapes(config), prefix)
    check_tensors(tensors, task_head_shapes(task, config), prefix, optional_prefixes=())
    return config


def task_head_shapes(task: dict, config: BertConfig) -> dict[str, tuple]:
    """Google name -> shape of each tensor the head of a `bert_tf.json` task has
    (`read_meta` has checked the task): a classifier's `output_weights`, `output_bias`
    (one row per label) and attention pooling's query, a token classifier's
    `output_weights` and `output_bias` (one row per tag), or the SQuAD span head."""
    h = config.hidden_size
    if task.get("type") == "token_classification":
        n = len(task["labels"])
        return {"output_weights": (n, h), "output_bias": (n,)}
    if task.get("type") == "classification":
        n = len(task["labels"])
        shapes = {"output_weights": (n, h), "output_bias": (n,)}
        if task["pooling"] == "attention":
            shapes["pooling/attention/query"] = (h,)
        return shapes
    if task.get("type") == "squad":
        return {"cls/squad/output_weights": (2, h), "cls/squad/output_bias": (2,)}
    return {}
