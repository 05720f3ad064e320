"""`BertClassifier`: sequence classification and regression on the encoder, as a
Keras model.

encoder -> pooling (`bert_tf.layers.pooling`) -> dropout -> dense -> `logits`.
The head's weights have the names of google-research/bert's `run_classifier.py`:
`output_weights` `[num_classes, H]` and `output_bias` `[num_classes]`; learned
attention pooling adds `pooling/attention/query`.

`problem` picks what the outputs mean, with its loss, metrics and serving outputs:
- `single_label` (default): one class per text; softmax cross-entropy, accuracy;
  the export returns `probabilities` and `label`.
- `multi_label`: any number of the `num_classes` labels per text (multi-hot
  targets); each label's sigmoid, binary cross-entropy, micro/macro F1 over
  `threshold`; the export returns `probabilities` and the `labels` over it.
- `regression`: `num_outputs` real numbers per text; mean squared error; the
  export returns `predictions`.

With a `preprocessor`, `fit`, `evaluate` and `predict` take raw text in any form
Keras users pass (`bert_tf.models.task`), and `compile()` is BERT's recipe.

Example:
    >>> import bert_tf
    >>> from bert_tf.config import BertConfig
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "bad", "film"]
    >>> encoder = bert_tf.BertEncoder.from_bert_config(BertConfig.preset("tiny", vocab_size=7))
    >>> pre = bert_tf.BertPreprocessor(vocab, seq_length=8)
    >>> clf = BertClassifier(encoder, num_classes=2, pooling="mean", preprocessor=pre)
    >>> clf.compile()    # BERT's recipe: AdamW, linear warm-up and decay (length from `fit`)
    >>> history = clf.fit(["good film", "bad film"], [1, 0], epochs=1, verbose=0)
    >>> clf.predict(["good film"], verbose=0).shape
    (1, 2)
    >>> scorer = BertClassifier(encoder, problem="regression", preprocessor=pre)
    >>> scorer.compile()                              # mean squared error
    >>> _ = scorer.fit(["good film", "bad film"], [4.5, 0.5], epochs=1, verbose=0)
    >>> scorer.predict("good film", verbose=0).shape  # one string: a batch of one
    (1, 1)
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from bert_tf.choices import PROBLEMS
from bert_tf.errors import ConfigError
from bert_tf.layers import AttentionPooling, pool
from bert_tf.models.base import CheckpointNames, LeavesOutUnused, WrapsEncoder, read_task
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.serving import text_serving_module
from bert_tf.models.task import TextTask, head_dense
from bert_tf.preprocessing.preprocessor import BertPreprocessor


@keras.saving.register_keras_serializable(package="bert_tf")
class BertClassifier(TextTask, WrapsEncoder, LeavesOutUnused, CheckpointNames, keras.Model):
    """The three inputs -> `logits` `[B, num_classes]` (float32; for regression the
    predictions themselves, `[B, num_outputs]`).

    Args:
        encoder: a `BertEncoder` (used as it is; building the head never changes it).
        num_classes: number of classes (or labels, for `multi_label`; outputs, for
            `regression`).
        pooling: how the head reduces the sequence: `pooled_output` (BERT's pooler),
            `cls`, `mean`, `max`, `mean_sqrt_len` or `attention`.
        dropout: dropout rate before the dense layer.
        preprocessor: an optional `BertPreprocessor`, so that `fit`, `evaluate` and
            `predict` take text.
        labels: class names (for the serving export's `label`); default "0", "1", ...
        text_pairs: the model classifies pairs of texts (the serving export then
            takes `text` and `text_b`).
        problem: `single_label`, `multi_label` or `regression` (see the module).
        num_outputs: for `regression`, the number of outputs (default 1), in place
            of `num_classes`.
        threshold: for `multi_label`, the probability over which a label is
            predicted (metrics and the serving export's `labels`).

    With any pooling but `pooled_output` the head never sees BERT's pooler: its
    weights are left out of the trainable variables (the encoder is not changed).
    """

    TRANSPOSED = ("output_weights",)

    def __init__(self, encoder: BertEncoder, num_classes: int | None = None,
                 pooling: str = "pooled_output", dropout: float = 0.1,
                 preprocessor: BertPreprocessor | None = None, labels: list[str] | None = None,
                 text_pairs: bool = False, problem: str = "single_label",
                 num_outputs: int | None = None, threshold: float = 0.5,
                 name: str = "bert_classifier", **kwargs):
        if problem not in PROBLEMS:
            raise ConfigError(f"problem {problem!r}: choose one of {PROBLEMS}")
        if num_outputs is not None:
            if problem != "regression":
                raise ConfigError(f"num_outputs is for problem='regression' (got {problem!r}: "
                                  "pass num_classes)")
            if num_classes not in (None, num_outputs):
                raise ConfigError(f"num_classes={num_classes} and num_outputs={num_outputs}")
            num_classes = num_outputs
        if num_classes is None:
            if problem != "regression":
                raise ConfigError(f"a {problem} classifier needs num_classes")
            num_classes = 1
        if not 0 < threshold < 1:
            raise ConfigError(f"threshold {threshold}: a probability strictly between 0 and 1")
        if labels is not None and len(labels) != num_classes:
            raise ConfigError(f"{len(labels)} labels for num_classes={num_classes}")
        inputs = encoder_inputs()
        outputs = encoder(inputs)
        vector = pool(pooling, outputs, inputs["input_mask"], name="pooling")
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(vector)
        logits = head_dense(num_classes, "classifier", encoder)(x)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.preprocessor = preprocessor
        self.num_classes = num_classes
        self.pooling = pooling
        self.dropout = dropout
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self.text_pairs = text_pairs
        self.problem = problem
        self.threshold = float(threshold)
        # The tensors the serving export returns besides the logits.
        self._named_outputs = {"logits": logits, "pooled_output": vector,
                               "sequence_output": outputs["sequence_output"]}

    @property
    def num_outputs(self) -> int:
        """The width of the head (`num_classes`), as regression names it."""
        return self.num_classes

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
                "pair": self.text_pairs, "problem": self.problem}
        if self.problem == "multi_label":
            task["threshold"] = self.threshold
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
                    labels=task["labels"], text_pairs=task.get("pair", False),
                    problem=task.get("problem", "single_label"),
                    threshold=task.get("threshold", 0.5))
        model.load_model_dir_weights(model_dir)
        return model

    # -- serving ---------------------------------------------------------------------------
    def outputs_model(self) -> keras.Model:
        """The same layers with a dict output: `logits`, `pooled_output` (the vector the
        head sees) and `sequence_output`."""
        return keras.Model(self.input, self._named_outputs, name=f"{self.name}_outputs")

    def serving_module(self, tokenizer, seq_length: int):
        """`serving_default`: `text` [, `text_b`] -> the problem's outputs (`logits`,
        `probabilities`, `label`; `logits`, `probabilities`, `labels`; or `predictions`);
        `embed`, `encode`, and `classify` or `regress` on `tf.Example`s
        (`bert_tf.models.serving.text_serving_module`), on a copy whose dense layers skip
        padding."""
        return text_serving_module(tokenizer, self.with_skip_padding().outputs_model(),
                                   seq_length, self.text_pairs, self.labels,
                                   problem=self.problem, threshold=self.threshold)

    # -- the problem's loss, metrics and labels ---------------------------------------------
    def default_loss(self):
        if self.problem == "multi_label":
            return keras.losses.BinaryCrossentropy(from_logits=True)
        if self.problem == "regression":
            return keras.losses.MeanSquaredError()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        if self.problem == "multi_label":
            return [MultiLabelF1(average="micro", threshold=self.threshold, name="micro_f1"),
                    MultiLabelF1(average="macro", threshold=self.threshold, name="macro_f1")]
        if self.problem == "regression":
            return [keras.metrics.MeanAbsoluteError(name="mae")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def check_targets(self, y):
        """Labels given as a list or array, checked against the problem (so that a
        wrong kind fails here, naming it, not inside the loss)."""
        if y is None or isinstance(y, (tf.data.Dataset, dict)):
            return y
        y = np.asarray(y)
        if self.problem == "single_label":
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.number) \
                    or not np.all(np.mod(y, 1) == 0):
                kind = "multi-hot rows (problem='multi_label')" if y.ndim == 2 else \
                    "numbers that are not class ids (problem='regression')"
                raise ConfigError(f"labels of shape {y.shape} and dtype {y.dtype} look like "
                                  f"{kind}; a single_label classifier takes one class id per "
                                  "text")
            if y.size and (y.min() < 0 or y.max() >= self.num_classes):
                raise ConfigError(f"labels run from {y.min()} to {y.max()}; class ids of "
                                  f"num_classes={self.num_classes} are 0..{self.num_classes - 1}")
            return y.astype("int32")
        if self.problem == "multi_label":
            if y.ndim != 2 or y.shape[1] != self.num_classes or not np.isin(y, (0, 1)).all():
                raise ConfigError(f"labels of shape {y.shape}: a multi_label classifier takes "
                                  f"multi-hot rows of 0/1, shape [N, {self.num_classes}]")
            return y.astype("float32")
        y = y.astype("float32")
        if y.ndim == 1 and self.num_classes == 1:
            return y
        if y.ndim != 2 or y.shape[1] != self.num_classes:
            raise ConfigError(f"targets of shape {y.shape}: this regression model has "
                              f"num_outputs={self.num_classes}")
        return y

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        return self.wrapped_config(num_classes=self.num_classes, pooling=self.pooling,
                                   dropout=self.dropout, labels=self.labels,
                                   text_pairs=self.text_pairs, problem=self.problem,
                                   threshold=self.threshold)


@keras.saving.register_keras_serializable(package="bert_tf")
class MultiLabelF1(keras.metrics.F1Score):
    """`keras.metrics.F1Score` of multi-label logits: each label's sigmoid, counted
    as predicted over `threshold`.

    >>> m = MultiLabelF1(average="micro", threshold=0.5)
    >>> m.update_state(np.array([[1, 0], [1, 1]], "float32"),
    ...                np.array([[2.0, -1.0], [-3.0, 4.0]], "float32"))
    >>> round(float(m.result()), 4)   # tp 2, fp 0, fn 1
    0.8
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(y_true, keras.ops.sigmoid(y_pred), sample_weight)
