"""The pieces of fine-tuning a `BertTokenClassifier` (named entities) that differ from a
classifier's: CoNLL files in, batches of words and tags per epoch, and the dev set's
entity-level precision, recall and F1 after every epoch (`bert_tf.training.finetune`
runs them with the run dir, resume, TensorBoard and export every task shares).

Flow: CoNLL file -> `read_conll` (words and tags) -> `BertTokenClassifier`'s batches
(each word's tag at its first word-piece) -> `fit_resumable` -> `DevEntities`:
`predict` on the dev words -> `entity_scores` (seqeval's default mode).
"""
from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from bert_tf.data.conll import TaggedSentences, read_conll
from bert_tf.errors import DataError
from bert_tf.training.entities import entity_scores
from bert_tf.training.progress import LongStep

# WNUT-17 (emerging and rare entities) as its upstream files are named, under `data_dir`.
WNUT17_FILES = {"train": os.path.join("WNUT-17", "wnut17train.conll"),
                "dev": os.path.join("WNUT-17", "emerging.dev.conll")}
# The dev metrics a tagging run records per epoch (the entity scores, micro-averaged).
ENTITY_METRICS = ("dev_f1", "dev_precision", "dev_recall")


def tagging_files(task: str, data_dir: str, train: str | None, dev: str | None,
                  ) -> dict[str, str]:
    """The training and dev CoNLL files of `task`: `wnut17`'s under `data_dir`, or the
    given `train` and `dev` (`ner`). Raises `DataError` for one that is missing."""
    if task == "wnut17":
        files = {split: os.path.join(data_dir, path) for split, path in WNUT17_FILES.items()}
    elif not (train and dev):
        raise DataError("task ner needs a training and a dev CoNLL file (--train, --dev)")
    else:
        files = {"train": train, "dev": dev}
    missing = [path for path in files.values() if not os.path.exists(path)]
    if missing:
        where = (" in the data dir (--data-dir or BERT_TF_DATA)" if task == "wnut17" else "")
        raise DataError(f"{task}: looked for {', '.join(missing)} and did not find it{where}")
    return files


def read_tagged(task: str, data_dir: str, train: str | None, dev: str | None,
                tag_column: int | None) -> tuple[TaggedSentences, TaggedSentences]:
    """The training and dev sentences of `task` (see `tagging_files`); a bad file ends
    in read_conll's one-line `DataError` naming the file and line."""
    files = tagging_files(task, data_dir, train, dev)
    column = -1 if tag_column is None else tag_column
    return read_conll(files["train"], column), read_conll(files["dev"], column)


def limit(sentences: TaggedSentences, n: int | None) -> TaggedSentences:
    """The first `n` sentences (all when `n` is None)."""
    if not n:
        return sentences
    return TaggedSentences(sentences.words[:n], sentences.tags[:n], sentences.source)


def tagging_epochs(model, sentences: TaggedSentences, batch_size: int, seed: int = 0):
    """`(batches per epoch, epoch_data)` for `fit_resumable`: `epoch_data(e)` gives epoch
    `e`'s batches of the model's inputs and labels, the sentences in an order drawn
    from `seed` and `e` (the same whenever asked, so a resumed epoch skips the batches
    it trained)."""
    steps = -(-len(sentences) // batch_size)

    def epoch_data(epoch: int) -> tf.data.Dataset:
        order = np.random.default_rng([seed, epoch]).permutation(len(sentences))
        words = [sentences.words[i] for i in order]
        tags = [sentences.tags[i] for i in order]
        ds = model._text_dataset(model._texts(words), tags, None, batch_size)
        return ds.apply(tf.data.experimental.assert_cardinality(steps))
    return steps, epoch_data


class DevEntities(keras.callbacks.Callback):
    """The dev sentences' entity-level precision, recall and F1 (`entity_scores`) after
    every epoch: the micro averages into `logs` (`ENTITY_METRICS`, so the history and
    TensorBoard have them), the whole of `entity_scores` (counts, and the same per
    entity type under `by_type`) in `scores`. A dev sentence longer than the model's
    `seq_length` is read in windows, as `predict` reads it (training trims such a
    sentence to `seq_length`), so every dev entity counts. It prints a line when it starts and one
    with the scores when it ends."""

    def __init__(self, sentences: TaggedSentences, batch_size: int, newline: bool = False):
        super().__init__()
        self.sentences = sentences
        self.batch_size = batch_size
        self.newline = newline
        self.scores = None

    def evaluate(self) -> dict:
        step = LongStep("dev evaluation", f"{len(self.sentences)} sentences, entity scores",
                        newline=self.newline)
        predicted = self.model.predict(self.sentences.words, batch_size=self.batch_size)
        self.scores = entity_scores(self.sentences.tags, predicted)
        step.done(" - ".join(f"{k}: {self.scores[k.removeprefix('dev_')]:.4f}"
                             for k in ENTITY_METRICS))
        return {k: self.scores[k.removeprefix("dev_")] for k in ENTITY_METRICS}

    def on_epoch_end(self, epoch, logs=None):
        result = self.evaluate()
        if logs is not None:
            logs.update(result)
