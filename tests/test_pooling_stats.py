"""`bert_tf.experiments.stats` and the report's statistics against independent
computations (scipy's paired t-test and t-interval, a plain numpy bootstrap loop) on
synthetic fine-tune cells with known values; no training."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from bert_tf.experiments import stats
from bert_tf.experiments.pooling_report import markdown, plot, statistics


def synthetic_cells(strategy, seeds, labels, flip, rng):
    """A fine-tune cell per seed whose predictions are `labels` with a fraction `flip`
    of them wrong (drawn from `rng`), and whose metrics are those predictions'."""
    cells = []
    for seed in seeds:
        predictions = np.where(rng.random(len(labels)) < flip, 1 - labels, labels)
        tp = np.sum((predictions == 1) & (labels == 1))
        cells.append({"model": "m", "task": "mrpc", "strategy": strategy, "mode": "finetune",
                      "seed": seed, "train_examples": 100, "dev_examples": len(labels),
                      "dev_accuracy": float(np.mean(predictions == labels)),
                      "dev_f1": float(2 * tp / (2 * tp + np.sum(predictions != labels))),
                      "dev_predictions": predictions.tolist(), "dev_labels": labels.tolist()})
    return cells


def bootstrap_loop(cells, baseline, metric, resamples, seed):
    """The paired bootstrap written out: each resampled dev set, each seed's metric by
    its definition (scikit-learn-free), the seed means' difference; the percentiles."""
    labels = np.array(baseline[0]["dev_labels"])
    draws = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))

    def score(predictions, index):
        p, y = np.array(predictions)[index], labels[index]
        if metric == "dev_accuracy":
            return np.mean(p == y)
        tp, fp, fn = np.sum((p == 1) & (y == 1)), np.sum((p == 1) & (y == 0)), \
            np.sum((p == 0) & (y == 1))
        return 2 * tp / (2 * tp + fp + fn)

    differences = [np.mean([score(c["dev_predictions"], index) for c in cells])
                   - np.mean([score(c["dev_predictions"], index) for c in baseline])
                   for index in draws]
    return np.percentile(differences, [2.5, 97.5])


def test_seed_summary_is_scipys_t_interval():
    values = [0.81, 0.79, 0.84, 0.80, 0.83]
    summary = stats.seed_summary(values)
    assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-15)
    assert summary["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
    low, high = scipy_stats.t.interval(0.95, 4, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    assert summary["ci95"] == pytest.approx([low, high], abs=1e-12)
    # the t quantile for 4 degrees of freedom, not the normal's 1.96
    assert (high - low) / 2 == pytest.approx(2.7764451 * np.std(values, ddof=1) / 5 ** 0.5)
    assert stats.seed_summary([0.8]) == {"n": 1, "mean": 0.8, "sd": None, "ci95": None}


def test_paired_t_is_scipys_ttest_rel():
    head, base = [0.81, 0.79, 0.84, 0.80, 0.83], [0.80, 0.80, 0.82, 0.78, 0.81]
    result = stats.paired_t(head, base)
    expected = scipy_stats.ttest_rel(head, base)
    assert result["p"] == pytest.approx(expected.pvalue, abs=1e-12)
    assert result["ci95"] == pytest.approx(list(expected.confidence_interval(0.95)), abs=1e-12)
    assert result["mean"] == pytest.approx(0.012, abs=1e-12)
    # paired, not two independent samples: the pairing narrows the interval here
    assert scipy_stats.ttest_ind(head, base).pvalue > result["p"]
    # one difference for every seed: no spread, so certain
    assert stats.paired_t([0.5, 0.75], [0.25, 0.5])["p"] == 0.0


@pytest.mark.parametrize("metric", ["dev_accuracy", "dev_f1"])
def test_bootstrap_is_the_plain_loop(metric):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 120)
    cells = synthetic_cells("mean", [0, 1, 2], labels, 0.15, rng)
    baseline = synthetic_cells("pooled_output", [0, 1, 2], labels, 0.25, rng)
    result = stats.bootstrap_difference([c["dev_predictions"] for c in cells],
                                        [c["dev_predictions"] for c in baseline], labels,
                                        metric, resamples=400, seed=3)
    assert result["ci95"] == pytest.approx(list(bootstrap_loop(cells, baseline, metric, 400, 3)),
                                           abs=1e-12)
    assert result["difference"] == pytest.approx(
        np.mean([c[metric] for c in cells]) - np.mean([c[metric] for c in baseline]), abs=1e-12)


def test_report_statistics_resolve_a_real_gap_and_not_noise():
    """Five seeds on 400 synthetic MRPC dev examples: `cls` is 10 points better than
    `pooled_output` (resolved), `mean` is as good (not resolved); every number in the
    report's statistics is scipy's or the bootstrap loop's."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    seeds = [0, 1, 2, 3, 4]
    groups = {"pooled_output": 0.2, "cls": 0.1, "mean": 0.2}
    cells = [c for s, flip in groups.items() for c in synthetic_cells(s, seeds, labels, flip, rng)]
    report = {"models": {"m": "/m"}, "tasks": ["mrpc"], "strategies": list(groups),
              "modes": ["finetune"], "seeds": seeds, "cells": cells, "command": "bert-tf ...",
              "machine": "test", "date": "2026-12-07"}
    report["statistics"] = statistics(report)
    by_strategy = {s["strategy"]: s for s in report["statistics"]}
    assert set(by_strategy) == set(groups)
    assert "against_pooled_output" not in by_strategy["pooled_output"]
    base = [c for c in cells if c["strategy"] == "pooled_output"]
    for strategy in ("cls", "mean"):
        mine = [c for c in cells if c["strategy"] == strategy]
        for metric in ("dev_accuracy", "dev_f1"):
            values = [c[metric] for c in mine]
            summary = by_strategy[strategy][metric]
            assert summary["ci95"] == pytest.approx(list(scipy_stats.t.interval(
                0.95, 4, loc=np.mean(values), scale=scipy_stats.sem(values))), abs=1e-12)
            compared = by_strategy[strategy]["against_pooled_output"][metric]
            expected = scipy_stats.ttest_rel(values, [c[metric] for c in base])
            assert compared["paired_t"]["p"] == pytest.approx(expected.pvalue, abs=1e-12)
            assert compared["paired_t"]["ci95"] == pytest.approx(
                list(expected.confidence_interval(0.95)), abs=1e-12)
    # the full 10,000-resample bootstrap, checked for accuracy on the resolved head
    compared = by_strategy["cls"]["against_pooled_output"]["dev_accuracy"]
    assert compared["dev_bootstrap"]["ci95"] == pytest.approx(list(bootstrap_loop(
        [c for c in cells if c["strategy"] == "cls"], base, "dev_accuracy",
        stats.RESAMPLES, stats.BOOTSTRAP_SEED)), abs=1e-12)
    assert compared["resolved"] and compared["paired_t"]["mean"] > 0.05
    assert not by_strategy["mean"]["against_pooled_output"]["dev_accuracy"]["resolved"]

    md = markdown(report)
    assert "### mrpc: fine-tuned, 5 seed(s) (0, 1, 2, 3, 4)" in md
    cls_row = next(line for line in md.splitlines() if line.startswith("| m | cls |"))
    assert cls_row.endswith("| **yes** |")
    assert f"{compared['paired_t']['mean']:+.3f}" in cls_row
    mean_row = next(line for line in md.splitlines() if line.startswith("| m | mean |"))
    assert mean_row.endswith("| no |")


def test_one_seed_is_never_resolved():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    cells = synthetic_cells("cls", [0], labels, 0.05, rng)
    base = synthetic_cells("pooled_output", [0], labels, 0.4, rng)
    compared = stats.compare(cells, base, "dev_accuracy")
    assert stats.excludes_zero(compared["dev_bootstrap"]["ci95"])  # a 35-point gap...
    assert compared["paired_t"]["ci95"] is None and not compared["resolved"]  # ...one seed


def test_report_compares_each_model_with_the_first_head_by_head_paired_by_seed(tmp_path):
    """Two models (NSP and masked-LM-only pre-training) × two heads (`pooled_output`
    and `pooled_output_reinit`), five seeds: the second model is compared with the first
    for the same head, seed by seed (its cells listed in another order), and the
    re-initialised head with the same model's `pooled_output`; every p-value and
    interval is scipy's."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    seeds = [0, 1, 2, 3, 4]
    flips = {("nsp", "pooled_output"): 0.25, ("nsp", "pooled_output_reinit"): 0.2,
             ("mlm", "pooled_output"): 0.15, ("mlm", "pooled_output_reinit"): 0.2}
    cells = {}
    for (model, strategy), flip in flips.items():
        made = synthetic_cells(strategy, seeds, labels, flip, rng)
        for c in made:
            c["model"] = model
        cells[model, strategy] = made if model == "nsp" else made[::-1]
    report = {"models": {"nsp": "/nsp", "mlm": "/mlm"}, "tasks": ["mrpc"],
              "strategies": ["pooled_output", "pooled_output_reinit"], "modes": ["finetune"],
              "seeds": seeds, "cells": [c for group in cells.values() for c in group],
              "command": "bert-tf ...", "machine": "test", "date": "2026-12-08"}
    report["statistics"] = statistics(report)
    entries = {(s["model"], s["strategy"]): s for s in report["statistics"]}

    def by_seed(model, strategy, metric):
        return [c[metric] for c in sorted(cells[model, strategy], key=lambda c: c["seed"])]

    pairs = {("mlm", s, "against_model"): ("nsp", s) for s in ("pooled_output",
                                                                "pooled_output_reinit")}
    pairs.update({(m, "pooled_output_reinit", "against_pooled_output"): (m, "pooled_output")
                  for m in ("nsp", "mlm")})
    for (model, strategy, key), other in pairs.items():
        for metric in ("dev_accuracy", "dev_f1"):
            mine, theirs = by_seed(model, strategy, metric), by_seed(*other, metric)
            compared = entries[model, strategy][key][metric]
            expected = scipy_stats.ttest_rel(mine, theirs)
            assert compared["paired_t"]["mean"] == pytest.approx(
                np.mean(mine) - np.mean(theirs), abs=1e-12), (model, strategy, key)
            assert compared["paired_t"]["p"] == pytest.approx(expected.pvalue, abs=1e-12)
            assert compared["paired_t"]["ci95"] == pytest.approx(
                list(expected.confidence_interval(0.95)), abs=1e-12)
            assert compared["dev_bootstrap"]["difference"] == pytest.approx(
                np.mean(mine) - np.mean(theirs), abs=1e-12)
    assert entries["mlm", "pooled_output"]["against_model"]["model"] == "nsp"
    assert not any("against_model" in entries["nsp", s] for s in report["strategies"])
    assert entries["mlm", "pooled_output"]["against_model"]["dev_accuracy"]["resolved"]
    assert not entries["mlm", "pooled_output_reinit"]["against_model"]["dev_accuracy"][
        "resolved"]

    md = markdown(report)
    assert "Dev accuracy and F1 (finetune: 100 train / 400 dev)\n" in md  # no probe: no majority
    _, table = md.split("### mrpc: fine-tuned, each model against nsp\n")
    compared = entries["mlm", "pooled_output"]["against_model"]["dev_accuracy"]
    assert f"| mlm | pooled_output | {compared['paired_t']['mean']:+.3f} |" in table
    assert next(line for line in table.splitlines()
                if line.startswith("| mlm | pooled_output |")).endswith("| **yes** |")
    assert next(line for line in table.splitlines()
                if line.startswith("| mlm | pooled_output (re-initialised) |")).endswith("| no |")
    plot(report, str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 0
