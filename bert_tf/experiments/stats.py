"""Statistics of fine-tune cells repeated over seeds (`bert-tf pooling-report --seeds N`).

A head's dev metric over seeds (`seed_summary`): mean, standard deviation and a 95 %
t-interval. With five seeds a bootstrap over seeds would be too narrow: its
percentiles behave like ±1.96 standard errors computed with the biased variance,
about 0.63 times the t-interval's ±2.78 for four degrees of freedom.

A head against `pooled_output` (`compare`), paired twice, because two things could
make a difference appear that is not there:
- training noise: the same seeds give both heads the same data order, so the
  per-seed differences are paired; a paired t-test over seeds (`paired_t`) gives
  their mean, a 95 % t-interval and a p-value. This says whether the gap is larger
  than what another seed would change, on this dev set.
- the dev set: it is one sample of examples (872 for SST-2, 408 for MRPC). A
  paired bootstrap over dev examples (`bootstrap_difference`) draws the dev set
  again (the same draw for both heads and every seed) and recomputes the
  seed-averaged difference; its 2.5 and 97.5 percentiles are the interval. This
  says whether the dev set is large enough to tell. Seeds are not resampled (see
  above: with few seeds that understates their spread; the t-test covers them).
A difference is *resolved* when both intervals exclude zero; with one seed it is
not (no spread over seeds can be measured).
Two models fine-tuned with the same head (a BERT pre-trained with NSP against one
without) are paired the same way: the same seed gives both the same data order (and,
for the same hidden size, the same head initialisation), and both are scored on the
same dev examples.

Every function takes plain numbers or arrays of label ids, so the report's saved
cells (`dev_accuracy`, `dev_f1`, `dev_predictions`, `dev_labels`) can be checked by
anyone with numpy and scipy.

Example:
    >>> s = seed_summary([0.80, 0.82, 0.81])
    >>> round(s["mean"], 3), round(s["sd"], 3), [round(x, 3) for x in s["ci95"]]
    (0.81, 0.01, [0.785, 0.835])
"""
from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
METRICS = ("dev_accuracy", "dev_f1")


def seed_summary(values) -> dict:
    """`{"n", "mean", "sd", "ci95"}` of one metric over seeds: the sample standard
    deviation and the 95 % t-interval of the mean (both None for one seed)."""
    x = np.asarray(values, dtype=np.float64)
    result = {"n": len(x), "mean": float(x.mean()), "sd": None, "ci95": None}
    if len(x) > 1:
        sd = float(x.std(ddof=1))
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1) * sd / np.sqrt(len(x))
        result.update(sd=sd, ci95=[float(x.mean() - half), float(x.mean() + half)])
    return result


def paired_t(values, baseline) -> dict:
    """The paired t-test of `values - baseline` (both ordered by seed):
    `seed_summary` of the differences plus the two-sided `p` (None for one seed)."""
    d = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    result = {**seed_summary(d), "p": None}
    if len(d) > 1:
        sd = result["sd"]
        if sd == 0:  # the same difference for every seed
            result["p"] = 1.0 if d[0] == 0 else 0.0
        else:
            t = d.mean() / (sd / np.sqrt(len(d)))
            result["p"] = float(2 * stats.t.sf(abs(t), len(d) - 1))
    return result


def _example_counts(predictions: np.ndarray, labels: np.ndarray, metric: str):
    """Per example (last axis) the numerator and denominator whose sums give
    `metric`: accuracy = correct / 1, F1 of label 1 = 2 tp / (2 tp + fp + fn)."""
    if metric == "dev_accuracy":
        return (predictions == labels).astype(np.float64), np.ones(predictions.shape)
    tp = (predictions == 1) & (labels == 1)
    wrong = predictions != labels  # fp + fn
    return 2.0 * tp, 2.0 * tp + wrong


def bootstrap_difference(predictions, baseline, labels, metric: str = "dev_accuracy",
                         resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """The paired bootstrap over dev examples of the seed-averaged difference in
    `metric` between two heads.

    Args:
        predictions, baseline: label ids `[seeds, examples]`, row s from seed s.
        labels: the dev labels `[examples]`.
        metric: `dev_accuracy` or `dev_f1` (of label 1).
        resamples, seed: `numpy.random.default_rng(seed).integers(0, N, (resamples, N))`
            are the resampled dev sets, the same for both heads and every seed.

    Returns:
        `{"difference", "ci95"}`: the difference on the dev set itself and the 2.5
        and 97.5 percentiles over the resampled dev sets.
    """
    predictions, baseline = np.atleast_2d(predictions), np.atleast_2d(baseline)
    labels = np.asarray(labels)
    index = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))

    def seed_mean(p):
        numerator, denominator = _example_counts(p, labels, metric)
        full = numerator.sum(axis=1) / np.maximum(denominator.sum(axis=1), 1)
        drawn = np.stack([numerator[s][index].sum(axis=1)
                          / np.maximum(denominator[s][index].sum(axis=1), 1)
                          for s in range(len(p))])  # [seeds, resamples]
        return full.mean(), drawn.mean(axis=0)

    full, drawn = seed_mean(predictions)
    base_full, base_drawn = seed_mean(baseline)
    low, high = np.percentile(drawn - base_drawn, [50 - CONFIDENCE * 50, 50 + CONFIDENCE * 50])
    return {"difference": float(full - base_full), "ci95": [float(low), float(high)]}


def excludes_zero(interval) -> bool:
    return interval is not None and (interval[0] > 0 or interval[1] < 0)


def compare(cells: list[dict], baseline: list[dict], metric: str) -> dict:
    """Fine-tune cells against a baseline's (another head, or another model's same
    head), both one per seed with `seed`, `metric`, `dev_predictions` and `dev_labels`,
    paired by seed: the paired t-test over seeds (`paired_t`), the paired bootstrap over
    dev examples (`dev_bootstrap`) of `cells` minus `baseline`, and `resolved` (both
    intervals exclude zero, two or more seeds)."""
    by_seed = {c["seed"]: c for c in baseline}
    seeds = [c["seed"] for c in cells if c["seed"] in by_seed]
    mine = {c["seed"]: c for c in cells}
    t = paired_t([mine[s][metric] for s in seeds], [by_seed[s][metric] for s in seeds])
    boot = bootstrap_difference([mine[s]["dev_predictions"] for s in seeds],
                                [by_seed[s]["dev_predictions"] for s in seeds],
                                by_seed[seeds[0]]["dev_labels"], metric)
    return {"metric": metric, "seeds": seeds, "paired_t": t, "dev_bootstrap": boot,
            "resolved": len(seeds) > 1 and excludes_zero(t["ci95"])
            and excludes_zero(boot["ci95"])}
