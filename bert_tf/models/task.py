"""What a task model (`BertClassifier`, ...) adds to `keras.Model`: BERT's recipe as
`compile()`'s default, and `fit` / `evaluate` / `predict` on text.

**Compile once.** `compile()` makes the optimizer, and every later `fit` trains that
same optimizer. With `optimizer="bert"` (the default) it is BERT's recipe, AdamW on a
linear warm-up and decay (`bert_tf.optimizers.WarmupLinearDecay`); unless `compile`
was given `total_steps`, the schedule takes its length from the first `fit` (batches
per epoch x epochs) and keeps it: a second `fit` continues the same optimizer and
the same schedule (so once the first `fit`'s steps are done the rate is 0; give
`total_steps` for all the `fit` calls to come, or call `compile` again to start a
new schedule). The length is in the optimizer's config, so a model saved as `.keras`
and loaded again continues where it was saved.

**Text in.** With a `preprocessor`, `fit`, `evaluate` and `predict` take what Keras
users pass, with texts where Keras takes features:
- a string, a list / numpy array / string tensor of texts;
- pairs (for `text_pairs=True` models): a tuple `(texts_a, texts_b)`, rows
  `[(a, b), ...]`, a `[N, 2]` array or tensor, or one pair `("a", "b")`;
- a `tf.data.Dataset` of texts (or pairs), `(texts, labels)` or
  `(texts, labels, sample_weights)`, batched or not (unbatched elements are
  batched by `batch_size`, default 32);
- `validation_split` (the last part of the texts, as Keras takes it) and
  `validation_data` in any of the forms above.
Anything else (the three id tensors, a dataset of them) goes to Keras as it is.
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from bert_tf.errors import ConfigError
from bert_tf.optimizers import WarmupLinearDecay, bert_optimizer


def head_dense(units: int, name: str, encoder) -> keras.layers.Dense:
    """A task head's dense layer, initialised as Google's BERT initialises its heads
    (truncated normal, the encoder's `initializer_range`), in float32 so that a
    mixed-precision model's logits stay float32."""
    return keras.layers.Dense(units, name=name, dtype="float32",
                              kernel_initializer=keras.initializers.TruncatedNormal(
                                  stddev=encoder.bert_config.initializer_range))

class TextTask:
    """Mixin for task models with an optional `preprocessor` and a `text_pairs` flag.

    Subclasses give `default_loss()`, `default_metrics()` and may check labels in
    `check_targets(y)` (arrays only; returns them as the loss wants them)."""

    preprocessor = None
    text_pairs = False

    # -- compile once --------------------------------------------------------------------
    def default_loss(self):
        raise NotImplementedError

    def default_metrics(self):
        return []

    def compile(self, optimizer="bert", loss="auto", metrics="auto", learning_rate: float = 5e-5,
                warmup_proportion: float = 0.1, total_steps: int | None = None, **kwargs):
        """Keras `compile`, with defaults for BERT fine-tuning.

        `optimizer="bert"` (the default) is BERT's recipe: AdamW (weight decay 0.01,
        none on LayerNorm and biases, epsilon 1e-6, clipped at global norm 1.0) with
        a learning rate rising linearly to `learning_rate` over the first
        `warmup_proportion` of `total_steps` and falling linearly to 0 at the last
        one. Without `total_steps` the first `fit` sets it (its batches per epoch x
        epochs); later `fit` calls continue the same optimizer and schedule.
        `loss="auto"` and `metrics="auto"`: the model's problem's defaults.
        """
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        if isinstance(optimizer, str) and optimizer == "bert":
            optimizer = bert_optimizer(learning_rate, total_steps,
                                       warmup_proportion=warmup_proportion)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # As Keras' own, which skips models whose `compile` is overridden.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _size_schedule(self, x, batch_size, epochs: int, initial_epoch: int,
                       steps_per_epoch) -> None:
        """Gives a BERT schedule left open by `compile` its length, from this `fit`."""
        schedule = getattr(getattr(self, "optimizer", None), "_learning_rate", None)
        if not isinstance(schedule, WarmupLinearDecay) or schedule.total_steps is not None:
            return
        steps = steps_per_epoch or _steps(x, batch_size)
        if steps is None:
            raise ConfigError("BERT's learning-rate schedule needs the number of steps: pass "
                              "compile(total_steps=...), fit(steps_per_epoch=...) or a "
                              "dataset of known size")
        schedule.set_total_steps(steps * max(epochs - initial_epoch, 1))

    # -- text in ---------------------------------------------------------------------------
    def check_targets(self, y):
        return y

    def fit(self, x=None, y=None, batch_size=None, epochs=1, shuffle=True, sample_weight=None,
            validation_data=None, validation_split=0.0, **kwargs):
        texts = self._texts(x)
        if validation_data is not None:
            validation_data = self._validation(validation_data, batch_size)
        if texts is not None:
            if validation_split:
                if validation_data is not None:
                    raise ConfigError("pass validation_data or validation_split, not both")
                (texts, y, sample_weight), held_out = _split(
                    (texts, y, sample_weight), validation_split)
                validation_data = self._text_dataset(*held_out, batch_size)
                validation_split = 0.0
            x = self._text_dataset(texts, y, sample_weight, batch_size, shuffle)
            y = sample_weight = batch_size = None
        elif isinstance(x, tf.data.Dataset):
            if validation_split:
                raise ConfigError("validation_split splits texts in a list, array or tensor; "
                                  "for a tf.data.Dataset pass validation_data")
            x = self._dataset(x, batch_size)
        self._size_schedule(x, batch_size, epochs, kwargs.get("initial_epoch", 0),
                            kwargs.get("steps_per_epoch"))
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle,
                           sample_weight=sample_weight, validation_data=validation_data,
                           validation_split=validation_split, **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        texts = self._texts(x)
        if texts is not None:
            x = self._text_dataset(texts, y, sample_weight, batch_size)
            y = sample_weight = batch_size = None
        elif isinstance(x, tf.data.Dataset):
            x = self._dataset(x, batch_size)
        return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight,
                                **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        texts = self._texts(x)
        if texts is not None:
            x, batch_size = self._text_dataset(texts, None, None, batch_size), None
        elif isinstance(x, tf.data.Dataset):
            x = self._dataset(x, batch_size)
        return super().predict(x, batch_size=batch_size, **kwargs)

    def _is_textual(self, x) -> bool:
        return self.preprocessor is not None and x is not None and not isinstance(x, dict)

    def _texts(self, x) -> tuple | None:
        """`x` as a tuple of 1-D string tensors (one, or two for pairs), or None when
        `x` is not text (ids for Keras, or a dataset)."""
        if not self._is_textual(x) or isinstance(x, tf.data.Dataset):
            return None
        if self.text_pairs and isinstance(x, tuple) and len(x) == 2 and all(map(_is_string, x)):
            return (tf.constant([x[0]]), tf.constant([x[1]]))   # one pair: a batch of one
        columns = _text_columns(x)
        if columns is None:
            return None
        self._check_pairs(len(columns), _describe(x))
        return columns

    def _check_pairs(self, n: int, got: str) -> None:
        if self.text_pairs and n == 1:
            raise ConfigError(f"{self.name} classifies pairs of texts (text_pairs=True) but got "
                              f"{got}: pass (texts_a, texts_b) or rows of (a, b)")
        if not self.text_pairs and n == 2:
            raise ConfigError(f"{self.name} takes single texts (text_pairs=False) but got "
                              f"{got}: build the model with text_pairs=True for pairs")

    def _text_dataset(self, texts: tuple, y, weights, batch_size, shuffle: bool = False):
        parts = [texts] + [np.asarray(v) for v in (self.check_targets(y), weights)
                           if v is not None]
        n = int(texts[0].shape[0])
        for part, name in zip(parts[1:], ("labels", "sample_weight")):
            if len(part) != n:
                raise ConfigError(f"{n} texts but {len(part)} {name}")
        ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
        if shuffle:
            ds = ds.shuffle(n, reshuffle_each_iteration=True)
        return self._preprocessed(ds.batch(batch_size or 32))

    def _preprocessed(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        """Batches whose first part is a tuple of string columns -> the model's inputs."""
        preprocessor = self.preprocessor

        def tokenize(texts, *rest):
            return (preprocessor(texts[0] if len(texts) == 1 else list(texts)), *rest)
        return ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def _dataset(self, ds: tf.data.Dataset, batch_size) -> tf.data.Dataset:
        """A user's dataset of texts (or `(texts, labels[, weights])`) as model inputs;
        any other dataset as it is."""
        if self.preprocessor is None:
            return ds
        spec = ds.element_spec
        if _is_text_spec(spec):  # texts or a flat (a, b) pair, nothing else
            x_spec, arity = spec, 0
        elif isinstance(spec, tuple) and 2 <= len(spec) <= 3 and _is_text_spec(spec[0]):
            x_spec, arity = spec[0], len(spec) - 1
        else:
            return ds
        columns = x_spec if isinstance(x_spec, tuple) else (x_spec,)
        rank = columns[0].shape.rank
        if rank not in (0, 1):
            raise ConfigError(f"a dataset of texts of shape {columns[0].shape}: its elements "
                              "must be one text (rank 0) or a batch of texts (rank 1)")
        self._check_pairs(len(columns), "a dataset of " + (
            "single texts" if len(columns) == 1 else "pairs of texts"))

        def as_columns(*element):
            x = element if arity == 0 else element[0]
            columns = tuple(x) if isinstance(x, tuple) else (x,)
            return (columns, *element[1:]) if arity else (columns,)
        ds = ds.map(as_columns)
        if rank == 0:
            ds = ds.batch(batch_size or 32)
        return self._preprocessed(ds)

    def _validation(self, data, batch_size):
        if isinstance(data, tf.data.Dataset):
            return self._dataset(data, batch_size)
        if isinstance(data, (tuple, list)) and 2 <= len(data) <= 3:
            texts = self._texts(data[0])
            if texts is not None:
                return self._text_dataset(texts, data[1], data[2] if len(data) == 3 else None,
                                          batch_size)
        return data


def _is_text_spec(spec) -> bool:
    if isinstance(spec, tf.TensorSpec):
        return spec.dtype == tf.string
    return (isinstance(spec, tuple) and len(spec) == 2
            and all(isinstance(s, tf.TensorSpec) and s.dtype == tf.string for s in spec))


def _is_string(v) -> bool:
    return isinstance(v, (str, bytes, np.str_, np.bytes_))


def _string_tensor(values) -> tf.Tensor:
    if isinstance(values, tf.Tensor):
        return values
    values = list(values)
    for i, v in enumerate(values):
        if not _is_string(v):
            raise ConfigError(f"texts: item {i} is {type(v).__name__} {v!r:.40}, not a string")
    return tf.constant(np.asarray(values, dtype=object), tf.string)


def _text_columns(x) -> tuple | None:
    """One or two 1-D string tensors for `x`, or None when `x` holds no text."""
    if _is_string(x):
        return (tf.constant([x]),)
    if isinstance(x, tuple) and len(x) == 2 and not _is_string(x[0]) \
            and _text_columns(x[0]) is not None:
        a, b = (_text_columns(t) for t in x)
        if len(a) != 1 or len(b) != 1:
            raise ConfigError("pairs: (texts_a, texts_b) must each be texts, not pairs")
        if a[0].shape[0] != b[0].shape[0]:
            raise ConfigError(f"pairs: {a[0].shape[0]} texts_a but {b[0].shape[0]} texts_b")
        return a + b
    if isinstance(x, (tf.Tensor, np.ndarray)):
        tensor = _string_tensor(x.ravel()) if isinstance(x, np.ndarray) and x.dtype == object \
            else tf.convert_to_tensor(x)
        if tensor.dtype != tf.string:
            return None
        tensor = tf.reshape(tensor, x.shape)
        if tensor.shape.rank == 0:
            return (tf.reshape(tensor, [1]),)
        if tensor.shape.rank == 2 and tensor.shape[1] == 2:
            return (tensor[:, 0], tensor[:, 1])
        if tensor.shape.rank != 1:
            raise ConfigError(f"texts of shape {tuple(tensor.shape)}: pass a list of texts "
                              "(shape [N]) or of pairs ([N, 2])")
        return (tensor,)
    if isinstance(x, (list, tuple)):
        if not x:
            raise ConfigError("no texts: the list is empty")
        first = x[0]
        if isinstance(first, (tuple, list)) and len(first) == 2 and all(map(_is_string, first)):
            rows = list(x)
            for i, row in enumerate(rows):
                if not (isinstance(row, (tuple, list)) and len(row) == 2):
                    raise ConfigError(f"pairs: row {i} is {row!r:.60}, not a pair (a, b)")
            return (_string_tensor(r[0] for r in rows), _string_tensor(r[1] for r in rows))
        if not _is_string(first):
            return None
        return (_string_tensor(x),)
    return None


def _describe(x) -> str:
    if _is_string(x):
        return "one text"
    columns = _text_columns(x)
    n = int(columns[0].shape[0])
    return f"{n} single texts" if len(columns) == 1 else f"{n} pairs of texts"


def _split(parts, fraction: float):
    """Keras' `validation_split` on texts: the last `fraction` of them (before any
    shuffling) -> `(train parts, validation parts)`, each `(texts, y, weights)`."""
    texts, y, weights = parts
    n = int(texts[0].shape[0])
    cut = int(math.floor(n * (1 - fraction)))
    if not 0 < fraction < 1 or cut in (0, n):
        raise ConfigError(f"validation_split={fraction} leaves no examples for training or "
                          f"validation out of {n}")

    def at(rows):
        return (tuple(t[rows] for t in texts),
                *(None if v is None else np.asarray(v)[rows] for v in (y, weights)))
    return at(slice(None, cut)), at(slice(cut, None))


def _steps(x, batch_size) -> int | None:
    """Batches per epoch of `fit`'s data, when that is known up front."""
    if isinstance(x, tf.data.Dataset):
        n = int(x.cardinality())
        return n if n > 0 else None
    if isinstance(x, dict):
        x = next(iter(x.values()))
    try:
        return math.ceil(len(x) / (batch_size or 32))
    except TypeError:
        return None
