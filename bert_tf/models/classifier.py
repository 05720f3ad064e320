"""`BertClassifier`: sequence classification on the encoder, as a Keras model.

encoder -> pooling (`bert_tf.layers.pooling`) -> dropout -> dense -> `logits`.
The head's weights have the names of google-research/bert's `run_classifier.py`:
`output_weights` `[num_classes, H]` and `output_bias` `[num_classes]`; learned
attention pooling adds `pooling/attention/query`.

With a `preprocessor`, `fit`, `evaluate` and `predict` take raw text: a list (or
array, or string tensor) of texts, or a pair `(texts_a, texts_b)`.

Example:
    >>> import bert_tf
    >>> from bert_tf.config import BertConfig
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film"]
    >>> encoder = bert_tf.BertEncoder.from_bert_config(BertConfig.preset("tiny", vocab_size=7))
    >>> clf = BertClassifier(encoder, num_classes=2, pooling="mean",
    ...                      preprocessor=bert_tf.BertPreprocessor(vocab, seq_length=8))
    >>> clf.compile()    # BERT's recipe: AdamW, linear warm-up and decay, set up by `fit`
    >>> history = clf.fit(["good film", "bad film"], [1, 0], epochs=1, verbose=0)
    >>> clf.predict(["good film"], verbose=0).shape
    (1, 2)
"""
from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from bert_tf.errors import ConfigError
from bert_tf.layers import AttentionPooling, pool
from bert_tf.models.base import CheckpointNames, LeavesOutUnused, WrapsEncoder, read_task
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.serving import text_serving_module
from bert_tf.optimizers import bert_optimizer
from bert_tf.preprocessing.preprocessor import BertPreprocessor


@keras.saving.register_keras_serializable(package="bert_tf")
class BertClassifier(WrapsEncoder, LeavesOutUnused, CheckpointNames, keras.Model):
    """The three inputs -> `logits` `[B, num_classes]` (float32).

    Args:
        encoder: a `BertEncoder` (used as it is; building the head never changes it).
        num_classes: number of classes.
        pooling: how the head reduces the sequence: `pooled_output` (BERT's pooler),
            `cls`, `mean`, `max`, `mean_sqrt_len` or `attention`.
        dropout: dropout rate before the dense layer.
        preprocessor: an optional `BertPreprocessor`, so that `fit`, `evaluate` and
            `predict` take text.
        labels: class names (for the serving export's `label`); default "0", "1", ...
        text_pairs: the model classifies pairs of texts (the serving export then
            takes `text` and `text_b`).

    With any pooling but `pooled_output` the head never sees BERT's pooler: its
    weights are left out of the trainable variables (the encoder is not changed).
    """

    TRANSPOSED = ("output_weights",)

    def __init__(self, encoder: BertEncoder, num_classes: int, pooling: str = "pooled_output",
                 dropout: float = 0.1, preprocessor: BertPreprocessor | None = None,
                 labels: list[str] | None = None, text_pairs: bool = False,
                 name: str = "bert_classifier", **kwargs):
        if labels is not None and len(labels) != num_classes:
            raise ConfigError(f"{len(labels)} labels for num_classes={num_classes}")
        inputs = encoder_inputs()
        outputs = encoder(inputs)
        vector = pool(pooling, outputs, inputs["input_mask"], name="pooling")
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(vector)
        logits = keras.layers.Dense(
            num_classes, name="classifier", dtype="float32",
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=encoder.bert_config.initializer_range))(x)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.preprocessor = preprocessor
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self.text_pairs = text_pairs
        # The tensors the serving export returns besides the logits.
        self._named_outputs = {"logits": logits, "pooled_output": vector,
                               "sequence_output": outputs["sequence_output"]}
        self._recipe = None

    # -- variables -------------------------------------------------------------------
    def unused_variables(self) -> list:
        return [] if self.pooling == "pooled_output" else self.encoder.get_layer("pooler").weights

    def checkpoint_variables(self) -> dict:
        names = self.encoder.checkpoint_variables()
        dense = self.get_layer("classifier")
        names["output_weights"] = dense.kernel
        names["output_bias"] = dense.bias
        for layer in self.layers:
            if isinstance(layer, AttentionPooling):
                names.update(layer.checkpoint_variables())
        return names

    # -- model dirs ----------------------------------------------------------------------
    def model_dir_task(self) -> dict:
        task = {"type": "classification", "labels": self.labels, "pooling": self.pooling,
                "pair": self.text_pairs}
        if self.preprocessor is not None and self.preprocessor.seq_length:
            task["max_seq_length"] = self.preprocessor.seq_length
        return task

    @classmethod
    def from_model_dir(cls, model_dir: str, skip_padding: bool = False,
                       seq_length: int | None = None) -> "BertClassifier":
        """The fine-tuned classifier of a model dir (written by `save_model_dir` or
        `bert-tf finetune`), with a preprocessor of `seq_length` (default: the
        length it was trained with)."""
        task = read_task(model_dir, "classification")
        preprocessor = BertPreprocessor.from_model_dir(
            model_dir, seq_length or task.get("max_seq_length", 128))
        model = cls(BertEncoder.from_model_dir(model_dir, skip_padding=skip_padding),
                    len(task["labels"]), task["pooling"], preprocessor=preprocessor,
                    labels=task["labels"], text_pairs=task.get("pair", False))
        model.load_model_dir_weights(model_dir)
        return model

    # -- serving ---------------------------------------------------------------------------
    def outputs_model(self) -> keras.Model:
        """The same layers with a dict output: `logits`, `pooled_output` (the vector the
        head sees) and `sequence_output`."""
        return keras.Model(self.input, self._named_outputs, name=f"{self.name}_outputs")

    def serving_module(self, tokenizer, seq_length: int):
        """`text` [, `text_b`] -> `logits`, `probabilities`, `label`, `pooled_output`,
        `sequence_output`, `input_mask` (see `bert_tf.models.serving`), on a copy whose
        dense layers skip padding."""
        return text_serving_module(tokenizer, self.with_skip_padding().outputs_model(),
                                   seq_length, self.text_pairs, self.labels)

    # -- text in: fit / evaluate / predict ------------------------------------------------
    def compile(self, optimizer="bert", loss="auto", metrics="auto", learning_rate: float = 5e-5,
                warmup_proportion: float = 0.1, **kwargs):
        """Keras `compile`, with defaults for BERT fine-tuning.

        `optimizer="bert"` (the default) is BERT's recipe: AdamW (weight decay 0.01,
        none on LayerNorm and biases, epsilon 1e-6, clipped at global norm 1.0) with
        a learning rate rising linearly to `learning_rate` over the first
        `warmup_proportion` of the steps and falling linearly to 0 at the last one;
        `fit` sets it up once it knows the number of steps. `loss="auto"`: sparse
        categorical cross-entropy on the logits; `metrics="auto"`: accuracy.
        """
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        self._recipe = None
        if isinstance(optimizer, str) and optimizer == "bert":
            self._recipe = dict(learning_rate=learning_rate, warmup_proportion=warmup_proportion,
                                loss=loss, metrics=metrics, **kwargs)
            optimizer = bert_optimizer(learning_rate, total_steps=1, warmup_steps=0)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # As Keras' own, which skips models whose `compile` is overridden.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, shuffle=True, sample_weight=None,
            validation_data=None, **kwargs):
        steps_per_epoch = kwargs.get("steps_per_epoch")
        if self._is_text(x):
            x = self._text_dataset(x, y, batch_size or 32, shuffle=shuffle, weights=sample_weight)
            y = sample_weight = batch_size = None
            if validation_data is not None and self._is_text(validation_data[0]):
                validation_data = self._text_dataset(*validation_data, batch_size=32)
        if self._recipe is not None:
            steps = steps_per_epoch or _steps(x, y, batch_size)
            if steps is None:
                raise ConfigError("BERT's learning-rate schedule needs the number of steps: pass "
                                  "steps_per_epoch, a dataset of known size, or an optimizer")
            total = steps * (epochs - kwargs.get("initial_epoch", 0))
            recipe = dict(self._recipe)
            optimizer = bert_optimizer(recipe.pop("learning_rate"), total,
                                       int(recipe.pop("warmup_proportion") * total))
            super().compile(optimizer=optimizer, **recipe)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle,
                           sample_weight=sample_weight, validation_data=validation_data,
                           **kwargs)

    def evaluate(self, x=None, y=None, batch_size=None, sample_weight=None, **kwargs):
        if self._is_text(x):
            x = self._text_dataset(x, y, batch_size or 32, weights=sample_weight)
            y = sample_weight = batch_size = None
        return super().evaluate(x, y, batch_size=batch_size, sample_weight=sample_weight,
                                **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        if self._is_text(x):
            x = self._text_dataset(x, None, batch_size or 32)
            batch_size = None
        return super().predict(x, batch_size=batch_size, **kwargs)

    def _is_text(self, x) -> bool:
        if self.preprocessor is None or x is None or isinstance(x, (dict, tf.data.Dataset)):
            return False
        first = x[0] if _is_pair(x) else x
        return tf.convert_to_tensor(first).dtype == tf.string

    def _text_dataset(self, x, y, batch_size: int, shuffle: bool = False, weights=None):
        texts = tuple(tf.convert_to_tensor(t if isinstance(t, tf.Tensor) else
                                           np.asarray(t, dtype=object), tf.string)
                      for t in (x if _is_pair(x) else (x,)))
        if self.text_pairs != (len(texts) == 2):
            raise ConfigError(f"{self.name} was built with text_pairs={self.text_pairs} but "
                              f"got {'pairs' if len(texts) == 2 else 'single texts'}")
        parts = [texts] + [np.asarray(v) for v in (y, weights) if v is not None]
        ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
        if shuffle:
            ds = ds.shuffle(len(texts[0]), reshuffle_each_iteration=True)
        preprocessor = self.preprocessor
        ds = ds.batch(batch_size).map(lambda t, *rest: (preprocessor(t), *rest),
                                      num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        return self.wrapped_config(num_classes=self.num_classes, pooling=self.pooling,
                                   dropout=self.dropout, labels=self.labels,
                                   text_pairs=self.text_pairs)


def _is_pair(x) -> bool:
    return isinstance(x, (tuple, list)) and len(x) == 2 and not isinstance(x[0], (str, bytes))


def _steps(x, y, batch_size) -> int | None:
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
