"""`bert-tf pooling-report`: every cell and output, resume, bad input, a fine-tune cell."""
import json
import os

import numpy as np
import pytest

from bert_tf.cli import main as cli
from bert_tf.layers.pooling import STRATEGIES
from tests.conftest import DATA_DIR, report


def report_cmd(model, out, *extra, tasks="sst2,mrpc", limit="64"):
    return ["pooling-report", "--model", model, "--tasks", tasks, "--data-dir", DATA_DIR,
            "--out", str(out), "--train-limit", limit, "--dev-limit", limit, "--max-seq-length",
            "64", "--quiet", *extra]


def cells_of(out):
    with open(os.path.join(out, "report.json")) as f:
        return {(c["model"], c["task"], c["strategy"], c["mode"]): c for c in json.load(f)["cells"]}


def test_probe_report_has_every_cell_and_a_rerun_reuses_them(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli(report_cmd(tiny_model_dir, out)) == 0
    for name in ("report.md", "report.json", "report.png"):
        assert (out / name).stat().st_size > 0, name
    cells = cells_of(out)
    assert set(cells) == {("tiny", t, s, "probe") for t in ("sst2", "mrpc") for s in STRATEGIES}
    for (_, task, strategy, _), cell in cells.items():
        assert 0 <= cell["dev_accuracy"] <= 1, (task, strategy)
        assert cell["train_examples"] == 64 and cell["dev_examples"] == 64
        if task == "mrpc":
            assert 0 <= cell["dev_f1"] <= 1, strategy
    assert max(c["train_accuracy"] for c in cells.values()) > 0.9  # the probes do fit
    md = (out / "report.md").read_text()
    assert "bert-tf pooling-report --model" in md and "## sst2" in md and "## mrpc" in md
    assert "tiny probe F1" in md and all(f"| {s} |" in md for s in STRATEGIES)
    report("pooling-report, random BERT-tiny, 64 examples: sst2 probe accuracy " + ", ".join(
        f"{s} {cells['tiny', 'sst2', s, 'probe']['dev_accuracy']:.2f}" for s in STRATEGIES))

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    capsys.readouterr()
    assert cli(report_cmd(tiny_model_dir, out)) == 0
    printed = capsys.readouterr().out
    assert printed.count("reused cells/") == 12 and "embedding" not in printed
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps
    assert cells_of(out) == cells

    # a cell made with other settings is never silently reused
    assert cli(report_cmd(tiny_model_dir, out, limit="32")) == 2
    assert "other settings" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps


@pytest.mark.parametrize("change,message", [
    ({"--strategies": "mean,median"}, "unknown 'median'"),
    ({"--tasks": "sst2,cola"}, "unknown 'cola'"),
    ({"--model": "/nonexistent/model"}, "no such model dir"),
    ({"--data-dir": "/nonexistent/data"}, "SST-2/train.tsv"),
])
def test_bad_input_exits_2_and_writes_nothing(tiny_model_dir, tmp_path, capsys, change, message):
    args = report_cmd(tiny_model_dir, tmp_path / "report")
    for flag, value in change.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert cli(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_finetune_cell_and_its_run_are_reused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = report_cmd(tiny_model_dir, out, "--strategies", "mean", "--finetune", tasks="sst2",
                      limit="32")
    assert cli(args) == 0
    cells = cells_of(out)
    assert set(cells) == {("tiny", "sst2", "mean", "probe"), ("tiny", "sst2", "mean", "finetune")}
    tuned = cells["tiny", "sst2", "mean", "finetune"]
    assert 0 <= tuned["dev_accuracy"] <= 1 and tuned["train_examples"] == 32
    assert tuned["dev_examples"] == 872  # fine-tune cells evaluate on the whole dev set
    assert (out / "runs" / "tiny-sst2-mean" / "metrics.json").exists()
    assert "tiny finetune acc" in (out / "report.md").read_text()
    # without its cell file, the finished run itself is reused, not trained again
    os.remove(out / "cells" / "tiny__sst2__mean__finetune.json")
    capsys.readouterr()
    assert cli(args) == 0
    assert "reused finished run" in capsys.readouterr().out
    assert cells_of(out)["tiny", "sst2", "mean", "finetune"] == tuned


def test_probes_are_deterministic_per_seed():
    from bert_tf.experiments.pooling_report import fit_attention_probe, fit_logistic
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
