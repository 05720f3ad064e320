"""What a training job says while it runs, besides Keras' progress bar: a line when a
long step without a bar of its own starts and one when it ends (`LongStep`: the dev
evaluation, pre-training's evaluation, SQuAD's predictions, the exports), and the
training throughput measured without the first step (`StepTimer`).

Example:
    >>> step = LongStep("dev evaluation", "872 examples in 28 batches")
    dev evaluation: 872 examples in 28 batches ...
    >>> seconds = step.done("dev_accuracy: 0.5000")
    dev evaluation: ... s - dev_accuracy: 0.5000
"""
from __future__ import annotations

import time

import keras


class LongStep:
    """Prints `what: detail ...` now and `what: N.N s[ - result]` at `done`, each line
    flushed at once (a log read while the job runs shows it). `newline`: start on a
    new line, after a progress bar that has not ended its own."""

    def __init__(self, what: str, detail: str, newline: bool = False):
        self.what = what
        print(("\n" if newline else "") + f"{what}: {detail} ...", flush=True)
        self.start = time.perf_counter()

    def done(self, result: str = "") -> float:
        """Prints the time the step took (and `result`); returns the seconds."""
        seconds = time.perf_counter() - self.start
        print(f"{self.what}: {seconds:.1f} s" + (f" - {result}" if result else ""), flush=True)
        return seconds


def loss_sums(model: keras.Model) -> tuple[float, float]:
    """The running sums of the training loss in this epoch: (loss × examples, examples).
    Keras' loss tracker weights each batch by its size (`fit`'s logs show their
    ratio, the epoch's mean so far); two readings give the batches in between."""
    tracker = model._loss_tracker
    return (float(keras.ops.convert_to_numpy(tracker.total)),
            float(keras.ops.convert_to_numpy(tracker.count)))


class StepTimer(keras.callbacks.Callback):
    """Times the training steps of this process after its first one, whose time is
    mostly the tracing of the train function (seconds, not the milliseconds of a
    step): `steps`, `examples` (the loss tracker's count) and `seconds`, from the
    end of the first step to the end of the last. Time between epochs (the dev
    evaluation, the epoch's checkpoint) is left out; checkpoints within an epoch
    count."""

    def __init__(self):
        super().__init__()
        self.steps, self.examples, self.seconds = 0, 0, 0.0
        self._first = True
        self._since = None

    def on_epoch_begin(self, epoch, logs=None):
        self._since = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._since is None:
            self._since = time.perf_counter()
            self._count = loss_sums(self.model)[1]

    def on_train_batch_end(self, batch, logs=None):
        now, count = time.perf_counter(), loss_sums(self.model)[1]
        if not self._first:
            self.steps += 1
            self.examples += int(round(count - self._count))
            self.seconds += now - self._since
        self._first = False
        self._since, self._count = now, count

    def per_second(self, digits: int = 1) -> float | None:
        """Examples a second over the timed steps; None if fewer than one was timed."""
        return round(self.examples / self.seconds, digits) if self.steps else None

    def summary(self) -> dict:
        """What `metrics.json` records of the timing, beside the examples a second."""
        return {"timed_steps": self.steps, "timed_examples": self.examples,
                "timed_seconds": round(self.seconds, 3)}
