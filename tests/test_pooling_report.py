"""`pooling_report`: every cell and output, resume, bad input, a fine-tune cell; the
dev accuracies recomputed independently; the `bert-tf pooling-report` command."""
import argparse
import csv
import json
import os
import shlex

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats as scipy_stats

from bert_tf.cli.experiments import add_pooling_report_parser, pooling_report_config
from bert_tf.data.glue import DataError
from bert_tf.experiments.pooling_report import PoolingReportConfig, command_line, \
    fit_attention_probe, fit_logistic, pooling_report
from bert_tf.layers.pooling import STRATEGIES
from bert_tf.models import load_encoder, load_model, load_preprocessor
from tests.conftest import DATA_DIR, no_dropout_copy, report


def small_config(model, out, tasks=("sst2", "mrpc"), limit=64, **changes):
    return PoolingReportConfig(**{
        "models": [model], "out": str(out), "data_dir": DATA_DIR,
        "tasks": tasks if isinstance(tasks, str) else list(tasks),
        "train_limit": limit, "dev_limit": limit, "max_seq_length": 64, "quiet": True,
        **changes})


def cells_of(out):
    with open(os.path.join(out, "report.json")) as f:
        return {(c["model"], c["task"], c["strategy"], c["mode"]): c for c in json.load(f)["cells"]}


def stamps_of(out):
    return {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}


# ---- independent recomputation: plain csv, the public model API, numpy ---------------------

def read_glue(task: str, split: str, n: int | None = None):
    """(texts, text pairs or None, int labels) of a GLUE TSV, read with `csv` alone."""
    folder, columns = {"sst2": ("SST-2", ("sentence", None, "label")),
                       "mrpc": ("MRPC", ("#1 String", "#2 String", "Quality"))}[task]
    with open(os.path.join(DATA_DIR, folder, f"{split}.tsv"), encoding="utf-8-sig",
              newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    text, text_b, label = columns
    return ([r[text] for r in rows], [r[text_b] for r in rows] if text_b else None,
            np.array([int(r[label]) for r in rows]))


def mean_pooled(model_dir, texts, texts_b, seq_length):
    """Mean of the real tokens' sequence outputs, each text padded to `seq_length`."""
    inputs = tf.constant(texts) if texts_b is None else (tf.constant(texts), tf.constant(texts_b))
    x = load_preprocessor(model_dir, seq_length)(inputs)
    sequence = load_encoder(model_dir)(x, training=False)["sequence_output"].numpy()
    mask = x["input_mask"].numpy()[:, :, None].astype(np.float64)
    return (sequence.astype(np.float64) * mask).sum(axis=1) / mask.sum(axis=1)


def logistic_optimum(z, y):
    """The exact minimiser (Newton's method) of the probe's objective for two labels:
    mean cross-entropy of softmax(z·W + b) + ||W||²/(2N). With W = [-v/2, v/2] (the
    penalty's optimum for a given logit difference v) that is binary logistic
    regression with the penalty ||v||²/(4N). Returns (v, c) and the minimal loss."""
    n, h = z.shape
    a = np.hstack([z, np.ones((n, 1))])
    penalty = np.r_[np.full(h, 1 / (2 * n)), 0.0]  # the bias is not penalised

    def loss(theta):
        m = a @ theta
        return np.mean(np.logaddexp(0, m) - y * m) + 0.5 * np.sum(penalty * theta ** 2)

    theta = np.zeros(h + 1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(a @ theta)))
        grad = a.T @ (p - y) / n + penalty * theta
        if np.linalg.norm(grad) < 1e-12:
            break
        hessian = (a * (p * (1 - p))[:, None]).T @ a / n + np.diag(penalty)
        step, t = np.linalg.solve(hessian, grad), 1.0
        while loss(theta - t * step) > loss(theta) - 0.25 * t * grad @ step and t > 1e-10:
            t /= 2
        theta = theta - t * step
    return theta, loss(theta)


def recompute_mean_probe(model_dir, task, n, seq_length):
    """A `mean` probe cell's train loss, dev accuracy and F1, recomputed without the
    report's reading, tokenising, batching, pooling or optimiser."""
    train, dev = read_glue(task, "train", n), read_glue(task, "dev", n)
    x_train = mean_pooled(model_dir, *train[:2], seq_length)
    x_dev = mean_pooled(model_dir, *dev[:2], seq_length)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    theta, loss = logistic_optimum((x_train - mean) / std, train[2])
    predictions = (((x_dev - mean) / std) @ theta[:-1] + theta[-1] > 0).astype(int)
    y = dev[2]
    tp = np.sum((predictions == 1) & (y == 1))
    f1 = 2 * tp / (2 * tp + np.sum(predictions != y))
    return {"train_loss": loss, "dev_accuracy": np.mean(predictions == y), "dev_f1": f1}


# ---- the tests ---------------------------------------------------------------------------------

def test_probe_report_has_every_cell_and_a_rerun_reuses_them(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    config = small_config(tiny_model_dir, out)
    returned = pooling_report(config)
    for name in ("report.md", "report.json", "report.png"):
        assert (out / name).stat().st_size > 0, name
    cells = cells_of(out)
    assert [(c["model"], c["task"], c["strategy"], c["mode"]) for c in returned["cells"]] \
        == list(cells)
    assert set(cells) == {("tiny", t, s, "probe") for t in ("sst2", "mrpc") for s in STRATEGIES}
    for (_, task, strategy, _), cell in cells.items():
        assert cell["train_examples"] == 64 and cell["dev_examples"] == 64
        right = cell["dev_accuracy"] * 64  # a count of dev examples
        assert right == round(right), (task, strategy)
        assert ("dev_f1" in cell) == (cell["labels"] == ["0", "1"])
    assert max(c["train_accuracy"] for c in cells.values()) > 0.9  # the probes do fit

    # The mean probes, recomputed independently: the logistic regression is convex, so
    # its exact optimum (numpy, Newton) must give the cell's training loss (Adam's 1000
    # steps converge here) and the same dev predictions.
    for task in ("sst2", "mrpc"):
        cell = cells["tiny", task, "mean", "probe"]
        expected = recompute_mean_probe(tiny_model_dir, task, 64, 64)
        assert cell["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-4), task
        assert abs(cell["dev_accuracy"] - expected["dev_accuracy"]) <= 1 / 64, (task, expected)
        assert cell["dev_f1"] == pytest.approx(expected["dev_f1"], abs=0.05), (task, expected)

    md = (out / "report.md").read_text()
    assert returned["command"] == command_line(config)
    assert "bert-tf pooling-report --model" in md and returned["command"] in md
    assert "## sst2" in md and "## mrpc" in md
    assert "tiny probe F1" in md and all(f"| {s} |" in md for s in STRATEGIES)
    report("pooling-report, random BERT-tiny, 64 examples: sst2 probe accuracy " + ", ".join(
        f"{s} {cells['tiny', 'sst2', s, 'probe']['dev_accuracy']:.2f}" for s in STRATEGIES))

    stamps = stamps_of(out)
    capsys.readouterr()
    pooling_report(small_config(tiny_model_dir, out))
    printed = capsys.readouterr().out
    assert printed.count("reused cells/") == 12 and "embedding" not in printed
    assert stamps_of(out) == stamps
    assert cells_of(out) == cells

    # a cell made with other settings is never silently reused
    with pytest.raises(FileExistsError, match="other settings"):
        pooling_report(small_config(tiny_model_dir, out, limit=32))
    assert stamps_of(out) == stamps


@pytest.mark.parametrize("changes,error,message", [
    ({"strategies": ["mean", "median"]}, ValueError, "unknown 'median'"),
    ({"tasks": ["sst2", "cola"]}, ValueError, "unknown 'cola'"),
    ({"tasks": "sst2"}, ValueError, "list of names"),
    ({"strategies": []}, ValueError, "strategies is empty"),
    ({"train_limit": 0}, ValueError, "train_limit must be at least 1, not 0"),
    ({"batch_size": -1}, ValueError, "batch_size must be at least 1"),
    ({"models": ["/a/tiny", "/b/tiny"]}, ValueError, "two model dirs are named 'tiny'"),
    ({"models": ["/nonexistent/model"]}, FileNotFoundError, "no such model dir"),
    ({"data_dir": "/nonexistent/data"}, DataError, "SST-2/train.tsv"),
])
def test_bad_input_raises_and_writes_nothing(tiny_model_dir, tmp_path, changes, error, message):
    with pytest.raises(error, match=message):
        pooling_report(small_config(tiny_model_dir, tmp_path / "report", **changes))
    assert not (tmp_path / "report").exists()


def test_config_dedupes_and_the_command_gives_the_same_config(tiny_model_dir, tmp_path):
    config = small_config(tiny_model_dir, tmp_path, tasks=["mrpc", "sst2", "mrpc"],
                          strategies=["max", "cls", "max"], finetune=True, epochs=2, seed=3,
                          seeds=4,
                          learning_rate=3e-5, batch_size=8)
    assert config.tasks == ["mrpc", "sst2"] and config.strategies == ["max", "cls"]
    parser = argparse.ArgumentParser()
    add_pooling_report_parser(parser.add_subparsers(dest="command"))
    argv = shlex.split(command_line(config))
    assert argv[:2] == ["bert-tf", "pooling-report"]
    assert pooling_report_config(parser.parse_args(argv[1:])) == config


def test_finetune_cells_over_two_seeds_and_their_runs_are_reused(tiny_model_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "report"
    config = small_config(tiny_model_dir, out, tasks=["sst2"], limit=16,
                          strategies=["pooled_output", "mean"], finetune=True, seeds=2, seed=5,
                          max_seq_length=32)
    report_dict = pooling_report(config)
    cells = cells_of(out)
    assert set(cells) == {("tiny", "sst2", s, mode) for s in ("pooled_output", "mean")
                          for mode in ("probe", "finetune")}
    tuned = {(c["strategy"], c["seed"]): c for c in report_dict["cells"] if c["mode"] == "finetune"}
    assert set(tuned) == {(s, seed) for s in ("pooled_output", "mean") for seed in (5, 6)}
    _, _, labels = read_glue("sst2", "dev")
    for (strategy, seed), cell in tuned.items():
        assert cell["train_examples"] == 16
        assert cell["dev_examples"] == 872  # fine-tune cells evaluate on the whole dev set
        run_dir = out / "runs" / f"tiny-sst2-{strategy}-seed{seed}"
        assert cell["run_dir"] == str(run_dir)
        assert json.loads((run_dir / "run.json").read_text())["seed"] == seed
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert cell["dev_accuracy"] == metrics["dev_accuracy"]
        # the saved per-example predictions give the run's own metrics, in the file's order
        predictions = np.array(cell["dev_predictions"])
        assert cell["dev_labels"] == labels.tolist()
        assert np.mean(predictions == labels) == pytest.approx(metrics["dev_accuracy"], abs=1e-12)
        tp = np.sum((predictions == 1) & (labels == 1))
        assert 2 * tp / (2 * tp + np.sum(predictions != labels)) == pytest.approx(
            metrics["dev_f1"], abs=1e-12)
    # another seed is another run (head and data order)
    assert tuned["mean", 5]["dev_predictions"] != tuned["mean", 6]["dev_predictions"]
    # the statistics over the two seeds, recomputed with scipy from the cells
    mean_stats = next(s for s in report_dict["statistics"] if s["strategy"] == "mean")
    values = [tuned["mean", seed]["dev_accuracy"] for seed in (5, 6)]
    base = [tuned["pooled_output", seed]["dev_accuracy"] for seed in (5, 6)]
    assert mean_stats["dev_accuracy"]["ci95"] == pytest.approx(list(scipy_stats.t.interval(
        0.95, 1, loc=np.mean(values), scale=scipy_stats.sem(values))), abs=1e-12)
    compared = mean_stats["against_pooled_output"]["dev_accuracy"]
    if values[0] - base[0] != values[1] - base[1]:
        assert compared["paired_t"]["p"] == pytest.approx(
            scipy_stats.ttest_rel(values, base).pvalue, abs=1e-12)
    assert json.loads((out / "report.json").read_text())["statistics"] == report_dict["statistics"]
    md = (out / "report.md").read_text()
    assert "tiny finetune acc" in md and "### sst2: fine-tuned, 2 seed(s) (5, 6)" in md
    assert "--seeds 2" in report_dict["command"]

    # without its cell file, the finished run itself is reused, not trained again
    os.remove(out / "cells" / "tiny__sst2__mean__finetune__seed6.json")
    capsys.readouterr()
    rerun = pooling_report(config)
    printed = capsys.readouterr().out
    assert printed.count("reused finished run") == 1 and printed.count("reused cells/") == 5
    assert rerun["cells"] == report_dict["cells"]


def test_cli_pooling_report(tiny_model_dir, tmp_path, capsys):
    """`bert-tf pooling-report`: the flags make the same config as the library call
    (whose rerun reuses the CLI's cells), and bad input exits 2 with one line."""
    from bert_tf.cli import main as cli
    out = tmp_path / "report"
    argv = ["pooling-report", "--model", tiny_model_dir, "--tasks", "sst2", "--strategies",
            "mean", "--data-dir", DATA_DIR, "--out", str(out), "--train-limit", "16",
            "--dev-limit", "16", "--max-seq-length", "64", "--quiet"]
    assert cli(argv) == 0
    command = json.loads((out / "report.json").read_text())["command"]
    assert command.startswith("bert-tf pooling-report --model ")
    capsys.readouterr()
    pooling_report(small_config(tiny_model_dir, out, tasks=["sst2"], limit=16,
                                strategies=["mean"]))
    assert capsys.readouterr().out.count("reused cells/") == 1

    bad = argv.copy()
    bad[bad.index("mean")] = "mean,median"
    assert cli(bad) == 2
    err = capsys.readouterr().err
    assert "unknown 'median'" in err and len(err.strip().splitlines()) == 1


def test_probes_are_deterministic_per_seed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, 40)
    y = rng.integers(0, 2, 40).astype(np.int32)
    tokens = rng.normal(size=(int(lengths.sum()), 8)).astype(np.float16)
    store = {"tokens": tokens, "lengths": lengths, "y": y}
    runs = [fit_attention_probe(store, 2, seed=s, steps=20) for s in (3, 3, 4)]
    preds = [predict(store) for predict, _ in runs]
    assert np.array_equal(preds[0], preds[1]) and runs[0][1] == runs[1][1]
    assert runs[0][1] != runs[2][1]  # another seed: another query and batch order
    x = rng.normal(size=(40, 8)).astype(np.float32)
    (p1, i1), (p2, i2) = fit_logistic(x, y, 2, steps=50), fit_logistic(x, y, 2, steps=50)
    assert np.array_equal(p1(x), p2(x)) and i1 == i2


def checkpoint_of(model_dir) -> dict:
    """Every tensor of a model dir's checkpoint, by name (read with TensorFlow alone)."""
    prefix = os.path.join(model_dir, "bert_model.ckpt")
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(prefix)}


def test_reinit_pooler_cells_are_finetune_reinit_pooler_runs(tiny_model_dir, tmp_path,
                                                             capsys):
    """`pooled_output_reinit`: a fine-tune cell (no probe), the run that `bert-tf finetune
    --reinit-pooler` with its seed makes (the same weights), compared with `pooled_output`
    of the same seed, and reused by a rerun. (The pairing's numbers:
    tests/test_pooling_stats.py.)"""
    from bert_tf.cli import main as cli
    out = tmp_path / "report"
    config = small_config(tiny_model_dir, out, tasks=["sst2"], limit=16,
                          strategies=["pooled_output", "pooled_output_reinit"], finetune=True,
                          seed=3, max_seq_length=32)
    report_dict = pooling_report(config)
    assert [(c["strategy"], c["mode"], c["seed"]) for c in report_dict["cells"]] == [
        ("pooled_output", "probe", 3), ("pooled_output", "finetune", 3),
        ("pooled_output_reinit", "finetune", 3)]
    kept, cell = report_dict["cells"][1:]
    assert cell["run_dir"] == str(out / "runs" / "tiny-sst2-pooled_output_reinit-seed3")

    direct = tmp_path / "direct"
    assert cli(["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir", DATA_DIR,
                "--out", str(direct), "--reinit-pooler", "--seed", "3", "--train-limit", "16",
                "--max-seq-length", "32", "--epochs", "1", "--learning-rate", "5e-5",
                "--batch-size", "32", "--no-export", "--quiet"]) == 0
    weights = checkpoint_of(os.path.join(cell["run_dir"], "model"))
    expected = checkpoint_of(direct / "model")
    assert set(weights) == set(expected)
    for name in weights:
        np.testing.assert_array_equal(weights[name], expected[name], err_msg=name)
    direct_metrics = json.loads((direct / "metrics.json").read_text())
    assert (cell["dev_accuracy"], cell["dev_f1"]) == (direct_metrics["dev_accuracy"],
                                                      direct_metrics["dev_f1"])
    # ... and not the pooled_output run of the same seed: its pooler started elsewhere
    pooler = "bert/pooler/dense/kernel"
    assert not np.allclose(weights[pooler],
                           checkpoint_of(os.path.join(kept["run_dir"], "model"))[pooler],
                           atol=0.01)

    entry = next(s for s in report_dict["statistics"] if s["strategy"] == "pooled_output_reinit")
    compared = entry["against_pooled_output"]["dev_accuracy"]
    assert compared["seeds"] == [3] and compared["paired_t"]["mean"] == pytest.approx(
        cell["dev_accuracy"] - kept["dev_accuracy"], abs=1e-12)
    md = (out / "report.md").read_text()
    assert "| pooled_output (re-initialised) |  | " in md  # no probe, a fine-tune mean
    assert f"| tiny | pooled_output (re-initialised) | {cell['dev_accuracy']:.3f} |" in md

    capsys.readouterr()
    assert pooling_report(config)["cells"] == report_dict["cells"]
    assert capsys.readouterr().out.count("reused cells/") == 3
    with pytest.raises(ValueError, match="'pooled_output_reinit' is a fine-tune head"):
        small_config(tiny_model_dir, out, strategies=["pooled_output_reinit"])


def test_two_models_are_compared_head_by_head(tiny_model_dir, tmp_path):
    """With two model dirs (as a BERT pre-trained with NSP and one without), each head of
    the second is compared with the same head of the first, seed by seed."""
    other = no_dropout_copy(tiny_model_dir, tmp_path / "tiny-no-dropout")
    out = tmp_path / "report"
    config = small_config(tiny_model_dir, out, tasks=["sst2"], limit=16, strategies=["mean"],
                          finetune=True, max_seq_length=32, models=[tiny_model_dir, other])
    report_dict = pooling_report(config)
    entries = {s["model"]: s for s in report_dict["statistics"]}
    assert "against_model" not in entries["tiny"]
    compared = entries["tiny-no-dropout"]["against_model"]
    tuned = {c["model"]: c for c in report_dict["cells"] if c["mode"] == "finetune"}
    assert compared["model"] == "tiny"
    for metric in ("dev_accuracy", "dev_f1"):
        difference = tuned["tiny-no-dropout"][metric] - tuned["tiny"][metric]
        assert compared[metric]["paired_t"]["mean"] == pytest.approx(difference, abs=1e-12)
        assert compared[metric]["dev_bootstrap"]["difference"] == pytest.approx(difference,
                                                                                abs=1e-12)
    assert tuned["tiny-no-dropout"]["dev_predictions"] != tuned["tiny"]["dev_predictions"]
    md = (out / "report.md").read_text()
    _, table = md.split("### sst2: fine-tuned, each model against tiny\n")
    row = next(line for line in table.splitlines() if line.startswith("| tiny-no-dropout |"))
    assert row.startswith(f"| tiny-no-dropout | mean | "
                          f"{compared['dev_accuracy']['paired_t']['mean']:+.3f} |")
