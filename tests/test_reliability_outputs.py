"""Outputs under faults: `--overwrite` replaces only what the same command wrote (a
user's files in the folder survive byte for byte), a full disk ends in one line that
says so and names the user's path (the previous outputs survive), and a long output
name works. Each case runs `bert-tf` in-process on BERT-tiny."""
import errno
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli
from tests.test_errors import CORPUS, snapshot


def run(argv, capsys):
    """(exit status, last stderr line) of `bert-tf ARGV`."""
    capsys.readouterr()
    status = cli(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return status, lines[-1] if lines else ""


def user_folder(path, files):
    """A folder of the user's files (relative name -> text)."""
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
        with open(os.path.join(path, rel), "w") as f:
            f.write(text)
    return str(path)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def refused(argv, folder, capsys, needles):
    """`argv` exits 2 with one `bert-tf CMD: error:` line holding every needle, and
    every file under `folder` is as it was, byte for byte."""
    before = snapshot(folder)
    status, line = run(argv, capsys)
    assert status == 2, line
    assert line.startswith(f"bert-tf {argv[0]}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert snapshot(folder) == before
    return line


# ---- --overwrite replaces only the command's own outputs -----------------------------------

def previous_export(base):
    """The files of an earlier export, version 1 (stand-ins: what is checked is that
    they are kept, or replaced, byte for byte)."""
    return user_folder(base, {f"{name}/1/{rel}": f"{name} {rel} v1\n"
                              for name in ("encoder", "preprocessor", "serving")
                              for rel in ("saved_model.pb", "variables/variables.index")})


def fake_save(root, path, signatures=None):
    """`tf.saved_model.save` writing a stand-in `saved_model.pb` (no tracing: seconds)."""
    user_folder(path, {"saved_model.pb": "v2\n"})


def test_export_overwrite_keeps_a_users_file_in_a_version(tiny_model_dir, tmp_path, capsys,
                                                          monkeypatch):
    base = previous_export(tmp_path / "exports")
    user_folder(base, {"serving/1/notes.txt": "my notes\n"})
    export = ["export", "--model", tiny_model_dir, "--out", base, "--version", "1",
              "--seq-length", "16", "--overwrite"]
    refused(export, base, capsys, (os.path.join(base, "serving", "1", "notes.txt"),
                                   "--overwrite"))
    # without the user's file, the same command replaces its own export
    os.remove(os.path.join(base, "serving", "1", "notes.txt"))
    monkeypatch.setattr(tf.saved_model, "save", fake_save)
    # (fake_save writes no SavedModel, so there are no signatures to print curls for)
    monkeypatch.setattr("bert_tf.export.serving_instructions", lambda *args: "")
    assert run(export, capsys)[0] == 0
    for name in ("encoder", "preprocessor"):
        assert snapshot(os.path.join(base, name)) == {"1": None, "1/saved_model.pb": sha(
            os.path.join(base, "serving", "1", "saved_model.pb"))}
    assert sorted(os.listdir(os.path.join(base, "serving", "1"))) == ["assets.extra",
                                                                       "saved_model.pb"]


def test_export_version_folder_of_a_user(tiny_model_dir, tmp_path, capsys):
    base = user_folder(tmp_path / "mine", {"serving/1/notes.txt": "mine\n",
                                           "serving/1/saved_model.pb": "not ours\n",
                                           "README": "hello\n"})
    refused(["export", "--model", tiny_model_dir, "--out", base, "--version", "1",
             "--overwrite"], base, capsys, (os.path.join(base, "serving", "1", "notes.txt"),))


@pytest.mark.parametrize("direction", ["--to google", "--from google", "--from hf"])
def test_convert_overwrite_keeps_a_users_folder(direction, tiny_model_dir, tmp_path, capsys):
    src = tiny_model_dir
    if direction == "--from hf":
        from bert_tf.experiments.bench import write_hf_model
        src = write_hf_model(tiny_model_dir, str(tmp_path / "hf"))
    out = user_folder(tmp_path / "mine", {"notes.txt": "my notes\n",
                                          "bert_config.json": "{}\n"})
    argv = ["convert", *direction.split(), src, "--out", out, "--overwrite"]
    refused(argv, out, capsys, (os.path.join(out, "notes.txt"), "--overwrite"))
    # an output of the same conversion is replaced
    os.remove(os.path.join(out, "notes.txt"))
    os.remove(os.path.join(out, "bert_config.json"))
    assert run(argv, capsys)[0] == 0
    written = sha(os.path.join(out, "bert_model.ckpt.index"))
    assert run(argv, capsys)[0] == 0
    assert sha(os.path.join(out, "bert_model.ckpt.index")) == written
    assert os.path.exists(os.path.join(out, "bert_tf.json")) == (direction != "--to google")


# ---- a full disk: one line naming the user's path; the previous outputs survive ------------

def disk_full(*args, **kwargs):
    raise tf.errors.ResourceExhaustedError(
        None, None, "/tmp/.x.tmp-1-abc; No space left on device")


def test_create_pretraining_data_disk_full(tmp_path, vocab_file, capsys, monkeypatch):
    corpus = user_folder(tmp_path, {"corpus.txt": CORPUS}) + "/corpus.txt"
    out = str(tmp_path / "r.tfrecord")
    argv = ["create-pretraining-data", "--input", corpus, "--vocab", vocab_file, "--out", out,
            "--max-seq-length", "32", "--dupe-factor", "1", "--quiet"]
    assert run(argv, capsys)[0] == 0
    monkeypatch.setattr(tf.io.TFRecordWriter, "write", disk_full)
    refused(argv + ["--overwrite"], str(tmp_path), capsys, (out, "disk is full"))


def test_export_disk_full(tiny_model_dir, tmp_path, capsys, monkeypatch):
    base = previous_export(tmp_path / "exports")
    monkeypatch.setattr(tf.saved_model, "save", disk_full)
    refused(["export", "--model", tiny_model_dir, "--out", base, "--version", "1",
             "--seq-length", "16", "--overwrite"], base, capsys,
            (os.path.join(base, "encoder", "1"), "disk is full"))


def test_convert_to_google_disk_full(tiny_model_dir, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "google")
    argv = ["convert", "--to", "google", tiny_model_dir, "--out", out]
    assert run(argv, capsys)[0] == 0
    monkeypatch.setattr(tf.raw_ops, "SaveV2", disk_full)
    refused(argv + ["--overwrite"], str(tmp_path), capsys, (out, "disk is full"))


def test_embed_npy_disk_full(tiny_model_dir, tmp_path, capsys, monkeypatch):
    text = user_folder(tmp_path, {"t.txt": "a sentence\nanother one\n"}) + "/t.txt"
    out = str(tmp_path / "v.npy")
    argv = ["embed", "--model", tiny_model_dir, text, "--output", out, "--max-seq-length", "16"]
    assert run(argv, capsys)[0] == 0

    def short_write(*args, **kwargs):  # what numpy raises when the disk fills mid-array
        raise OSError("51200 requested and 10208 written")
    monkeypatch.setattr(np, "save", short_write)
    line = refused(argv + ["--overwrite"], str(tmp_path), capsys, (out, "disk is full"))
    assert os.strerror(errno.ENOSPC) in line


def test_prepare_text_disk_full_names_the_output_not_the_temporary(tmp_path, capsys,
                                                                   monkeypatch):
    """An ENOSPC from the file being written (which is the hidden temporary) is reported
    under the user's --out."""
    corpus = user_folder(tmp_path, {"corpus.txt": CORPUS, "c.txt": "earlier output\n"})
    out = os.path.join(corpus, "c.txt")

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.f.name)

    import bert_tf.data.pretraining as pretraining
    real = pretraining.atomic_file

    def atomic_file(path, *args, **kwargs):
        class Full:
            def __enter__(self):
                self.context = real(path, *args, **kwargs)
                return FullFile(self.context.__enter__())

            def __exit__(self, *exc):
                return self.context.__exit__(*exc)
        return Full()
    monkeypatch.setattr(pretraining, "atomic_file", atomic_file)
    line = refused(["prepare-text", os.path.join(corpus, "corpus.txt"), "--out", out,
                    "--overwrite"], corpus, capsys, (f"error: {out}: ", "disk is full"))
    assert ".tmp-" not in line


# ---- names ---------------------------------------------------------------------------------

def test_output_name_of_250_characters(tmp_path, capsys):
    corpus = user_folder(tmp_path, {"corpus.txt": CORPUS}) + "/corpus.txt"
    out = str(tmp_path / ("n" * 246 + ".txt"))
    assert run(["prepare-text", corpus, "--out", out], capsys)[0] == 0
    with open(out) as f:
        assert f.read().split("\n\n")[0].split("\n")[0] == "The quick brown fox jumps over " \
            "the lazy dog."
    assert sorted(os.listdir(tmp_path)) == sorted(["corpus.txt", os.path.basename(out)])
