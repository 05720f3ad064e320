"""Pretrained-weight conversion into bert-tf model dirs.

- `convert_hf`: Hugging Face `BertModel` safetensors (`config.json`,
  `model.safetensors`, `vocab.txt`).
- `convert_google`: a Google BERT TF1 checkpoint (`bert_config.json`,
  `bert_model.ckpt.*`, `vocab.txt`), read with `tf.train.load_checkpoint`.
- `convert_to_google`: a model dir back to Google's layout.

Every conversion checks each tensor against the config before writing anything, and
says what it reads and what it writes (`convert: reading ...`, `convert: writing ...`).
"""
from __future__ import annotations

import glob
import os
import re
import shutil

import numpy as np

from bert_tf.io.atomic import check_output, check_replaceable, replace_dir, temporary_dir
from bert_tf.io.checkpoint import (CKPT_NAME, META_NAME, CheckpointError, check_tensors,
                                hf_tensors_to_google,
                                read_checkpoint, read_safetensors, write_checkpoint,
                                write_model_dir)
from bert_tf.config import BertConfig, read_json_object
from bert_tf.errors import ConfigError
from bert_tf.models.encoder import checkpoint_shapes
from bert_tf.models.loading import check_model_dir
from bert_tf.layers.heads import pretraining_head_shapes


# What each conversion writes (relative paths): with overwrite, --out is replaced only
# when it holds nothing else, so a user's folder given by mistake loses no file.
_CHECKPOINT_FILES = (rf"bert_config\.json|vocab\.txt|"
                     rf"{re.escape(CKPT_NAME)}\.(index|data-\d+-of-\d+)")
MODEL_DIR_FILES = rf"{_CHECKPOINT_FILES}|{re.escape(META_NAME)}"
GOOGLE_FILES = _CHECKPOINT_FILES


def check_out(out_dir: str, overwrite: bool, files: str, what: str) -> None:
    """Before any work: `out_dir` is free, or (with `overwrite`) a folder holding only
    `files` (a regular expression of relative paths), the files of `what`."""
    check_output(out_dir, overwrite, kind="folder")
    if overwrite:
        check_replaceable(os.path.abspath(out_dir), files, what)


def expected_shapes(config: BertConfig) -> dict[str, tuple]:
    """Google names and shapes of every tensor an encoder with pre-training heads has."""
    return {**checkpoint_shapes(config), **pretraining_head_shapes(config)}


def _reading(path: str) -> None:
    print(f"convert: reading {path}", flush=True)


def _writing(tensors: dict, layout: str, out_dir: str) -> None:
    print(f"convert: writing {len(tensors)} tensors as {layout} to {os.path.abspath(out_dir)}",
          flush=True)


def _require(path: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found")
    return path


def _complete_heads(tensors: dict, source: str, config: BertConfig) -> dict:
    """A head is kept only when all its tensors are there; a partial head is an error."""
    names = pretraining_head_shapes(config)
    for head in ("cls/predictions/", "cls/seq_relationship/"):
        have = [n for n in tensors if n.startswith(head)]
        if have and len(have) != sum(n.startswith(head) for n in names):
            raise CheckpointError(f"{source}: head {head} is incomplete, has only {sorted(have)}")
    return tensors


def convert_hf(src_dir: str, out_dir: str, overwrite: bool = False) -> str:
    check_out(out_dir, overwrite, MODEL_DIR_FILES, "a converted model dir")
    config = BertConfig.from_json_file(_require(os.path.join(src_dir, "config.json")))
    vocab = _require(os.path.join(src_dir, "vocab.txt"))
    weights = _require(os.path.join(src_dir, "model.safetensors"))
    expected = expected_shapes(config)
    _reading(weights)
    tensors = hf_tensors_to_google(read_safetensors(weights), expected)
    check_tensors(tensors, expected, weights)
    tensors = _complete_heads(tensors, weights, config)
    lower = _hf_do_lower_case(src_dir)
    _writing(tensors, "a model dir", out_dir)
    return write_model_dir(out_dir, config, vocab, tensors,
                           {"do_lower_case": lower, "source": f"hf:{os.path.abspath(src_dir)}"},
                           overwrite=overwrite)


def _hf_do_lower_case(src_dir: str) -> bool:
    path = os.path.join(src_dir, "tokenizer_config.json")
    if not os.path.exists(path):
        return True
    lower = read_json_object(path, "tokenizer settings").get("do_lower_case", True)
    if not isinstance(lower, bool):
        raise ConfigError(f"{path}: do_lower_case {lower!r} must be true or false")
    return lower


def find_checkpoint(src_dir: str) -> str:
    """The checkpoint prefix in a Google model dir (`bert_model.ckpt`, or the only one)."""
    prefix = os.path.join(src_dir, CKPT_NAME)
    if os.path.exists(prefix + ".index"):
        return prefix
    found = sorted(glob.glob(os.path.join(src_dir, "*.index")))
    if len(found) != 1:
        raise FileNotFoundError(f"{src_dir}: expected one checkpoint (*.index), found {found}")
    return found[0][: -len(".index")]


def convert_google(src_dir: str, out_dir: str, overwrite: bool = False,
                   do_lower_case: bool = True) -> str:
    check_out(out_dir, overwrite, MODEL_DIR_FILES, "a converted model dir")
    config = BertConfig.from_json_file(_require(os.path.join(src_dir, "bert_config.json")))
    vocab = _require(os.path.join(src_dir, "vocab.txt"))
    prefix = find_checkpoint(src_dir)
    expected = expected_shapes(config)
    _reading(prefix)
    # Optimizer slots (adam_m/v), global_step and the like are left behind.
    tensors = {n: t for n, t in read_checkpoint(prefix).items() if n in expected}
    check_tensors(tensors, expected, prefix)
    tensors = _complete_heads(tensors, prefix, config)
    _writing(tensors, "a model dir", out_dir)
    return write_model_dir(out_dir, config, vocab, tensors,
                           {"do_lower_case": do_lower_case,
                            "source": f"google:{os.path.abspath(src_dir)}"},
                           overwrite=overwrite)


def convert_to_google(model_dir: str, out_dir: str, overwrite: bool = False) -> str:
    """Writes `bert_config.json`, `vocab.txt` and `bert_model.ckpt.*` with Google's
    names, for google-research/bert's tools (`--init_checkpoint`)."""
    check_out(out_dir, overwrite, GOOGLE_FILES, "Google's layout")
    check_model_dir(model_dir)  # a config, vocab and checkpoint that fit each other
    prefix = os.path.join(model_dir, CKPT_NAME)
    _reading(prefix)
    tensors = {n: np.asarray(t) for n, t in read_checkpoint(prefix).items()
               if n.startswith(("bert/", "cls/"))}
    out_dir = os.path.abspath(out_dir)
    _writing(tensors, "Google's layout", out_dir)
    with temporary_dir(out_dir) as tmp:
        for name in ("bert_config.json", "vocab.txt"):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(tmp, name))
        write_checkpoint(os.path.join(tmp, CKPT_NAME), tensors)
        replace_dir(tmp, out_dir)
    return out_dir
