"""Probes: outputs (see tests/probes/__init__.py for the form of a case).

Outputs that are the same file as another output or an input (by real path: `./X`,
symlinks, hard links), an input inside an output folder that would be replaced,
names too long, versions too large, a user's folder as bench's --out, an empty
question."""
import os
import shutil

from tests.conftest import DATA_DIR


def _write(path, text="precious\n"):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return str(dst)


def _copy_model(fx, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copytree(fx.model, dst)
    return str(dst)


def _path(*parts):
    return lambda fx, tmp: str(tmp.joinpath(*parts))


def _prepare_text_two(eval_out):
    """prepare-text --out tmp/X.txt --eval-out EVAL_OUT(tmp) (X.txt exists)."""
    def build(fx, tmp):
        out = _write(tmp / "X.txt")
        return ["prepare-text", fx.corpus, "--out", out, "--eval-out", eval_out(tmp),
                "--overwrite"]
    return build


def _symlink(tmp):
    os.symlink(tmp / "X.txt", tmp / "link.txt")
    return str(tmp / "link.txt")


def _hardlink(tmp):
    os.link(tmp / "X.txt", tmp / "hard.txt")
    return str(tmp / "hard.txt")


def _prefix_input(command):
    """An input named like a shard of --output (which --overwrite replaces)."""
    def build(fx, tmp):
        shard = _copy(fx.text, tmp / "p-00000-of-00001.jsonl")
        if command == "predict":
            return ["predict", "--export", fx.folder, shard, "--output", str(tmp / "p"),
                    "--overwrite"]
        return ["embed", "--model", fx.model, shard, "--output", str(tmp / "p"), "--runner",
                "direct", "--overwrite"]
    return build


def _run_holding_model(command):
    """--out RUN --overwrite where --model (--init) is RUN/model."""
    def build(fx, tmp):
        model = _copy_model(fx, str(tmp / "run" / "model"))
        out = str(tmp / "run")
        if command == "finetune":
            return ["finetune", "--task", "sst2", "--model", model, "--data-dir", DATA_DIR,
                    "--out", out, "--train-limit", "8", "--max-seq-length", "16",
                    "--no-export", "--quiet", "--overwrite"]
        return ["pretrain", "--init", model, "--train", fx.records, "--out", out, "--steps", "1",
                "--batch-size", "2", "--quiet", "--overwrite"]
    return build


def _squad_holding_train(fx, tmp):
    os.makedirs(tmp / "run")
    train = _copy(fx.squad, tmp / "run" / "train.json")
    return ["squad", "--model", fx.model, "--train", train, "--predict", fx.squad, "--out",
            str(tmp / "run"), "--max-seq-length", "64", "--no-export", "--quiet", "--overwrite"]


def _bench_user_folder(fx, tmp):
    os.makedirs(tmp / "mine")
    _write(tmp / "mine" / "notes.txt")
    return ["bench", "--model", fx.model, "--peers", "", "--suite", "encoder", "--batch-size",
            "1", "--seq-length", "8", "--repeats", "1", "--out", str(tmp / "mine")]


LONG = "n" * 300 + ".txt"

PROBES = {
    # the same file twice: the kept documents were lost to the held-out ones
    "outputs-prepare-text --eval-out = --out": (
        _prepare_text_two(lambda tmp: str(tmp / "X.txt")), (_path("X.txt"), "--eval-out")),
    "outputs-prepare-text --eval-out = ./--out": (
        _prepare_text_two(lambda tmp: os.path.join(str(tmp), ".", "X.txt")),
        (_path("X.txt"), "--eval-out")),
    "outputs-prepare-text --eval-out symlink to --out": (
        _prepare_text_two(_symlink), (_path("X.txt"), _path("link.txt"))),
    "outputs-prepare-text --eval-out hard link to --out": (
        _prepare_text_two(_hardlink), (_path("X.txt"), _path("hard.txt"))),
    "outputs-prepare-text --out = input": (
        lambda fx, tmp: ["prepare-text", _copy(fx.corpus, tmp / "c.txt"), "--out",
                         str(tmp / "c.txt"), "--overwrite"], (_path("c.txt"), "--out")),
    "outputs-create-pretraining-data --out = --input": (
        lambda fx, tmp: ["create-pretraining-data", "--input", _copy(fx.corpus, tmp / "c.txt"),
                         "--vocab", fx.vocab, "--out", str(tmp / "c.txt"), "--overwrite",
                         "--quiet"], (_path("c.txt"), "--input")),
    "outputs-create-pretraining-data --out = --vocab": (
        lambda fx, tmp: ["create-pretraining-data", "--input", fx.corpus, "--vocab",
                         _copy(fx.vocab, tmp / "vocab.txt"), "--out", str(tmp / "vocab.txt"),
                         "--overwrite", "--quiet"], (_path("vocab.txt"), "--vocab")),
    "outputs-embed --output = input": (
        lambda fx, tmp: ["embed", "--model", fx.model, _copy(fx.text, tmp / "t.jsonl"),
                         "--output", str(tmp / "t.jsonl"), "--overwrite"],
        (_path("t.jsonl"), "--output")),
    "outputs-embed --runner --output shard = input": (
        _prefix_input("embed"), (_path("p-00000-of-00001.jsonl"), "--output")),
    "outputs-predict --output shard = input": (
        _prefix_input("predict"), (_path("p-00000-of-00001.jsonl"), "--output")),
    # an input inside the folder the command replaces
    "outputs-finetune --model inside --out": (
        _run_holding_model("finetune"), (_path("run", "model"), "--model")),
    "outputs-pretrain --init inside --out": (
        _run_holding_model("pretrain"), (_path("run", "model"), "--init")),
    "outputs-squad --train inside --out": (
        _squad_holding_train, (_path("run", "train.json"), "--train")),
    "outputs-convert --to google --out = src": (
        lambda fx, tmp: ["convert", "--to", "google", _copy_model(fx, str(tmp / "m")), "--out",
                         str(tmp / "m"), "--overwrite"], (_path("m"), "--out")),
    "outputs-convert --from google --out holds src": (
        lambda fx, tmp: ["convert", "--from", "google", _copy_model(fx, str(tmp / "d" / "m")),
                         "--out", str(tmp / "d"), "--overwrite"], (_path("d", "m"), "--out")),
    "outputs-export --out = --model": (
        lambda fx, tmp: ["export", "--model", _copy_model(fx, str(tmp / "m")), "--out",
                         str(tmp / "m")], (_path("m"), "--model")),
    # names and numbers
    "outputs-prepare-text --out name too long": (
        lambda fx, tmp: ["prepare-text", fx.corpus, "--out", str(tmp / LONG)],
        (_path(LONG), "too long")),
    "outputs-export --version 10**20": (
        lambda fx, tmp: ["export", "--model", fx.model, "--out", str(tmp / "e"), "--version",
                         str(10 ** 20)], ("--version", str(10 ** 20))),
    "outputs-bench --out a user's folder": (
        _bench_user_folder, (_path("mine"), "bench")),
    "outputs-squad-answer empty --question": (
        lambda fx, tmp: ["squad-answer", "--export", fx.folder, "--question", "", "--context",
                         "Ann did."], ("--question",)),
    "outputs-squad-answer blank --question": (
        lambda fx, tmp: ["squad-answer", "--export", fx.folder, "--question", " \t",
                         "--context", "Ann did."], ("--question",)),
}
