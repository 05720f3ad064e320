"""Probes: models (see tests/probes/__init__.py for the form of a case).

Model dirs that lie (a vocab with a repeated token or Latin-1 bytes, a `bert_tf.json`
task that cannot be a head, a `bert_config.json` of NaN or of a billion layers, a
checkpoint of other shapes than its config) for every command that reads one, and
Hugging Face source dirs whose `model.safetensors` or `tokenizer_config.json` is bad
for `convert --from hf`.

Each broken model dir is the good tiny one with links to its checkpoint files and
its own copies of the small files, so a case costs no copy of the weights."""
import json
import os

from tests.conftest import DATA_DIR

MODEL_FILES = ("bert_config.json", "vocab.txt", "bert_tf.json")


def broken_model(fx, tmp, **files) -> str:
    """`tmp/model`: fx.model with `files` (name -> text or bytes) in place of its own."""
    path = tmp / "model"
    path.mkdir()
    for name in os.listdir(fx.model):
        source = os.path.join(fx.model, name)
        if name in files:
            data = files[name]
            (path / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        elif name in MODEL_FILES:
            (path / name).write_bytes(open(source, "rb").read())
        else:
            os.symlink(source, path / name)
    return str(path)


def _read(fx, name):
    with open(os.path.join(fx.model, name), encoding="utf-8") as f:
        return f.read()


def _config(fx, **changes) -> str:
    return json.dumps({**json.loads(_read(fx, "bert_config.json")), **changes})


def _task(**task) -> str:
    return json.dumps({"format_version": 1, "do_lower_case": True, "task": task})


def _out(tmp, name="out"):
    return str(tmp / name)


# The commands that read a model dir: command -> argv builder taking the model dir.
COMMANDS = {
    "info": lambda m, fx, tmp: ["info", m],
    "export": lambda m, fx, tmp: ["export", "--model", m, "--out", _out(tmp)],
    "embed": lambda m, fx, tmp: ["embed", "--model", m, fx.text, "--output",
                                 _out(tmp, "v.npy")],
    "finetune": lambda m, fx, tmp: ["finetune", "--task", "sst2", "--model", m, "--data-dir",
                                    DATA_DIR, "--out", _out(tmp), "--train-limit", "8",
                                    "--max-seq-length", "16", "--no-export", "--quiet"],
    "convert": lambda m, fx, tmp: ["convert", "--to", "google", m, "--out", _out(tmp)],
}

CLASSIFIER = {"type": "classification", "labels": ["0", "1"], "pooling": "cls", "pair": False,
              "problem": "single_label"}


def _without(key):
    return {k: v for k, v in CLASSIFIER.items() if k != key}


# Broken model dir kind -> (files as functions of fx, needles).
BROKEN = {
    # vocab.txt: line 1001 ("!") repeats line 1997 ("the"), so the count still fits
    "vocab-duplicate": (
        lambda fx: {"vocab.txt": _read(fx, "vocab.txt").replace("\n!\n", "\nthe\n", 1)},
        ("vocab.txt", "'the'", "1000", "1997")),
    "vocab-latin1": (
        lambda fx: {"vocab.txt": _read(fx, "vocab.txt").replace("\ncafe\n", "\n#c#\n", 1)
                    .encode().replace(b"#c#", b"caf\xe9")},
        ("vocab.txt", "UTF-8")),
    # bert_tf.json tasks that cannot be a head
    "task-no-labels": (lambda fx: {"bert_tf.json": _task(**_without("labels"))},
                       ("bert_tf.json", "labels")),
    "task-no-pooling": (lambda fx: {"bert_tf.json": _task(**_without("pooling"))},
                        ("bert_tf.json", "pooling")),
    "task-labels-5": (lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER, "labels": 5})},
                      ("bert_tf.json", "labels", "5")),
    "task-labels-empty": (lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER, "labels": []})},
                          ("bert_tf.json", "labels", "[]")),
    "task-labels-null": (lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER,
                                                             "labels": [1, None]})},
                         ("bert_tf.json", "labels", "[1, None]")),
    "task-labels-repeated": (
        lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER, "labels": ["pos", "neg", "pos"]})},
        ("bert_tf.json", "labels", "'pos'")),
    "task-seq-length-abc": (
        lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER, "max_seq_length": "abc"})},
        ("bert_tf.json", "max_seq_length", "'abc'")),
    "task-pair-yes": (lambda fx: {"bert_tf.json": _task(**{**CLASSIFIER, "pair": "yes"})},
                      ("bert_tf.json", "pair", "'yes'")),
    "task-type-ner": (lambda fx: {"bert_tf.json": _task(type="ner", labels=["O", "B-PER"])},
                      ("bert_tf.json", "type", "'ner'")),
    "format-version-99": (
        lambda fx: {"bert_tf.json": json.dumps({"format_version": 99, "do_lower_case": True})},
        ("bert_tf.json", "format_version", "99")),
    # a task whose head the checkpoint lacks (the tiny model is an encoder)
    "task-head-missing": (lambda fx: {"bert_tf.json": _task(**CLASSIFIER)},
                          ("bert_model.ckpt", "missing tensor output_weights", "(2, 128)")),
    # bert_config.json: numbers that build a model of NaN, zeros or no end
    "config-eps-nan": (lambda fx: {"bert_config.json": _config(fx, layer_norm_eps=float("nan"))},
                       ("bert_config.json", "layer_norm_eps", "nan")),
    "config-eps-inf": (lambda fx: {"bert_config.json": _config(fx, layer_norm_eps=float("inf"))},
                       ("bert_config.json", "layer_norm_eps", "inf")),
    "config-layers-1e9": (lambda fx: {"bert_config.json": _config(fx, num_hidden_layers=10**9)},
                          ("bert_config.json", "num_hidden_layers=1000000000")),
    "config-deep": (lambda fx: {"bert_config.json": "[" * 100000 + "]" * 100000},
                    ("bert_config.json", "nested too deeply")),
    # a checkpoint that does not fit its config
    "config-not-checkpoint": (
        lambda fx: {"bert_config.json": _config(fx, intermediate_size=256)},
        ("bert_model.ckpt", "bert/encoder/layer_0/intermediate/dense/kernel", "(128, 512)",
         "(128, 256)")),
}

PROBES = {}
for _kind, (_files, _needles) in BROKEN.items():
    for _command, _argv in COMMANDS.items():
        PROBES[f"models-{_kind}-{_command}"] = (
            lambda fx, tmp, files=_files, argv=_argv: argv(broken_model(fx, tmp, **files(fx)),
                                                           fx, tmp),
            _needles)


def _vocab_duplicate(fx, tmp):
    path = tmp / "vocab.txt"
    path.write_text(_read(fx, "vocab.txt").replace("\n!\n", "\nthe\n", 1), encoding="utf-8")
    return ["create-pretraining-data", "--input", fx.corpus, "--vocab", str(path), "--out",
            _out(tmp, "r.tfrecord"), "--quiet"]


PROBES["models-vocab-duplicate-create-pretraining-data"] = (
    _vocab_duplicate, ("vocab.txt", "'the'", "1000", "1997"))


# ---- convert --from hf: a tiny Hugging Face source dir, then one file broken ----------------

HF_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]


def hf_source(path, seed=0) -> str:
    """A Hugging Face `BertModel` dir at `path` (config.json, vocab.txt, model.safetensors,
    tokenizer_config.json) of a 1-layer, 8-wide BERT with random weights: a few KB."""
    import numpy as np
    from safetensors.numpy import save_file
    from bert_tf.config import BertConfig
    from bert_tf.io.checkpoint import google_to_hf_name
    from bert_tf.models.convert import expected_shapes
    config = BertConfig(vocab_size=len(HF_VOCAB), hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        hf, transpose = google_to_hf_name(name)
        value = rng.normal(size=shape).astype("float32")
        tensors[hf] = np.ascontiguousarray(value.T if transpose else value)
    os.makedirs(path)
    save_file(tensors, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_hf_dict(), f)
    with open(os.path.join(path, "vocab.txt"), "w") as f:
        f.writelines(token + "\n" for token in HF_VOCAB)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True}, f)
    return str(path)


def _header(length: int) -> bytes:
    return length.to_bytes(8, "little")


# file name -> {kind: the file's new bytes, as a function of its good bytes}
HF_BROKEN = {
    "model.safetensors": {
        "truncated": lambda good: good[:len(good) // 2],
        "empty": lambda good: b"",
        "8-bytes": lambda good: _header(16),
        "garbage-header": lambda good: _header(32) + b"\x00\xffnot a JSON header at all!\x01\x02"
                                       + good[40:],
        "huge-header": lambda good: _header(2**62) + good[8:],
    },
    "tokenizer_config.json": {
        "not-json": lambda good: b'{"do_lower_case": true,',
        "list": lambda good: b"[true]",
        "lower-yes": lambda good: b'{"do_lower_case": "yes"}',
    },
}


def _hf_case(name, damage):
    def build(fx, tmp):
        src = hf_source(tmp / "hf")
        path = os.path.join(src, name)
        with open(path, "rb") as f:
            good = f.read()
        with open(path, "wb") as f:
            f.write(damage(good))
        return ["convert", "--from", "hf", src, "--out", _out(tmp)]
    return build


for _name, _kinds in HF_BROKEN.items():
    for _kind, _damage in _kinds.items():
        PROBES[f"models-hf-{_name}-{_kind}-convert"] = (
            _hf_case(_name, _damage),
            (_name, "do_lower_case") if _kind == "lower-yes" else (_name,))
