"""Labelled text from TSV files, and `tf.data` input pipelines for BERT.

GLUE TSVs have no quoting: fields are split on tabs only (MRPC strings hold bare
double quotes). Every problem is reported with its file and line.

Example:
    >>> train = read_task("sst2", data_dir, "train")    # data_dir: e.g. "../shared/data"
    >>> len(train.texts_a), train.texts_b, train.labels[:3]
    (67349, None, ['0', '0', '1'])
    >>> dev = read_task("mrpc", data_dir, "dev")        # a pair task: texts_b too
    >>> len(dev.texts_a), len(dev.texts_b), label_map(dev)
    (408, 408, ['0', '1'])
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from bert_tf.errors import DataError
from bert_tf.io.text import read_text
from bert_tf.preprocessing.tokenizer import BertTokenizer


@dataclasses.dataclass
class Examples:
    texts_a: list[str]
    texts_b: list[str] | None
    labels: list[str]
    source: str

    def __len__(self):
        return len(self.texts_a)


# task -> (folder, text column, text_b column or None, label column)
GLUE_TASKS = {
    "sst2": ("SST-2", "sentence", None, "label"),
    "mrpc": ("MRPC", "#1 String", "#2 String", "Quality"),
}


def glue_files(task: str, data_dir: str) -> dict[str, str]:
    folder = GLUE_TASKS[task][0]
    return {split: os.path.join(data_dir, folder, f"{split}.tsv") for split in ("train", "dev")}


def read_task(task: str, data_dir: str, split: str) -> Examples:
    """A GLUE task's split (`train` or `dev`) from `data_dir/<folder>/<split>.tsv`."""
    _, text, text_b, label = GLUE_TASKS[task]
    return read_tsv(glue_files(task, data_dir)[split], text, text_b, label)


def read_tsv(path: str, text_column: str, text_b_column: str | None,
             label_column: str, empty_labels: bool = False) -> Examples:
    """Reads a TSV with a header row; columns are named by the header. An empty
    label is an error unless `empty_labels` (a multi-label row with no label)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    lines = read_text(path, "utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    if not lines:
        raise DataError(f"{path}: file is empty")
    header = lines[0].split("\t")
    wanted = [c for c in (text_column, text_b_column, label_column) if c is not None]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"{path}, line 1: no column {missing[0]!r} in the header {header}")
    if len(lines) == 1:
        raise DataError(f"{path}: no examples after the header")
    index = {c: header.index(c) for c in wanted}
    texts_a, texts_b, labels = [], [] if text_b_column else None, []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}, line {number}: {len(fields)} fields, the header has "
                            f"{len(header)}")
        texts_a.append(fields[index[text_column]])
        if text_b_column:
            texts_b.append(fields[index[text_b_column]])
        label = fields[index[label_column]].strip()
        if not label and not empty_labels:
            raise DataError(f"{path}, line {number}: empty label")
        labels.append(label)
    return Examples(texts_a, texts_b, labels, path)


def label_map(train: Examples, dev: Examples | None = None,
              problem: str = "single_label") -> list[str]:
    """The labels, whose position is the class id (or the output, for regression).

    `single_label`: the sorted training labels (at least two); `multi_label`: the
    sorted names in the training rows' comma-separated lists; a dev label that
    training never saw is an error naming its line. `regression`: one name per
    output, from the label column's comma-separated numbers (`score`, or `score_0`,
    `score_1`, ...)."""
    if problem == "regression":
        width = len(regression_targets(train)[0])
        return ["score"] if width == 1 else [f"score_{i}" for i in range(width)]
    split = _label_names if problem == "multi_label" else (lambda label: [label])
    labels = sorted({x for label in train.labels for x in split(label)},
                    key=lambda x: (len(x), x))
    if not labels:
        raise DataError(f"{train.source}: no labels in any row")
    if problem == "single_label" and len(labels) < 2:  # it would learn to answer it always
        raise DataError(f"{train.source}: every row has the label {labels[0]!r}; a "
                        "single_label classifier needs training data of at least two classes")
    if dev is not None:
        known = set(labels)
        for i, label in enumerate(dev.labels):
            for name in split(label):
                if name not in known:
                    raise DataError(f"{dev.source}, line {i + 2}: label {name!r} does not occur "
                                    f"in training ({train.source}), which has {labels}")
    return labels


def _label_names(label: str) -> list[str]:
    return [x.strip() for x in label.split(",") if x.strip()]


def regression_targets(examples: Examples) -> np.ndarray:
    """The label column's comma-separated numbers, float32 `[N, outputs]`; a field
    that is not a number, or rows of different widths, are errors naming the line."""
    rows = []
    for i, label in enumerate(examples.labels):
        try:
            row = [float(x) for x in label.split(",")]
        except ValueError:
            raise DataError(f"{examples.source}, line {i + 2}: label {label!r} is not a number "
                            "(a regression target)") from None
        if not all(np.isfinite(row)):
            raise DataError(f"{examples.source}, line {i + 2}: label {label!r} is not finite")
        if rows and len(row) != len(rows[0]):
            raise DataError(f"{examples.source}, line {i + 2}: {len(row)} targets, line 2 has "
                            f"{len(rows[0])}")
        rows.append(row)
    return np.array(rows, np.float32)


def targets(examples: Examples, labels: list[str], problem: str = "single_label") -> np.ndarray:
    """The examples' labels as the loss takes them: class ids `[N]` (int32),
    multi-hot rows `[N, C]` or regression targets `[N]` (one output) / `[N, k]`
    (float32)."""
    if problem == "regression":
        y = regression_targets(examples)
        if y.shape[1] != len(labels):
            raise DataError(f"{examples.source}: {y.shape[1]} targets per line, the model has "
                            f"{len(labels)} outputs")
        return y[:, 0] if len(labels) == 1 else y
    ids = {label: i for i, label in enumerate(labels)}
    if problem == "multi_label":
        y = np.zeros((len(examples), len(labels)), np.float32)
        for row, label in enumerate(examples.labels):
            y[row, [ids[x] for x in _label_names(label)]] = 1.0
        return y
    return np.array([ids[x] for x in examples.labels], np.int32)


def encode(tokenizer: BertTokenizer, examples: Examples, max_seq_length: int,
           labels: list[str], batch: int = 4096, problem: str = "single_label"):
    """Tokenises every example once (in-graph) -> dict of int32 `[N, L]` arrays (L the
    longest, at most `max_seq_length`), the targets (`targets`), and how many were
    trimmed."""
    pack = tf.function(lambda a, b: tokenizer.preprocess([a, b], max_seq_length, True))
    single = tf.function(lambda a: tokenizer.preprocess(a, max_seq_length, True))
    parts, trimmed = [], 0
    for i in range(0, len(examples), batch):
        a = tf.constant(examples.texts_a[i:i + batch])
        if examples.texts_b is not None:
            b = tf.constant(examples.texts_b[i:i + batch])
            parts.append(pack(a, b))
            trimmed += int(tokenizer.count_trimmed([a, b], max_seq_length))
        else:
            parts.append(single(a))
            trimmed += int(tokenizer.count_trimmed(a, max_seq_length))
    width = max(p["input_word_ids"].shape[1] for p in parts)
    features = {k: np.concatenate([np.pad(p[k].numpy(), ((0, 0), (0, width - p[k].shape[1])))
                                   for p in parts]) for k in parts[0]}
    return features, targets(examples, labels, problem), trimmed


def _trim_to_longest(features, labels):
    """Pads a batch only to its longest example, rounded up to a multiple of 8 so
    that a handful of shapes recur (fewer retraces, and friendlier to XLA)."""
    longest = tf.reduce_max(tf.reduce_sum(features["input_mask"], axis=1))
    width = tf.minimum((longest + 7) // 8 * 8, tf.shape(features["input_mask"])[1])
    return {k: v[:, :width] for k, v in features.items()}, labels


# Bucket i holds lengths (w[i-1], w[i]], so a bucket's batches pad to at most w[i]:
# the widths `_trim_to_longest` rounds to. On SST-2 train this pads 1.25x the real
# tokens; the earlier boundaries (16, 32, 48, 64, ...) padded 1.65x.
BUCKET_WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256, 384)


def make_dataset(features: dict, labels: np.ndarray, batch_size: int, training: bool,
                 seed: int = 0, bucket_widths=BUCKET_WIDTHS, min_batch: int = 1):
    """A `tf.data` pipeline of `(inputs, labels)` batches, each padded only to its
    own longest example. For training: shuffled (reproducibly for `seed`, anew each
    epoch) and bucketed by length, so that short examples are batched together;
    batches smaller than `min_batch` (the replica count) are skipped."""
    ds = tf.data.Dataset.from_tensor_slices((features, labels))
    if training:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        ds = ds.bucket_by_sequence_length(
            lambda f, _: tf.reduce_sum(f["input_mask"]), [w + 1 for w in bucket_widths],
            [batch_size] * (len(bucket_widths) + 1), drop_remainder=False)
        if min_batch > 1:  # every replica needs at least one example
            ds = ds.filter(lambda f, _: tf.shape(f["input_mask"])[0] >= min_batch)
        # bucket_by_sequence_length emits buckets in bursts; mix them.
        ds = ds.shuffle(64, seed=seed + 1)
    else:
        ds = ds.batch(batch_size)
    ds = ds.map(_trim_to_longest, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    # Under multi-worker strategies every worker reads the same in-memory examples
    # and takes its share of each global batch.
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def training_epochs(features: dict, labels: np.ndarray, batch_size: int, seed: int = 0,
                    min_batch: int = 1):
    """`(batches per epoch, epoch_data)` for `fit_resumable`: `epoch_data(e)` gives epoch
    `e`'s training batches (`make_dataset`), the same whenever asked, with its size
    stated (for the progress bar). Bucket sizes depend on lengths only, so every epoch
    has the same number of batches. Epoch `e` is the pipeline's `e + 1`-th shuffle: the
    first pass of a fresh pipeline only counts its batches, as this project's jobs have
    always done, so runs keep the data order they had."""
    def pipeline():
        return make_dataset(features, labels, batch_size, training=True, seed=seed,
                            min_batch=min_batch)

    steps = sum(1 for _ in pipeline())

    def epoch_data(epoch: int) -> tf.data.Dataset:
        ds = pipeline()
        for _ in range(epoch + 1):
            for _ in ds:
                pass
        return ds.apply(tf.data.experimental.assert_cardinality(steps))
    return steps, epoch_data
