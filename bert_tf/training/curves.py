"""The training curves of a run as a PNG (`training_curve.png`, `pretraining_curves.png`):
the training loss and the learning rate at every step, and the per-epoch metrics as
points at the step where each epoch ends, so that even a one-epoch run has a curve.

The per-step values are the history's `step_loss` and `step_learning_rate`
(`bert_tf.training.resume`). The plot needs matplotlib (`pip install 'bert-tf[plots]'`):
without it the run writes no PNG and says so once (`bert_tf.extras.optional`).
"""
from __future__ import annotations

import os

from bert_tf.extras import optional


def plot_curves(history: dict, steps_per_epoch: int, path: str,
                epoch_panels: dict[str, tuple[tuple[str, str], ...]]) -> bool:
    """Writes the curves of `history` to `path`; returns False (after a note) if
    matplotlib is not installed. Panels: the loss (each step's, and the per-epoch
    `loss` and `val_loss`), the learning rate, then one panel per `epoch_panels` entry,
    `title: ((history key, label), ...)`, of per-epoch values."""
    figure = optional("matplotlib.figure", "plots", os.path.basename(path))
    if figure is None:
        return False
    ends = [steps_per_epoch * (i + 1) for i in range(len(history["loss"]))]
    step_loss = history.get("step_loss", [])
    # The per-step record ends where the last epoch ends (a run resumed from a checkpoint
    # written before 2026-12-07 has it for the resumed steps only).
    steps = range(ends[-1] - len(step_loss) + 1, ends[-1] + 1)
    # A bare Figure, no pyplot: the user's matplotlib backend stays as it is.
    fig = figure.Figure(figsize=(4 * (2 + len(epoch_panels)), 3.5))
    axes = fig.subplots(1, 2 + len(epoch_panels), sharex=True)
    axes[0].plot(steps, step_loss, linewidth=0.8, alpha=0.6, label="step")
    axes[0].plot(ends, history["loss"], "o", label="epoch mean")
    if "val_loss" in history:
        axes[0].plot(ends, history["val_loss"], "s", label="eval")
    axes[0].set(xlabel="step", title="training loss")
    axes[1].plot(steps, history.get("step_learning_rate", []))
    axes[1].set(xlabel="step", title="learning rate")
    axes[1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax, (title, keys) in zip(axes[2:], epoch_panels.items()):
        for key, label in keys:
            if key in history:
                ax.plot(ends, history[key], marker="o", label=label)
        ax.set(xlabel="step", title=title)
    for ax in (axes[0], *axes[2:]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True
