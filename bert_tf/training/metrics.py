"""Dev-set metrics of a classifier's outputs, by problem, as `metrics.json` records
them: accuracy and F1 (GLUE's definitions), micro/macro F1 and exact match for
multi-label (scikit-learn's definitions), Pearson and Spearman correlation for
regression (GLUE's STS-B metrics, computed by SciPy).

Example:
    >>> import numpy as np
    >>> dev_metrics("single_label", np.array([[0.1, 2.0], [3.0, 0.0]]), np.array([1, 1]))
    {'dev_accuracy': 0.5, 'dev_f1': 0.6666666666666666}
    >>> out = dev_metrics("multi_label", np.array([[2.0, -2.0], [2.0, 2.0]]),
    ...                   np.array([[1, 0], [1, 0]]))
    >>> out["dev_micro_f1"], out["dev_macro_f1"], out["dev_exact_match"]
    (0.8, 0.5, 0.5)
    >>> out = dev_metrics("regression", np.array([[1.0], [2.0], [4.0]]), np.array([1.0, 3.0, 2.0]))
    >>> round(out["dev_pearson"], 4), out["dev_spearman"]
    (0.3273, 0.5)
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def binary_f1(labels, predictions, positive=1) -> float:
    """F1 of the `positive` class (GLUE's MRPC F1)."""
    tp = int(np.sum((predictions == positive) & (labels == positive)))
    fp = int(np.sum((predictions == positive) & (labels != positive)))
    fn = int(np.sum((predictions != positive) & (labels == positive)))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def multi_label_f1(labels: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Micro and macro F1 of multi-hot `[N, C]` arrays; a label with no true and no
    predicted example counts 0 in the macro mean (scikit-learn's `zero_division=0`)."""
    labels, predicted = labels.astype(bool), predicted.astype(bool)
    tp = np.sum(labels & predicted, axis=0)
    fp = np.sum(~labels & predicted, axis=0)
    fn = np.sum(labels & ~predicted, axis=0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    per_label = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    return float(micro), float(per_label.mean())


def dev_metrics(problem: str, outputs: np.ndarray, labels: np.ndarray,
                threshold: float = 0.5) -> dict:
    """`outputs`: the model's `[N, C]` logits (or predictions, for regression);
    `labels`: what the loss was given (`bert_tf.data.glue.targets`)."""
    if problem == "regression":
        predictions = outputs.reshape(labels.shape)
        flat_p, flat_y = predictions.reshape(len(labels), -1), labels.reshape(len(labels), -1)
        pearson = np.mean([stats.pearsonr(p, y)[0] for p, y in zip(flat_p.T, flat_y.T)])
        spearman = np.mean([stats.spearmanr(p, y)[0] for p, y in zip(flat_p.T, flat_y.T)])
        return {"dev_pearson": float(pearson), "dev_spearman": float(spearman),
                "dev_mse": float(np.mean((predictions - labels) ** 2))}
    if problem == "multi_label":
        predicted = 1 / (1 + np.exp(-outputs)) > threshold
        micro, macro = multi_label_f1(labels, predicted)
        return {"dev_micro_f1": micro, "dev_macro_f1": macro,
                "dev_exact_match": float(np.mean(np.all(predicted == labels.astype(bool),
                                                        axis=1)))}
    predicted = np.argmax(outputs, axis=-1)
    result = {"dev_accuracy": float(np.mean(predicted == labels))}
    if outputs.shape[-1] == 2:
        result["dev_f1"] = binary_f1(labels, predicted)
    return result


# The metric each problem's plots and summaries lead with, then the others.
PLOTTED = {"single_label": ("dev_accuracy", "dev_f1"),
           "multi_label": ("dev_micro_f1", "dev_macro_f1", "dev_exact_match"),
           "regression": ("dev_pearson", "dev_spearman")}
