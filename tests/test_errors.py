"""Every user error of the `bert-tf` command, as a matrix of commands × kinds of bad
input: a broken model dir (checkpoint, `bert_config.json`, `bert_tf.json`), a folder
where a file is expected (and the reverse), a missing file, an output that is taken,
a text file or a truncated TFRecord as pre-training data, counts of 0 and lengths past
the model's, invalid UTF-8.

Each case must end in one stderr line `bert-tf CMD: error: ...` naming the path or key
at fault (argparse's usage line + error line for flag errors), exit status 2, no
traceback, and no file under the test's folders (its tmp_path, the shared inputs, the
good model dir) added, changed or removed. Errors come before any model is built, so
the matrix runs in-process in about a minute; the few slow cases are known bugs
(`KNOWN_BUGS`, strict xfails) where a bench or a probe runs before the error is seen.
Read-only output folders are skipped as root, which ignores permissions."""
import hashlib
import json
import os
import shutil
import traceback
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tests.conftest import DATA_DIR, report

CKPT = "bert_model.ckpt"

# ---- the inputs every case reads (one module-scoped folder) -------------------------------

CORPUS = """The quick brown fox jumps over the lazy dog. It was not amused at all.
The dog slept through the whole affair. Nobody else saw it happen.

A second document starts here. It talks about the weather in spring.
Rain fell on the fields for three days. The farmers were glad of it.

The third document is about books. Some people read them on trains.
Others prefer to listen to them while they walk.
"""


@dataclass
class Inputs:
    root: str
    model: str                       # a good BERT-tiny model dir
    models: dict = field(default_factory=dict)   # broken kind -> model dir
    files: dict = field(default_factory=dict)    # name -> path

    def __getattr__(self, name):
        files = self.__dict__.get("files", {})
        if name in files:
            return files[name]
        raise AttributeError(name)


def _write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return str(path)


BAD_UTF8 = b"a good line\nthe second line \xff\xfe is not UTF-8\n"


@pytest.fixture(scope="module")
def fx(tmp_path_factory, tiny_model_dir, vocab_file):
    return make_inputs(tmp_path_factory.mktemp("errors-inputs"), tiny_model_dir, vocab_file)


def make_inputs(root, tiny_model_dir, vocab_file) -> Inputs:
    """Broken copies of `tiny_model_dir` and the bad (and good) input files, in `root`
    (a `pathlib.Path`)."""
    from bert_tf.data.pretraining import create_pretraining_data
    inputs = Inputs(str(root), tiny_model_dir)

    # -- broken model dirs: copies of BERT-tiny with one file damaged
    def broken(name, damage):
        path = str(root / "models" / name)
        shutil.copytree(tiny_model_dir, path)
        damage(path)
        inputs.models[name] = path

    def truncate(rel):
        def damage(path):
            target = os.path.join(path, rel)
            size = os.path.getsize(target)
            with open(target, "r+b") as f:
                f.truncate(size // 2)
        return damage

    def replace(rel, data):
        return lambda path: _write(os.path.join(path, rel), data)

    def edit_config(**changes):
        def damage(path):
            target = os.path.join(path, "bert_config.json")
            with open(target) as f:
                config = json.load(f)
            config.update(changes)
            _write(target, json.dumps(config))
        return damage

    broken("ckpt-data-half", truncate(f"{CKPT}.data-00000-of-00001"))
    broken("ckpt-index-garbage", replace(f"{CKPT}.index", os.urandom(64) + b"\x00garbage" * 8))
    broken("config-heads-0", edit_config(num_attention_heads=0))
    broken("config-hidden-negative", edit_config(hidden_size=-128))
    broken("config-not-json", replace("bert_config.json", "hidden_size = 128\n"))
    broken("config-list", replace("bert_config.json", "[]"))
    broken("meta-list", replace("bert_tf.json", "[]"))
    broken("meta-lower-yes", replace("bert_tf.json", '{"do_lower_case": "yes"}'))

    # -- text, TSV, SQuAD JSON: good and bad
    f = inputs.files
    f["corpus"] = _write(root / "corpus.txt", CORPUS)
    f["text"] = _write(root / "sentences.txt", "a sentence\nanother sentence\n")
    f["tsv"] = _write(root / "train.tsv", "sentence\tlabel\ngood film\t1\nbad film\t0\n")
    f["bad_text"] = _write(root / "latin1.txt", BAD_UTF8)
    f["bad_tsv"] = _write(root / "latin1.tsv", b"sentence\tlabel\ngood\t1\nna\xefve \xff\t0\n")
    f["bad_json"] = _write(root / "latin1.json",
                           b'{"version": "1.1", "data": [{"title": "caf\xe9"}]}')
    f["bad_vocab"] = _write(root / "latin1-vocab.txt", b"[PAD]\n[UNK]\ncaf\xe9\n")
    f["folder"] = str(root / "a-folder")
    os.mkdir(f["folder"])
    f["missing"] = str(root / "no-such-file.txt")
    with open(os.path.join(DATA_DIR, "SQuAD1.1", "dev-v1.1.json")) as fh:
        article = json.load(fh)["data"][0]
    paragraph = article["paragraphs"][0]
    paragraph["qas"] = paragraph["qas"][:2]
    article["paragraphs"] = [paragraph]
    f["squad"] = _write(root / "squad.json", json.dumps({"version": "1.1", "data": [article]}))
    f["predictions"] = _write(root / "predictions.json",
                              json.dumps({qa["id"]: "x" for qa in paragraph["qas"]}))

    # -- pre-training records: a good file, one cut after its first records, one cut
    # inside its first record
    good = str(root / "train.tfrecord")
    create_pretraining_data([f["corpus"]], vocab_file, good, max_seq_length=32,
                            max_predictions=4, dupe_factor=4, progress=False)
    data = open(good, "rb").read()
    f["records"] = good
    f["records_half"] = _write(root / "half.tfrecord", data[:len(data) // 2])
    f["records_first_cut"] = _write(root / "first-cut.tfrecord", data[:20])
    f["vocab"] = vocab_file
    return inputs


def snapshot(folder):
    """Relative path -> sha256 of the bytes (None for a folder), of everything under it."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = None
    return out


# ---- the matrix ------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    build: Callable            # (fx, tmp) -> argv; may create files under tmp first
    needles: tuple             # each (or its value for (fx, tmp)) must be in the error line
    xfail: str | None = None   # a known library bug: the reason
    read_only: bool = False    # the output's parent folder is made read-only


def _out(tmp, name="out"):
    return str(tmp / name)


def _small_finetune(tmp):
    return ["--out", _out(tmp), "--train-limit", "8", "--max-seq-length", "16", "--no-export",
            "--quiet"]


def _tsv_job(train, dev):
    return ["finetune", "--task", "tsv", "--train", train, "--dev", dev,
            "--text-column", "sentence", "--label-column", "label"]


# Commands that load a model dir: command -> argv builder taking the model dir.
MODEL_COMMANDS = {
    "info": lambda m, fx, tmp: ["info", m],
    "export": lambda m, fx, tmp: ["export", "--model", m, "--out", _out(tmp)],
    "embed": lambda m, fx, tmp: ["embed", "--model", m, fx.text, "--output",
                                 _out(tmp, "v.npy")],
    "finetune": lambda m, fx, tmp: ["finetune", "--task", "sst2", "--model", m, "--data-dir",
                                    DATA_DIR, *_small_finetune(tmp)],
    "pretrain": lambda m, fx, tmp: ["pretrain", "--init", m, "--train", fx.records, "--out",
                                    _out(tmp), "--steps", "1", "--batch-size", "2", "--quiet"],
    "squad": lambda m, fx, tmp: ["squad", "--model", m, "--train", fx.squad, "--predict",
                                 fx.squad, "--out", _out(tmp), "--max-seq-length", "64",
                                 "--no-export", "--quiet"],
    "pooling-report": lambda m, fx, tmp: ["pooling-report", "--model", m, "--tasks", "sst2",
                                          "--data-dir", DATA_DIR, "--out", _out(tmp),
                                          "--train-limit", "8", "--dev-limit", "8",
                                          "--strategies", "cls", "--quiet"],
    "bench": lambda m, fx, tmp: ["bench", "--model", m, "--peers", "", "--suite", "encoder",
                                 "--batch-size", "2", "--seq-length", "8", "--repeats", "1",
                                 "--out", _out(tmp)],
    "convert": lambda m, fx, tmp: ["convert", "--to", "google", m, "--out", _out(tmp)],
    "embed --runner": lambda m, fx, tmp: ["embed", "--model", m, fx.text, "--output",
                                          _out(tmp, "v"), "--runner", "direct"],
}

# These read no bert_tf.json (weights and config only), so a bad one is not their error:
# `convert --to google` writes Google's layout, which has no such file, and `bench
# --suite encoder` times the encoder alone.
META_UNUSED = {"convert", "bench"}

# Broken model dir kind -> what the error line must name.
BROKEN_MODELS = {
    "ckpt-data-half": (CKPT,),
    "ckpt-index-garbage": (CKPT,),
    "config-heads-0": ("num_attention_heads",),
    "config-hidden-negative": ("hidden_size",),
    "config-not-json": ("bert_config.json",),
    "config-list": ("bert_config.json",),
    "meta-list": ("bert_tf.json",),
    "meta-lower-yes": ("bert_tf.json", "do_lower_case"),
}

# Inputs that must be files: (command, flag) -> argv builder taking the path.
FILE_INPUTS = {
    ("embed", "input"): lambda p, fx, tmp: ["embed", "--model", fx.model, p, "--output",
                                            _out(tmp, "v.npy")],
    ("prepare-text", "input"): lambda p, fx, tmp: ["prepare-text", p, "--out",
                                                   _out(tmp, "c.txt")],
    ("create-pretraining-data", "--input"): lambda p, fx, tmp: [
        "create-pretraining-data", "--input", p, "--vocab", fx.vocab, "--out",
        _out(tmp, "r.tfrecord"), "--quiet"],
    ("create-pretraining-data", "--vocab"): lambda p, fx, tmp: [
        "create-pretraining-data", "--input", fx.corpus, "--vocab", p, "--out",
        _out(tmp, "r.tfrecord"), "--quiet"],
    ("finetune", "--train"): lambda p, fx, tmp: [*_tsv_job(p, fx.tsv), "--model", fx.model,
                                                 *_small_finetune(tmp)],
    ("finetune", "--dev"): lambda p, fx, tmp: [*_tsv_job(fx.tsv, p), "--model", fx.model,
                                               *_small_finetune(tmp)],
    ("pretrain", "--vocab"): lambda p, fx, tmp: ["pretrain", "--config", "tiny", "--vocab", p,
                                                 "--train", fx.records, "--out", _out(tmp),
                                                 "--steps", "1", "--quiet"],
    ("pretrain", "--train"): lambda p, fx, tmp: ["pretrain", "--init", fx.model, "--train", p,
                                                 "--out", _out(tmp), "--steps", "1",
                                                 "--quiet"],
    ("pretrain", "--eval"): lambda p, fx, tmp: ["pretrain", "--init", fx.model, "--train",
                                                fx.records, "--eval", p, "--out", _out(tmp),
                                                "--steps", "1", "--quiet"],
    ("squad", "--train"): lambda p, fx, tmp: ["squad", "--model", fx.model, "--train", p,
                                              "--predict", fx.squad, "--out", _out(tmp),
                                              "--no-export", "--quiet"],
    ("squad", "--predict"): lambda p, fx, tmp: ["squad", "--model", fx.model, "--train",
                                                fx.squad, "--predict", p, "--out", _out(tmp),
                                                "--no-export", "--quiet"],
    ("squad-eval", "data"): lambda p, fx, tmp: ["squad-eval", p, fx.predictions],
    ("squad-eval", "predictions"): lambda p, fx, tmp: ["squad-eval", fx.squad, p],
    ("squad-answer", "--context-file"): lambda p, fx, tmp: [
        "squad-answer", "--export", fx.folder, "--question", "Who?", "--context-file", p],
    ("bench", "--vocab"): lambda p, fx, tmp: ["bench", "--config", "tiny", "--vocab", p,
                                              "--peers", "", "--suite", "encoder",
                                              "--out", _out(tmp)],
    ("predict", "inputs"): lambda p, fx, tmp: ["predict", "--export", fx.folder, p, "--output",
                                               _out(tmp, "p")],
    ("embed --runner", "input"): lambda p, fx, tmp: ["embed", "--model", fx.model, p,
                                                     "--output", _out(tmp, "v"), "--runner",
                                                     "direct"],
}

# Inputs that must be folders: (command, flag) -> argv builder taking the path.
FOLDER_INPUTS = {
    ("info", "model_dir"): lambda p, fx, tmp: ["info", p],
    ("export", "--model"): MODEL_COMMANDS["export"],
    ("embed", "--model"): MODEL_COMMANDS["embed"],
    ("finetune", "--model"): MODEL_COMMANDS["finetune"],
    ("finetune", "--data-dir"): lambda p, fx, tmp: ["finetune", "--task", "sst2", "--model",
                                                    fx.model, "--data-dir", p,
                                                    *_small_finetune(tmp)],
    ("pretrain", "--init"): MODEL_COMMANDS["pretrain"],
    ("squad", "--model"): MODEL_COMMANDS["squad"],
    ("pooling-report", "--model"): MODEL_COMMANDS["pooling-report"],
    ("pooling-report", "--data-dir"): lambda p, fx, tmp: [
        "pooling-report", "--model", fx.model, "--tasks", "sst2", "--data-dir", p, "--out",
        _out(tmp), "--quiet"],
    ("bench", "--model"): MODEL_COMMANDS["bench"],
    ("convert", "--to-google-src"): MODEL_COMMANDS["convert"],
    ("convert", "--from-hf-src"): lambda p, fx, tmp: ["convert", "--from", "hf", p, "--out",
                                                      _out(tmp)],
    ("convert", "--from-google-src"): lambda p, fx, tmp: ["convert", "--from", "google", p,
                                                          "--out", _out(tmp)],
    ("squad-answer", "--export"): lambda p, fx, tmp: ["squad-answer", "--export", p,
                                                      "--question", "Who?", "--context", "x"],
    ("predict", "--export"): lambda p, fx, tmp: ["predict", "--export", p, fx.text, "--output",
                                                 _out(tmp, "p")],
}

# Outputs that are folders: command -> argv builder taking the output path.
FOLDER_OUTPUTS = {
    "finetune": lambda o, fx: ["finetune", "--task", "sst2", "--model", fx.model, "--data-dir",
                               DATA_DIR, "--out", o, "--train-limit", "8", "--no-export",
                               "--quiet"],
    "export": lambda o, fx: ["export", "--model", fx.model, "--out", o],
    "squad": lambda o, fx: ["squad", "--model", fx.model, "--train", fx.squad, "--predict",
                            fx.squad, "--out", o, "--no-export", "--quiet"],
    "pretrain": lambda o, fx: ["pretrain", "--init", fx.model, "--train", fx.records, "--out",
                               o, "--steps", "1", "--quiet"],
    "pooling-report": lambda o, fx: ["pooling-report", "--model", fx.model, "--tasks", "sst2",
                                     "--data-dir", DATA_DIR, "--out", o, "--quiet"],
    "convert": lambda o, fx: ["convert", "--to", "google", fx.model, "--out", o],
    "bench": lambda o, fx: ["bench", "--model", fx.model, "--peers", "", "--suite", "encoder",
                            "--out", o],
}

# Output prefixes (OUTPUT-SSSSS-of-NNNNN files): command -> argv builder taking the prefix.
PREFIX_OUTPUTS = {
    "predict": lambda o, fx: ["predict", "--export", fx.folder, fx.text, "--output", o],
    "embed --runner": lambda o, fx: ["embed", "--model", fx.model, fx.text, "--output", o,
                                     "--runner", "direct"],
}

# Outputs that are files: (command, flag) -> argv builder taking the output path.
FILE_OUTPUTS = {
    ("embed", "--output"): lambda o, fx: ["embed", "--model", fx.model, fx.text, "--output", o],
    ("prepare-text", "--out"): lambda o, fx: ["prepare-text", fx.corpus, "--out", o],
    ("prepare-text", "--eval-out"): lambda o, fx: ["prepare-text", fx.corpus, "--out",
                                                   os.path.join(os.path.dirname(o), "c.txt"),
                                                   "--eval-out", o],
    ("create-pretraining-data", "--out"): lambda o, fx: [
        "create-pretraining-data", "--input", fx.corpus, "--vocab", fx.vocab, "--out", o,
        "--quiet"],
}

# Counts of 0 and lengths past the model's: id -> (argv builder, needles).
BAD_COUNTS = {
    "create-pretraining-data --shards 0": (lambda fx, tmp: [
        "create-pretraining-data", "--input", fx.corpus, "--vocab", fx.vocab, "--out",
        _out(tmp, "r.tfrecord"), "--shards", "0"], ("--shards",)),
    "prepare-text --eval-every 0": (lambda fx, tmp: [
        "prepare-text", fx.corpus, "--out", _out(tmp, "c.txt"), "--eval-out",
        _out(tmp, "e.txt"), "--eval-every", "0"], ("--eval-every",)),
    "embed --batch-size 0": (lambda fx, tmp: [
        "embed", "--model", fx.model, fx.text, "--output", _out(tmp, "v.npy"), "--batch-size",
        "0"], ("--batch-size",)),
    "finetune --epochs 0": (lambda fx, tmp: [
        "finetune", "--task", "sst2", "--model", fx.model, "--data-dir", DATA_DIR, "--out",
        _out(tmp), "--epochs", "0"], ("--epochs",)),
    "export --version 0": (lambda fx, tmp: [
        "export", "--model", fx.model, "--out", _out(tmp), "--version", "0"], ("--version",)),
    "export --seq-length 100000": (lambda fx, tmp: [
        "export", "--model", fx.model, "--out", _out(tmp), "--seq-length", "100000"],
        ("100000", "max_position_embeddings")),
    "embed --max-seq-length 5000": (lambda fx, tmp: [
        "embed", "--model", fx.model, fx.text, "--output", _out(tmp, "v.npy"),
        "--max-seq-length", "5000"], ("5000", "max_position_embeddings")),
    "finetune --max-seq-length 5000": (lambda fx, tmp: [
        "finetune", "--task", "sst2", "--model", fx.model, "--data-dir", DATA_DIR, "--out",
        _out(tmp), "--max-seq-length", "5000", "--train-limit", "8", "--no-export",
        "--quiet"], ("5000", "max_position_embeddings")),
    "squad --max-seq-length 5000": (lambda fx, tmp: [
        "squad", "--model", fx.model, "--train", fx.squad, "--predict", fx.squad, "--out",
        _out(tmp), "--max-seq-length", "5000", "--no-export", "--quiet"],
        ("5000", "max_position_embeddings")),
    "pooling-report --max-seq-length 5000": (lambda fx, tmp: [
        "pooling-report", "--model", fx.model, "--tasks", "sst2", "--data-dir", DATA_DIR,
        "--out", _out(tmp), "--max-seq-length", "5000", "--train-limit", "8", "--dev-limit",
        "8", "--strategies", "cls", "--quiet"], ("5000", "max_position_embeddings")),
    "bench --seq-length 5000": (lambda fx, tmp: [
        "bench", "--model", fx.model, "--peers", "", "--suite", "encoder", "--batch-size", "1",
        "--seq-length", "5000", "--repeats", "1", "--out", _out(tmp)],
        ("5000", "max_position_embeddings")),
    "pretrain --steps 0": (lambda fx, tmp: [
        "pretrain", "--init", fx.model, "--train", fx.records, "--out", _out(tmp), "--steps",
        "0"], ("--steps",)),
    "squad --jit-compile": (lambda fx, tmp: [  # its default is 16 micro-batches
        "squad", "--model", fx.model, "--train", fx.squad, "--predict", fx.squad, "--out",
        _out(tmp), "--jit-compile", "--no-export", "--quiet"],
        ("--micro-batches 16", "--jit-compile")),
    "finetune --jit-compile --micro-batches 2": (lambda fx, tmp: [
        "finetune", "--task", "sst2", "--model", fx.model, "--data-dir", DATA_DIR, "--out",
        _out(tmp), "--jit-compile", "--micro-batches", "2", *_small_finetune(tmp)[2:]],
        ("--micro-batches 2", "--jit-compile")),
    "squad --epochs 0": (lambda fx, tmp: [
        "squad", "--model", fx.model, "--train", fx.squad, "--predict", fx.squad, "--out",
        _out(tmp), "--epochs", "0"], ("--epochs",)),
}

# Known library bugs: case id -> reason (the case is xfail(strict=True)). A reason that
# starts with "traceback" is a case ending in a Python traceback (counted in the summary).
KNOWN_BUGS: dict[str, str] = {}  # all found on 2026-11-30 (commit a8ef2b6) are fixed


def build_cases() -> list[Case]:
    cases = []

    def add(id, build, needles, read_only=False):
        cases.append(Case(id, build, tuple(needles), KNOWN_BUGS.get(id), read_only))

    # 1-3. broken model dirs, for every command that loads one
    for kind, needles in BROKEN_MODELS.items():
        for command, argv in MODEL_COMMANDS.items():
            if kind.startswith("meta-") and command in META_UNUSED:
                continue
            add(f"model[{kind}]-{command}",
                lambda fx, tmp, argv=argv, kind=kind: argv(fx.models[kind], fx, tmp), needles)

    # 4. a folder where a file is expected, a file where a folder is, a missing path
    for (command, flag), argv in FILE_INPUTS.items():
        for what, name in (("folder", "folder"), ("missing", "missing")):
            add(f"input[{what}]-{command} {flag}",
                lambda fx, tmp, argv=argv, name=name: argv(getattr(fx, name), fx, tmp),
                (lambda fx, tmp, name=name: getattr(fx, name),))
    for (command, flag), argv in FOLDER_INPUTS.items():
        for what, name in (("file", "text"), ("missing", "missing")):
            add(f"input[{what}]-{command} {flag}",
                lambda fx, tmp, argv=argv, name=name: argv(getattr(fx, name), fx, tmp),
                (lambda fx, tmp, name=name: getattr(fx, name),))

    # 5. outputs: a file where a folder goes, a taken file, a read-only parent
    def existing_file(tmp, name):
        return _write(tmp / name, "precious\n")

    for command, argv in FOLDER_OUTPUTS.items():
        add(f"output[file]-{command} --out",
            lambda fx, tmp, argv=argv: argv(existing_file(tmp, "out"), fx),
            (lambda fx, tmp: str(tmp / "out"),))
        add(f"output[read-only]-{command} --out",
            lambda fx, tmp, argv=argv: argv(str(tmp / "locked" / "out"), fx),
            (lambda fx, tmp: str(tmp / "locked"),), read_only=True)
    for (command, flag), argv in FILE_OUTPUTS.items():
        name = "v.npy" if command == "embed" else "o.txt"
        add(f"output[exists]-{command} {flag}",
            lambda fx, tmp, argv=argv, name=name: argv(existing_file(tmp, name), fx),
            (name,))
        add(f"output[folder]-{command} {flag}",
            lambda fx, tmp, argv=argv, name=name: argv(_mkdir(tmp / name), fx), (name,))
        add(f"output[read-only]-{command} {flag}",
            lambda fx, tmp, argv=argv, name=name: argv(str(tmp / "locked" / name), fx),
            ("locked",), read_only=True)
    add("output[exists]-create-pretraining-data --out --shards 2",
        lambda fx, tmp: FILE_OUTPUTS["create-pretraining-data", "--out"](
            existing_file(tmp, "r.tfrecord-00001-of-00002")[:-len("-00001-of-00002")], fx)
        + ["--shards", "2"],
        ("r.tfrecord-00001-of-00002",))
    for command, argv in PREFIX_OUTPUTS.items():
        add(f"output[folder]-{command} --output",
            lambda fx, tmp, argv=argv: argv(_mkdir(tmp / "out"), fx), ("out", "is a folder"))
        add(f"output[exists]-{command} --output",
            lambda fx, tmp, argv=argv: argv(
                existing_file(tmp, "p-00000-of-00001.jsonl")[:-len("-00000-of-00001.jsonl")],
                fx), ("p-00000-of-00001.jsonl", "--overwrite"))
        add(f"output[read-only]-{command} --output",
            lambda fx, tmp, argv=argv: argv(str(tmp / "locked" / "p"), fx),
            ("locked",), read_only=True)
    add("output[name]-embed --output .txt",
        lambda fx, tmp: ["embed", "--model", fx.model, fx.text, "--output", str(tmp / "v.txt")],
        ("v.txt",))

    # 6. pre-training data that is not TFRecords of BERT instances
    for name in ("text", "records_half", "records_first_cut"):
        add(f"records[{name}]-pretrain --train",
            lambda fx, tmp, name=name: ["pretrain", "--init", fx.model, "--train",
                                        getattr(fx, name), "--out", _out(tmp), "--steps", "1",
                                        "--batch-size", "2", "--quiet"],
            (lambda fx, tmp, name=name: getattr(fx, name),))
    add("records[text]-pretrain --eval",
        lambda fx, tmp: ["pretrain", "--init", fx.model, "--train", fx.records, "--eval",
                         fx.text, "--out", _out(tmp), "--steps", "1", "--batch-size", "2",
                         "--quiet"],
        (lambda fx, tmp: fx.text,))

    # 7. counts of 0, lengths past max_position_embeddings
    for id, (build, needles) in BAD_COUNTS.items():
        add(f"count-{id}", build, needles)

    # 8. invalid UTF-8 in an input file: the message names the file
    utf8 = [(("prepare-text", "input"), "bad_text"), (("embed", "input"), "bad_text"),
            (("finetune", "--train"), "bad_tsv"), (("finetune", "--dev"), "bad_tsv"),
            (("create-pretraining-data", "--input"), "bad_text"),
            (("create-pretraining-data", "--vocab"), "bad_vocab"),
            (("pretrain", "--vocab"), "bad_vocab"), (("bench", "--vocab"), "bad_vocab"),
            (("squad", "--train"), "bad_json"), (("squad", "--predict"), "bad_json"),
            (("squad-eval", "data"), "bad_json"), (("squad-eval", "predictions"), "bad_json"),
            (("squad-answer", "--context-file"), "bad_text")]
    for (command, flag), name in utf8:
        add(f"utf8-{command} {flag}",
            lambda fx, tmp, argv=FILE_INPUTS[command, flag], name=name:
                argv(getattr(fx, name), fx, tmp),
            (lambda fx, tmp, name=name: getattr(fx, name),))

    # 9. probes: inputs that lie, bad files of every kind, outputs that clash (tests/probes)
    from tests.probes import PROBES
    for id, (build, needles) in PROBES.items():
        add(f"probe-{id}", build, needles)
    return cases


def _mkdir(path):
    os.mkdir(path)
    return str(path)


CASES = build_cases()
RESULTS = {}


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    counts = {}
    for outcome in RESULTS.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    tracebacks = sorted(i for i, o in RESULTS.items() if o == "xfailed" and
                        "traceback" in (KNOWN_BUGS.get(i) or ""))
    report(f"user errors: {len(CASES)} cases (commands × bad inputs), "
           + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
           + f"; {len(tracebacks)} known to end in a traceback")


def run_cli(argv):
    """(exit status, the traceback's last line or None) of `bert-tf ARGV`, in-process."""
    from bert_tf.cli import main
    try:
        return main(argv), None
    except SystemExit as e:
        return e.code, None
    except Exception as e:  # a bug: bert-tf's own errors and OSError never get here
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if f"{os.sep}bert_tf{os.sep}" in f.filename]
        where = f" (raised under {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
        return None, traceback.format_exception_only(type(e), e)[-1].strip() + where


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_user_error(case, fx, tmp_path, capsys):
    RESULTS[case.id] = "failed" if not case.xfail else "xpassed"
    if case.read_only:
        if os.geteuid() == 0:
            RESULTS[case.id] = "skipped"
            pytest.skip("running as root, which ignores folder permissions")
        (tmp_path / "locked").mkdir()
    argv = case.build(fx, tmp_path)
    if case.read_only:
        os.chmod(tmp_path / "locked", 0o500)
    command = argv[0]
    folders = (str(tmp_path), fx.root, fx.model)
    before = [snapshot(folder) for folder in folders]
    capsys.readouterr()
    try:
        status, crash = run_cli(argv)
        out, err = capsys.readouterr()
    finally:
        if case.read_only:
            os.chmod(tmp_path / "locked", 0o700)
    if case.xfail:
        RESULTS[case.id] = "xfailed"
    assert crash is None, f"traceback: {crash}"
    assert "Traceback" not in err, err
    assert status == 2, f"exit status {status}: {err[-1500:]}\nstdout: {out[-1500:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith(f"bert-tf {command}: error: "), err[-2000:]
    assert sum(line.startswith("bert-tf") for line in lines) == 1, err[-2000:]
    if len(lines) > 1:  # only argparse's form: a usage line (and its continuations) first
        assert lines[0].startswith(f"usage: bert-tf {command}") and \
            all(line.startswith(" ") for line in lines[1:-1]), err[-2000:]
    for needle in case.needles:
        needle = needle(fx, tmp_path) if callable(needle) else needle
        assert needle in last, f"{needle!r} not named in: {last}"
    assert [snapshot(folder) for folder in folders] == before, \
        f"files changed, appeared or vanished (after: {last})"
    RESULTS[case.id] = "passed" if not case.xfail else "xpassed"
