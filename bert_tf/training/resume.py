"""Training that survives being killed: `fit_resumable` checkpoints the whole state of
a run and, when the same job runs again, continues exactly where it stopped.

Keras' `BackupAndRestore` restores the epoch only: a run killed mid-epoch trained that
epoch's batches again from the start, with the optimizer (and the learning-rate
schedule) already far along. Here the state is

- every model variable (weights, and the dropout layers' random-seed states, which
  `save_weights` leaves out) and every optimizer variable (step count, Adam moments);
- the position: the epoch, and how many of its batches are done;
- the history so far (the per-epoch logs `fit` returns).

Each epoch's data comes from `epoch_data(epoch)`, which must give the same batches in
the same order whenever it is asked (seeded by the epoch, not by how often it was
iterated); a resumed epoch skips the batches already done. So a run killed at any
point and resumed ends with the same weights as a run never killed.

The state is one `.npz` file written under a temporary name and renamed: a failed
write (a full disk) leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np

from bert_tf.errors import CheckpointError
from bert_tf.io.atomic import atomic_file

STATE_FILE = "state.npz"


class TrainingState:
    """The checkpoint of a run in `folder`: variables, position, history."""

    def __init__(self, folder: str, model: keras.Model):
        self.folder = folder
        self.model = model

    @property
    def path(self) -> str:
        return os.path.join(self.folder, STATE_FILE)

    def _variables(self) -> list:
        # The model's variables include the dropout seeds; the metrics' running sums
        # (created on the first step) are not part of the state.
        metrics = {id(v) for m in self.model.metrics for v in m.variables}
        return [v for v in self.model.variables if id(v) not in metrics] + \
            list(self.model.optimizer.variables)

    def save(self, epoch: int, step: int, history: dict) -> None:
        arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(v))
                  for i, v in enumerate(self._variables())}
        meta = json.dumps({"epoch": epoch, "step": step, "history": history,
                           "variables": len(arrays)})
        with atomic_file(self.path, "wb") as f:
            np.savez(f, meta=np.array(meta), **arrays)

    def restore(self) -> tuple[int, int, dict]:
        """Assigns the saved state, if any; returns (epoch, steps done in it, history)."""
        if not os.path.exists(self.path):
            return 0, 0, {}
        if not self.model.optimizer.built:  # its variables, made where fit would make them
            with self.model.distribute_strategy.scope():
                self.model.optimizer.build(self.model.trainable_variables)
        try:
            with np.load(self.path) as data:
                meta = json.loads(str(data["meta"]))
                values = [data[f"v{i}"] for i in range(meta["variables"])]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{self.path}: the run's checkpoint cannot be read ({e}); "
                                  "remove it to start the run again") from e
        variables = self._variables()
        if len(values) != len(variables) or any(
                tuple(v.shape) != a.shape for v, a in zip(variables, values)):
            raise CheckpointError(f"{self.path}: the checkpoint does not fit this model "
                                  f"({len(values)} arrays for {len(variables)} variables)")
        for variable, value in zip(variables, values):
            variable.assign(value)
        return meta["epoch"], meta["step"], meta["history"]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class _Checkpoint(keras.callbacks.Callback):
    """Saves the state every `every` batches and at the end of the epoch (after the
    other callbacks, so that their epoch logs, dev metrics included, are in it)."""

    def __init__(self, state: TrainingState, every: int, epoch: int, skipped: int,
                 history: dict):
        super().__init__()
        self.state, self.every, self.epoch = state, every, epoch
        self.skipped, self.history = skipped, history

    def on_train_batch_end(self, batch, logs=None):
        done = self.skipped + batch + 1
        if self.every and done % self.every == 0:
            self.state.save(self.epoch, done, self.history)

    def on_epoch_end(self, epoch, logs=None):
        self.history = {k: list(v) for k, v in self.history.items()}
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


def fit_resumable(model: keras.Model, epoch_data, epochs: int, backup_dir: str,
                  checkpoint_every: int, callbacks=(), verbose="auto",
                  validation_data=None) -> tuple[dict, int]:
    """Trains `model` (compiled) for `epochs` epochs of `epoch_data(epoch)` (a
    `tf.data.Dataset` of known size, the same batches whenever asked), resuming from
    `backup_dir` if a killed run left its state there. Returns the history (one value
    per epoch per metric) and the number of steps this call ran. The state stays in `backup_dir` until the caller removes it
    (`TrainingState(backup_dir, model).remove()`) once the run's outputs are written."""
    state = TrainingState(backup_dir, model)
    first, skip, history = state.restore()
    if first or skip:
        print(f"note: resuming at epoch {first + 1}, after {skip} of its batches")
    start_step = int(model.optimizer.iterations.numpy())
    for epoch in range(first, epochs):
        data = epoch_data(epoch)
        if epoch == first and skip:
            data = data.skip(skip)
        saver = _Checkpoint(state, checkpoint_every, epoch, skip if epoch == first else 0,
                            history)
        model.fit(data, epochs=epoch + 1, initial_epoch=epoch, verbose=verbose,
                  validation_data=validation_data,
                  callbacks=[*callbacks, saver, _Progress(epochs)])
        history = saver.history
    return history, int(model.optimizer.iterations.numpy()) - start_step
