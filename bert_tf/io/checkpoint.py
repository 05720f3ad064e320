"""bert-tf's model dir: Google's BERT checkpoint format, plus a small metadata file.

A model dir holds:

    bert_config.json          Google's config (see `bert_tf.config` for `gelu_approximate`)
    vocab.txt                 the WordPiece vocab
    bert_model.ckpt.index     a name-based TF checkpoint with Google's variable names:
    bert_model.ckpt.data-*    bert/embeddings/..., bert/encoder/layer_N/..., bert/pooler/...,
                              cls/predictions/... (MLM head), cls/seq_relationship/... (NSP head),
                              classifier/... (task heads of fine-tuned models)
    bert_tf.json              metadata: format version, do_lower_case, task head description

Because the checkpoint uses Google's names, Google's tools read it with
`init_checkpoint=MODEL_DIR/bert_model.ckpt`, and `tf.train.load_checkpoint` reads
Google's checkpoints with no conversion. Model dirs are written whole into a
temporary folder and renamed into place: a failed write leaves nothing behind.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from bert_tf.config import BertConfig, read_json_object
from bert_tf.errors import CheckpointError
from bert_tf.io.atomic import replace_dir, temporary_dir

CKPT_NAME = "bert_model.ckpt"
META_NAME = "bert_tf.json"
FORMAT_VERSION = 1
# The heads a `bert_tf.json` task may describe (`BertClassifier`, `BertSpanModel`,
# `BertTokenClassifier`).
TASK_TYPES = ("classification", "squad", "token_classification")


# -- reading and writing name-based checkpoints -----------------------------------

# What a missing, truncated or garbled checkpoint raises from TensorFlow's reader.
_READ_ERRORS = (tf.errors.OpError, ValueError, IndexError, OSError)


def read_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """All tensors of a name-based TF checkpoint (Google's or ours), by name."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    except _READ_ERRORS as e:
        raise CheckpointError(f"cannot read checkpoint {prefix}: {_first_line(e)}") from e


def checkpoint_shapes(prefix: str) -> dict[str, tuple]:
    """The tensor names and shapes of a checkpoint, without reading the tensors."""
    try:
        return {name: tuple(shape) for name, shape in
                tf.train.load_checkpoint(prefix).get_variable_to_shape_map().items()}
    except _READ_ERRORS as e:
        raise CheckpointError(f"cannot read checkpoint {prefix}: {_first_line(e)}") from e


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file (Hugging Face's weights), by name; a file
    cut short, empty, or with a broken header is a `CheckpointError` naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return load_file(path)
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"cannot read {path} as safetensors: {_first_line(e)}") from e


def _first_line(error: Exception) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0]


def write_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    """Writes a name-based checkpoint (the format of TF1's `Saver`), without TF1 code."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.convert_to_tensor(tensors[n]) for n in names])


# -- Hugging Face names ---------------------------------------------------------------

def google_to_hf_name(name: str) -> tuple[str, bool]:
    """Google variable name -> (HF `BertModel` safetensors name, whether the array is
    transposed). `bert/embeddings/word_embeddings` -> `embeddings.word_embeddings.weight`."""
    special = {"cls/predictions/output_bias": "cls.predictions.bias",
               "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
               "cls/seq_relationship/output_bias": "cls.seq_relationship.bias"}
    if name in special:
        return special[name], False
    hf = re.sub(r"layer_(\d+)", r"layer.\1", name.removeprefix("bert/")).replace("/", ".")
    transpose = hf.endswith(".kernel")
    hf = re.sub(r"\.(kernel|gamma)$", ".weight", hf)
    hf = re.sub(r"\.beta$", ".bias", hf)
    hf = re.sub(r"(word|position|token_type)_embeddings$", r"\1_embeddings.weight", hf)
    return hf, transpose


def hf_tensors_to_google(hf: dict[str, np.ndarray], expected: dict[str, tuple]) -> dict:
    """Picks and renames the tensors of an HF `BertModel` (or `BertFor*`, whose
    names carry a `bert.` prefix) that the Google names in `expected` need."""
    # Older HF checkpoints use LayerNorm.gamma/beta; task checkpoints prefix `bert.`.
    aliases = {}
    for key in hf:
        alias = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
        alias = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", alias)
        aliases[alias] = key
    out = {}
    for name in expected:
        hf_name, transpose = google_to_hf_name(name)
        candidates = [hf_name] if hf_name.startswith("cls.") else [hf_name, "bert." + hf_name]
        key = next((aliases[c] for c in candidates if c in aliases), None)
        if key is None:
            if name.startswith("cls/"):
                continue  # heads are optional
            raise CheckpointError(f"HF checkpoint lacks tensor {hf_name!r} (for {name})")
        out[name] = hf[key].T if transpose else hf[key]
    return out


# -- model dirs -------------------------------------------------------------------------

def check_tensors(tensors: dict[str, np.ndarray], expected: dict[str, tuple],
                  source: str, optional_prefixes=("cls/",)) -> None:
    """Every expected tensor present (optional prefixes may be absent), with its shape."""
    for name, shape in expected.items():
        if name not in tensors:
            if name.startswith(optional_prefixes):
                continue
            raise CheckpointError(f"{source}: missing tensor {name} (expected shape {tuple(shape)})")
        got = tuple(np.shape(tensors[name]))
        if got != tuple(shape):
            raise CheckpointError(f"{source}: tensor {name} has shape {got}, "
                                  f"the config needs {tuple(shape)}")


def read_meta(model_dir: str) -> dict:
    """`bert_tf.json` of a model dir (defaults for a dir without one: Google's layout),
    checked: a format this bert-tf reads, and a task that it can build a head for."""
    path = os.path.join(model_dir, META_NAME)
    if not os.path.exists(path):
        return {"format_version": FORMAT_VERSION, "do_lower_case": True}
    meta = read_json_object(path, "model metadata", CheckpointError)
    version = meta.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is not one this bert-tf "
                              f"reads (1 to {FORMAT_VERSION}); a newer bert-tf wrote it?")
    if not isinstance(meta.get("do_lower_case", True), bool):
        raise CheckpointError(f"{path}: do_lower_case {meta['do_lower_case']!r} must be true "
                              "or false")
    if meta.get("task"):
        _check_task(meta["task"], path)
    return {"format_version": FORMAT_VERSION, "do_lower_case": True, **meta}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_task(task, path: str) -> None:
    """The `task` of `bert_tf.json`: a head bert-tf builds, each key of the kind
    `BertClassifier`, `BertSpanModel` or `BertTokenClassifier` writes."""
    # Imported here: the models import this module.
    from bert_tf.layers.pooling import STRATEGIES
    from bert_tf.models.classifier import PROBLEMS

    def bad(key, why):
        raise CheckpointError(f"{path}: task {key} {task.get(key)!r}: {why}")

    if not isinstance(task, dict):
        raise CheckpointError(f"{path}: task {task!r} must be a JSON object")
    kind = task.get("type")
    if kind not in TASK_TYPES:
        bad("type", f"bert-tf has heads for {list(TASK_TYPES)}")
    lengths = ("max_seq_length",) if kind != "squad" else (
        "max_seq_length", "max_query_length", "max_answer_length")
    for key in lengths:
        if key in task and (not _is_int(task[key]) or task[key] < 1):
            bad(key, "must be a positive integer")
    if kind == "squad":
        return
    labels = task.get("labels")
    if not isinstance(labels, list) or not labels \
            or not all(isinstance(label, str) for label in labels):
        bad("labels", "must be a non-empty list of label names (strings)")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        bad("labels", f"names {repeated} more than once")
    if kind == "token_classification":
        return
    if task.get("pooling") not in STRATEGIES:
        bad("pooling", f"choose one of {list(STRATEGIES)}")
    if not isinstance(task.get("pair", False), bool):
        bad("pair", "must be true or false")
    if task.get("problem", "single_label") not in PROBLEMS:
        bad("problem", f"choose one of {list(PROBLEMS)}")
    threshold = task.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
            or not 0 < threshold < 1:
        bad("threshold", "must be a probability strictly between 0 and 1")


def write_model_dir(out_dir: str, config: BertConfig, vocab, tensors: dict[str, np.ndarray],
                    meta: dict | None = None, overwrite: bool = False) -> str:
    """Writes a complete model dir atomically (temporary folder, then rename).
    `vocab`: a `vocab.txt` path or the list of tokens."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite to replace it")
    check_vocab(vocab, config)
    meta = {"format_version": FORMAT_VERSION, "do_lower_case": True, **(meta or {})}
    with temporary_dir(out_dir) as tmp:
        config.to_json_file(os.path.join(tmp, "bert_config.json"))
        if isinstance(vocab, str):
            shutil.copyfile(vocab, os.path.join(tmp, "vocab.txt"))
        else:
            with open(os.path.join(tmp, "vocab.txt"), "w", encoding="utf-8") as f:
                f.writelines(token + "\n" for token in vocab)
        write_checkpoint(os.path.join(tmp, CKPT_NAME), tensors)
        with open(os.path.join(tmp, META_NAME), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
            f.write("\n")
        replace_dir(tmp, out_dir)
    return out_dir


def write_model_files(out_dir: str, config: BertConfig, vocab, tensors: dict[str, np.ndarray],
                      meta: dict | None = None) -> str:
    """Writes a model dir's files into an existing folder that holds other things
    too (a pre-training run dir): each file complete before it is renamed into
    place, `bert_tf.json` last."""
    with temporary_dir(os.path.join(out_dir, "model")) as tmp:
        staged = write_model_dir(os.path.join(tmp, "model"), config, vocab, tensors, meta)
        for name in sorted(os.listdir(staged), key=lambda n: n == META_NAME):
            os.replace(os.path.join(staged, name), os.path.join(out_dir, name))
    return out_dir


def check_vocab(vocab, config: BertConfig) -> None:
    """The vocab (a `vocab.txt` path or the tokens) is one BERT can use (UTF-8,
    each token once, the special tokens; `bert_tf.preprocessing.tokenizer`) and has
    `config.vocab_size` tokens."""
    # Imported here: the preprocessing package imports this module.
    from bert_tf.preprocessing.tokenizer import check_vocab as check_tokens, load_vocab
    tokens = load_vocab(vocab) if isinstance(vocab, str) else check_tokens(list(vocab),
                                                                            "vocabulary")
    if len(tokens) != config.vocab_size:
        raise CheckpointError(f"{vocab if isinstance(vocab, str) else 'the vocabulary'} has "
                              f"{len(tokens)} tokens but the config says "
                              f"vocab_size={config.vocab_size}")


def vocab_path(model_dir: str) -> str:
    path = os.path.join(model_dir, "vocab.txt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{model_dir}: no vocab.txt")
    return path
