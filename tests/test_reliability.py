"""Faults that must not lose work: validation before an overwrite, a full disk while
checkpointing, permissions other users can read, concurrent exports, temporary names
that never collide with user paths, and a serving batch of no texts."""
import errno
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli
from tests.conftest import DATA_DIR, ROOT, report


def snapshot(folder):
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = (open(path, "rb").read()
                                                  if os.path.isfile(path) else None)
    return out


def test_overwrite_checks_the_inputs_before_touching_the_run(tiny_model_dir, tmp_path, capsys):
    """`--overwrite` with a bad `--model` fails and leaves the finished run as it was;
    a folder that is not a bert-tf run is never deleted, not even with --overwrite."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "metrics.json").write_text('{"dev_accuracy": 0.9}')
    before = snapshot(tmp_path)
    assert cli(["finetune", "--task", "sst2", "--model", str(tmp_path / "nope"), "--data-dir",
                DATA_DIR, "--out", str(run), "--overwrite"]) == 2
    assert "nope" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own work")
    squad_file = os.path.join(DATA_DIR, "SQuAD1.1", "dev-v1.1.json")
    for job in (["finetune", "--task", "sst2", "--data-dir", DATA_DIR],
                ["squad", "--train", squad_file, "--train-articles", "0:1", "--predict",
                 squad_file, "--predict-articles", "1:2"]):
        assert cli([*job, "--model", tiny_model_dir, "--out", str(mine), "--overwrite"]) == 2
        assert "is not a bert-tf run" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "my own work"


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_model_dir, tmp_path,
                                                                     monkeypatch, capsys):
    """The second checkpoint write fails with ENOSPC: the error says the disk is full,
    the first checkpoint is intact, and the same command then resumes after its 2
    batches and finishes: it trains only the epoch's other batches and ends at the
    epoch's step count (a resume from the start, or with the optimizer's step count
    lost, would not)."""
    from bert_tf.training import finetune, resume
    real_savez, calls = np.savez, []

    def savez(f, **arrays):
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(f, **arrays)
    monkeypatch.setattr(resume.np, "savez", savez)
    args = ["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir", DATA_DIR,
            "--out", str(tmp_path / "run"), "--train-limit", "200", "--max-seq-length", "32",
            "--checkpoint-every", "2", "--no-export", "--quiet"]
    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("bert-tf finetune: error:") and "disk is full" in err, err
    backup = tmp_path / "run" / "backup"
    assert sorted(os.listdir(backup)) == ["state.npz"]  # the first one, no temporary left
    with np.load(backup / "state.npz") as state:
        assert '"step": 2' in str(state["meta"])
    monkeypatch.setattr(resume.np, "savez", real_savez)
    runs = []

    def fit_resumable(model, *args, **kwargs):
        history, ran = resume.fit_resumable(model, *args, **kwargs)
        runs.append((ran, int(model.optimizer.iterations.numpy())))
        return history, ran
    monkeypatch.setattr(finetune, "fit_resumable", fit_resumable)
    assert cli(args) == 0
    assert "resuming at epoch 1, after 2 of its batches" in capsys.readouterr().out
    with open(tmp_path / "run" / "metrics.json") as f:
        metrics = json.load(f)
    per_epoch = metrics["steps_per_epoch"]
    assert metrics["epochs"] == 1 and len(metrics["history"]["loss"]) == 1 and per_epoch > 4
    assert runs == [(per_epoch - 2, per_epoch)]   # (steps this run trained, the step count)
    assert not backup.exists()


def test_outputs_have_the_permissions_of_the_umask(tiny_model_dir, tmp_path):
    """Exports and model dirs are readable by a server running as another user: folders
    0755 and files 0644 under umask 022 (not the 0700 of a temporary folder)."""
    import bert_tf
    old = os.umask(0o022)
    try:
        model = bert_tf.load_encoder(tiny_model_dir)
        pre = bert_tf.load_preprocessor(tiny_model_dir, 16)
        targets = bert_tf.export_model(model, str(tmp_path / "export"), preprocessor=pre)
        model_dir = model.save_model_dir(str(tmp_path / "model"), preprocessor=pre)
    finally:
        os.umask(old)
    checked = 0
    for top in [*targets.values(), model_dir]:
        for root, dirs, files in os.walk(top):
            assert stat.S_IMODE(os.stat(root).st_mode) == 0o755, root
            for name in files:
                assert stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode) == 0o644, name
                checked += 1
    report(f"permissions under umask 022: {checked} files 0644, their folders 0755")


@pytest.mark.slow
def test_concurrent_exports_take_different_versions(tiny_model_dir, tmp_path):
    """Two exports to one base at once: each gets its own version, both complete; a
    killed export's temporary folder (its process gone) is removed by the next one,
    a running one's is not."""
    base = tmp_path / "base"
    stale = base / "serving" / ".7.tmp-999999999-abc"
    live = base / "serving" / f".8.tmp-{os.getpid()}-abc"
    for path in (stale, live):
        path.mkdir(parents=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "bert_tf", "export", "--model",
                               tiny_model_dir, "--out", str(base), "--seq-length", "16"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    for name in ("encoder", "preprocessor", "serving"):
        versions = sorted(v for v in os.listdir(base / name) if not v.startswith("."))
        assert versions == ["1", "2"], (name, os.listdir(base / name))
        for v in versions:
            assert (base / name / v / "saved_model.pb").exists()
    assert not stale.exists() and live.exists()
    assert not [n for n in os.listdir(base) if n.startswith(".version-")]


def test_temporary_names_never_collide_with_user_paths(tiny_model_dir, tmp_path):
    """`convert --to google X` leaves a user's `X.tmp` alone; a failed atomic write
    leaves the old file as it was and no temporary behind."""
    from bert_tf.io.atomic import atomic_file
    user = tmp_path / "google.tmp"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    assert cli(["convert", "--to", "google", tiny_model_dir, "--out",
                str(tmp_path / "google")]) == 0
    assert (user / "keep.txt").read_text() == "mine"
    target = tmp_path / "vectors.jsonl"
    target.write_text("good earlier output\n")
    with pytest.raises(OSError):
        with atomic_file(str(target)) as f:
            f.write("half of the new output")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "good earlier output\n"
    assert sorted(os.listdir(tmp_path)) == ["google", "google.tmp", "vectors.jsonl"]


def test_serving_a_batch_of_no_texts(tiny_model_dir, tmp_path):
    """An empty request gets empty outputs of the right ranks, not an error."""
    import tensorflow_text  # noqa: F401  (registers the serving export's ops)
    import bert_tf
    encoder = bert_tf.load_encoder(tiny_model_dir)
    clf = bert_tf.BertClassifier(encoder, 2, preprocessor=bert_tf.load_preprocessor(
        tiny_model_dir, 16))
    serving = bert_tf.export_model(clf, str(tmp_path / "clf"))["serving"]
    signatures = tf.saved_model.load(serving).signatures
    out = signatures["serving_default"](text=tf.constant([], tf.string))
    assert out["probabilities"].shape == (0, 2) and out["label"].shape == (0,)
    out = signatures["embed"](text=tf.constant([], tf.string))
    assert out["pooled_output"].shape == (0, 128)
    out = signatures["encode"](text=tf.constant([], tf.string))
    assert out["sequence_output"].shape[0] == 0 and out["input_mask"].shape[0] == 0


def _squad_file(tmp_path) -> str:
    """A SQuAD file of one paragraph and its first 4 questions (from the dev set)."""
    with open(os.path.join(DATA_DIR, "SQuAD1.1", "dev-v1.1.json")) as f:
        article = json.load(f)["data"][0]
    paragraph = article["paragraphs"][0]
    paragraph["qas"] = paragraph["qas"][:4]
    article["paragraphs"] = [paragraph]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "1.1", "data": [article]}))
    return str(path)


def _records(tmp_path, vocab_file) -> str:
    from bert_tf.data.pretraining import create_pretraining_data
    from tests.test_errors import CORPUS
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    path = str(tmp_path / "train.tfrecord")
    create_pretraining_data([str(corpus)], vocab_file, path, max_seq_length=32,
                            max_predictions=4, dupe_factor=4, progress=False)
    return path


@pytest.mark.parametrize("job", ["finetune", "squad", "pretrain"])
def test_a_loss_that_is_not_a_number_stops_the_run(job, tiny_model_dir, vocab_file, tmp_path,
                                                  capsys):
    """A learning rate of 1e30 makes the loss NaN within a few steps: the job stops with
    one line naming the step, exit status 2; the checkpoint of the step before (a
    checkpoint every step) is intact and holds finite numbers; no model, export or
    metrics.json is written as if the run had finished. Before 2026-12-07 (commit
    1691735) every job trained on in NaN and wrote a model of NaN weights."""
    out = tmp_path / "run"
    common = ["--out", str(out), "--learning-rate", "1e30", "--checkpoint-every", "1",
              "--seed", "3", "--quiet"]
    argv = {
        "finetune": ["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir",
                     DATA_DIR, "--train-limit", "24", "--max-seq-length", "16",
                     "--batch-size", "4", "--warmup-proportion", "0", "--epochs", "2"],
        "squad": ["squad", "--model", tiny_model_dir, "--train", _squad_file(tmp_path),
                  "--predict", _squad_file(tmp_path), "--max-seq-length", "64",
                  "--doc-stride", "32", "--max-query-length", "16", "--batch-size", "2",
                  "--micro-batches", "1", "--warmup-proportion", "0"],
        "pretrain": ["pretrain", "--init", tiny_model_dir, "--train",
                     _records(tmp_path, vocab_file), "--steps", "8", "--batch-size", "2",
                     "--warmup-steps", "0"],
    }[job] + common
    capsys.readouterr()
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bert-tf {job}: error: training diverged at "
                                               "step "), err
    step = int(err[0].split("at step ")[1].split(":")[0])
    assert str(out / "backup" / "state.npz") in err[0]
    with np.load(out / "backup" / "state.npz") as state:
        meta = json.loads(str(state["meta"]))
        finite = all(np.isfinite(state[k]).all() for k in state.files
                     if k != "meta" and state[k].dtype.kind == "f")
    steps_per_epoch = {"finetune": 6, "squad": None, "pretrain": 8}[job]
    saved = meta["epoch"] * (steps_per_epoch or 0) + meta["step"]
    report(f"{job} at learning rate 1e30: stopped at step {step}, last checkpoint at step "
           f"{saved if steps_per_epoch else meta['step']}")
    assert finite and step >= 2
    if steps_per_epoch:
        assert saved == step - 1
    else:
        assert meta["epoch"] == 0 and meta["step"] == step - 1
    assert sorted(os.listdir(out)) == ["backup", "logs", "run.json"]


def test_overwrite_refuses_a_folder_that_no_run_of_the_command_wrote(tiny_model_dir, tmp_path,
                                                                     capsys):
    """A folder with an empty `run.json` and the user's files: `finetune --overwrite`
    refuses it in one line naming the folder's run.json and changes nothing. Before
    2026-12-07 (commit 1691735) the whole folder was deleted."""
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "run.json").write_text("{}")
    (mine / "notes.txt").write_text("my own work")
    (mine / "model" / "weights.bin").write_bytes(b"mine too")
    before = snapshot(tmp_path)
    assert cli(["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir", DATA_DIR,
                "--out", str(mine), "--train-limit", "8", "--max-seq-length", "16",
                "--no-export", "--quiet", "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mine / "run.json") in err[0] and "finetune" in err[0], err
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_what_the_command_wrote(tiny_model_dir, tmp_path, capsys):
    """`finetune --overwrite --out LINK`, LINK a symlink to a finished run of the same
    command beside the user's own file: the run is replaced through the link (new
    metrics.json and model, the old ones gone), the user's file and the link stay.
    Before 2026-12-07 (commit 1691735) this failed with "Cannot call rmtree on a
    symbolic link", naming no path (and without the link the user's file was deleted)."""
    from bert_tf.cli import build_parser
    from bert_tf.cli.training import config_from_args
    from bert_tf.training.finetune import FinetuneConfig
    run, link = tmp_path / "run", tmp_path / "link"
    argv = ["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir", DATA_DIR,
            "--out", str(link), "--train-limit", "8", "--max-seq-length", "16", "--no-export",
            "--quiet", "--overwrite"]
    args = config_from_args(FinetuneConfig, build_parser().parse_args(argv)).run_args()
    (run / "model").mkdir(parents=True)
    (run / "model" / "stale.txt").write_text("the old run's model")
    (run / "run.json").write_text(json.dumps(args))
    (run / "metrics.json").write_text('{"dev_accuracy": 0.25}')
    (run / "notes.txt").write_text("my own work")
    link.symlink_to(run, target_is_directory=True)
    assert cli(argv) == 0, capsys.readouterr().err
    assert link.is_symlink() and os.readlink(link) == str(run)
    assert (run / "notes.txt").read_text() == "my own work"
    assert not (run / "model" / "stale.txt").exists() and (run / "model" / "bert_tf.json").exists()
    assert json.loads((run / "metrics.json").read_text())["train_examples"] == 8
    assert sorted(os.listdir(run)) == ["logs", "metrics.json", "model", "notes.txt", "run.json",
                                       "training_curve.png"]
