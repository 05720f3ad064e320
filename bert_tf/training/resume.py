"""Training that survives being killed: `fit_resumable` checkpoints the whole state of
a run and, when the same job runs again, continues exactly where it stopped.

Keras' `BackupAndRestore` restores the epoch only: a run killed mid-epoch trained that
epoch's batches again from the start, with the optimizer (and the learning-rate
schedule) already far along. Here the state is

- every model variable (weights, and the dropout layers' random-seed states, which
  `save_weights` leaves out) and every optimizer variable (step count, Adam moments);
- the position: the epoch, and how many of its batches are done;
- the history so far: the per-epoch logs `fit` returns, and per step the training
  loss of the step's batch (`step_loss`) and the learning rate the step used
  (`step_learning_rate`), for `bert_tf.training.curves`;
- the running sums of the training metrics (loss, accuracy) of the epoch so far, so
  that a resumed epoch's history averages all of its batches, as a run never killed.

Each epoch's data comes from `epoch_data(epoch)`, which must give the same batches in
the same order whenever it is asked (seeded by the epoch, not by how often it was
iterated); a resumed epoch skips the batches already done. So a run killed at any
point and resumed ends with the same weights and history as a run never killed. A run
killed after an epoch's last batch but before the epoch's end (in the dev evaluation)
resumes with that epoch's end: the dev evaluation and the epoch's checkpoint.

A loss that is no longer a number (NaN or infinite: a learning rate far too large,
or data that lies) stops the run with a `TrainingError` naming the step, before the
checkpoint is written: the last good checkpoint stays.

The state is one `.npz` file written under a temporary name and renamed: a failed
write (a full disk) leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import zipfile

import keras
import numpy as np

from bert_tf.errors import CheckpointError, TrainingError
from bert_tf.io.atomic import atomic_file
from bert_tf.training.progress import loss_sums

STATE_FILE = "state.npz"


class TrainingState:
    """The checkpoint of a run in `folder`: variables, position, history, and the
    running sums of the training metrics."""

    def __init__(self, folder: str, model: keras.Model):
        self.folder = folder
        self.model = model

    @property
    def path(self) -> str:
        return os.path.join(self.folder, STATE_FILE)

    def _variables(self) -> list:
        # The model's variables include the dropout seeds; the metrics' running sums
        # are saved apart (`_metric_variables`): they exist only once the metrics are
        # built, and `fit` resets them at every epoch's start.
        metrics = {id(v) for v in self._metric_variables()}
        return [v for v in self.model.variables if id(v) not in metrics] + \
            list(self.model.optimizer.variables)

    def _metric_variables(self) -> list:
        return [v for m in self.model.metrics for v in m.variables]

    def save(self, epoch: int, step: int, history: dict) -> None:
        """Writes the state at `step` batches into `epoch` (0: at its start). Raises
        `TrainingError` if a variable is no longer a number: the previous checkpoint,
        if any, stays as it was."""
        arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(v))
                  for i, v in enumerate(self._variables())}
        bad = next((v.path for v, a in zip(self._variables(), arrays.values())
                    if a.dtype.kind == "f" and not np.isfinite(a).all()), None)
        if bad is not None:
            raise diverged(self.model, f"the variable {bad} is no longer a number", self.path)
        metrics = {f"m{i}": np.asarray(keras.ops.convert_to_numpy(v))
                   for i, v in enumerate(self._metric_variables())} if step else {}
        meta = json.dumps({"epoch": epoch, "step": step, "history": history,
                           "variables": len(arrays), "metrics": len(metrics)})
        with atomic_file(self.path, "wb") as f:
            np.savez(f, meta=np.array(meta), **arrays, **metrics)

    def restore(self) -> tuple[int, int, dict, list]:
        """Assigns the saved state, if any; returns (epoch, steps done in it, history,
        the metrics' running sums after those steps: for `restore_metrics`)."""
        if not os.path.exists(self.path):
            return 0, 0, {}, []
        if not self.model.optimizer.built:  # its variables, made where fit would make them
            with self.model.distribute_strategy.scope():
                self.model.optimizer.build(self.model.trainable_variables)
        try:
            with np.load(self.path) as data:
                meta = json.loads(str(data["meta"]))
                values = [data[f"v{i}"] for i in range(meta["variables"])]
                metrics = [data[f"m{i}"] for i in range(meta.get("metrics", 0))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise unreadable(self.path, e) from e
        variables = self._variables()
        if len(values) != len(variables) or any(
                tuple(v.shape) != a.shape for v, a in zip(variables, values)):
            raise CheckpointError(f"{self.path}: the checkpoint does not fit this model "
                                  f"({len(values)} arrays for {len(variables)} variables)")
        for variable, value in zip(variables, values):
            variable.assign(value)
        return meta["epoch"], meta["step"], meta["history"], metrics

    def restore_metrics(self, values: list) -> None:
        """Sets the metrics' running sums (after `fit` reset them for the epoch). A
        checkpoint written before 2026-12-07 has none: the metrics then start afresh."""
        variables = self._metric_variables()
        if not values:
            return
        if len(values) != len(variables) or any(
                tuple(v.shape) != a.shape for v, a in zip(variables, values)):
            raise CheckpointError(f"{self.path}: the checkpoint does not fit this model "
                                  f"({len(values)} metric arrays for {len(variables)} metric "
                                  "variables)")
        for variable, value in zip(variables, values):
            variable.assign(value)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def unreadable(path: str, error: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: the run's checkpoint cannot be read ({error}); remove it "
                           "to start the run again from its first step")


def check_state(folder: str) -> None:
    """Raises `CheckpointError` if the checkpoint in `folder` (if any) cannot be read:
    a check made before a resumed run builds its model."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.exists(path):
        return
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            missing = [k for k in ("epoch", "step", "history", "variables") if k not in meta]
            if missing:
                raise KeyError(f"its meta lacks {missing}")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise unreadable(path, e) from e


def diverged(model: keras.Model, what: str, checkpoint: str) -> TrainingError:
    """The error of a run whose loss or weights are no longer numbers: it names the
    step and what became of the last good checkpoint (`checkpoint`)."""
    step = int(model.optimizer.iterations.numpy())
    kept = (f"the last good checkpoint is kept in {checkpoint} (rerun the same command to "
            "resume from it)" if os.path.exists(checkpoint) else
            "no checkpoint was written before it")
    return TrainingError(f"training diverged at step {step}: {what}; {kept}; or start again "
                         "with --overwrite and a smaller --learning-rate")


class _Checkpoint(keras.callbacks.Callback):
    """Stops a run whose loss is no longer a number; records each step's loss and
    learning rate in the history; saves the state every `every` batches and at the
    end of the epoch (after the other callbacks, so that their epoch logs, dev
    metrics included, are in it). `metrics`: the running sums of a resumed epoch,
    set when the epoch starts."""

    def __init__(self, state: TrainingState, every: int, epoch: int, skipped: int,
                 history: dict, metrics: list = ()):
        super().__init__()
        self.state, self.every, self.epoch = state, every, epoch
        self.skipped, self.history, self.metrics = skipped, history, list(metrics)

    def on_epoch_begin(self, epoch, logs=None):
        self.state.restore_metrics(self.metrics)
        self.history = {k: list(v) for k, v in self.history.items()}  # appended to below
        self._sums = loss_sums(self.model)

    def on_train_batch_begin(self, batch, logs=None):
        self._rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise diverged(self.model, f"the loss is {float(loss)}", self.state.path)
        self._record_step()
        done = self.skipped + batch + 1
        if self.every and done % self.every == 0:
            self.state.save(self.epoch, done, self.history)

    def _record_step(self):
        """The step's batch loss (from the loss tracker's running sums: the logs hold the
        epoch's mean so far) and the learning rate it used, read before the step."""
        total, count = loss_sums(self.model)
        loss = (total - self._sums[0]) / (count - self._sums[1])
        self._sums = total, count
        self.history.setdefault("step_loss", []).append(loss)
        self.history.setdefault("step_learning_rate", []).append(self._rate)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.state.save(epoch + 1, 0, self.history)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard whose batch-level steps continue across the `fit` calls of a
    resumed (or epoch-by-epoch) run: they count the optimizer's steps."""

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._global_train_batch = int(self.model.optimizer.iterations.numpy())


class _Progress(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, saying "Epoch 3/5" although each epoch is its own `fit`."""

    def __init__(self, epochs: int):
        super().__init__()
        self.total_epochs = epochs

    def set_params(self, params):
        super().set_params({**params, "epochs": self.total_epochs})


def build_metrics(model: keras.Model, data) -> None:
    """Builds the compiled metrics (their running sums) from `data`'s element spec, as
    `fit` does under a distribution strategy, so that a resumed epoch can set them."""
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=data.element_spec)


def finish_epoch(model: keras.Model, epoch: int, callbacks, validation_data=None) -> None:
    """The end of an epoch whose batches were all trained before the run was killed
    (in the dev evaluation): what `fit` does after an epoch's last batch, with the
    metrics' running sums restored by the `_Checkpoint` among `callbacks`."""
    callbacks = keras.callbacks.CallbackList(list(callbacks), model=model)
    model.reset_metrics()
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(epoch)
    logs = model.get_metrics_result()
    if validation_data is not None:
        logs.update({f"val_{k}": v for k, v in model.evaluate(
            validation_data, verbose=0, return_dict=True).items()})
    callbacks.on_epoch_end(epoch, logs)
    callbacks.on_train_end(logs)


def fit_resumable(model: keras.Model, epoch_data, epochs: int, backup_dir: str,
                  checkpoint_every: int, callbacks=(), verbose="auto",
                  validation_data=None) -> tuple[dict, int]:
    """Trains `model` (compiled) for `epochs` epochs of `epoch_data(epoch)` (a
    `tf.data.Dataset` of known size, the same batches whenever asked), resuming from
    `backup_dir` if a killed run left its state there. Returns the history (one value
    per epoch per metric; one per step in `step_loss` and `step_learning_rate`) and
    the number of steps this call ran. The state stays in
    `backup_dir` until the caller removes it (`TrainingState(backup_dir, model).remove()`)
    once the run's outputs are written. Raises `TrainingError` when the loss is no
    longer a number (the last checkpoint stays)."""
    state = TrainingState(backup_dir, model)
    first, skip, history, metrics = state.restore()
    if first or skip:
        print(f"note: resuming at epoch {first + 1}, after {skip} of its batches")
    start_step = int(model.optimizer.iterations.numpy())
    for epoch in range(first, epochs):
        data = epoch_data(epoch)
        resumed = epoch == first and skip
        saver = _Checkpoint(state, checkpoint_every, epoch, skip if resumed else 0, history,
                            metrics if resumed else ())
        if resumed:
            build_metrics(model, data)
            if 0 <= int(data.cardinality()) <= skip:  # killed after its last batch
                finish_epoch(model, epoch, [*callbacks, saver], validation_data)
                history = saver.history
                continue
            data = data.skip(skip)
        model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=verbose,
                  validation_data=validation_data,
                  callbacks=[*callbacks, saver, _Progress(epochs)])
        history = saver.history
    return history, int(model.optimizer.iterations.numpy()) - start_step
