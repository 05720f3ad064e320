"""`BertTokenClassifier`: a tag for each word (named entities, parts of speech) on the
encoder, as a Keras model.

encoder -> `sequence_output` -> dropout -> dense -> `logits` `[B, L, num_labels]`,
one row per word-piece. The head's weights have the names BERT's NER ports of
google-research/bert give it (as `run_classifier.py`'s): `output_weights`
`[num_labels, H]` and `output_bias` `[num_labels]`.

Words, not word-pieces, carry the tags. As BERT's paper does for CoNLL-2003, each
word's tag is the label of its first word-piece; the word's other pieces, [CLS],
[SEP] and the padding have the label `IGNORE` (-1), which the loss and the accuracy
leave out (`encode_words` finds the first pieces, `place_tags` puts the labels there).
A word past `seq_length`, or with no piece at all (only characters BERT drops), is
not learned from; `predict` tags a word without pieces `O`.

`predict` (and the serving export) reads a text longer than the model in overlapping
windows of `seq_length` tokens, all in one batch (`encode_windows`): each token's
prediction comes from the first window that holds it at least `window_stride` tokens
from the window's edges (the text's own start and end excepted), so every token is
read with that much context on both sides and no word past `seq_length` is lost.
Consecutive windows start `content - 2 * window_stride` tokens apart (`content`:
`seq_length - 2`, the tokens between [CLS] and [SEP]); the default stride,
`content // 4`, gives each token a quarter window of context either side for about
twice the windows of the text's length (see `window_sizes`).

With a `preprocessor`, `fit` and `evaluate` take sentences as lists of words with
their tags (`bert_tf.data.conll.read_conll` reads CoNLL files so), and `predict`
takes lists of words (-> each word's tag) or raw text (-> `(word, tag)` pairs, the
words split as BERT splits them: `split_text`). Entity-level precision, recall and F1
of the predicted tags: `bert_tf.training.entities.entity_scores`.

Example:
    >>> import bert_tf
    >>> from bert_tf.config import BertConfig
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "anna", "lives", "in", "paris"]
    >>> encoder = bert_tf.BertEncoder.from_bert_config(BertConfig.preset("tiny", vocab_size=8))
    >>> pre = bert_tf.BertPreprocessor(vocab, seq_length=8)
    >>> tagger = BertTokenClassifier(encoder, ["O", "B-person", "B-location"], preprocessor=pre)
    >>> tagger.compile()      # BERT's recipe; loss and accuracy over the words' first pieces
    >>> _ = tagger.fit([["Anna", "lives", "in", "Paris"]],
    ...                [["B-person", "O", "O", "B-location"]], epochs=1, verbose=0)
    >>> len(tagger.predict([["Anna", "lives", "in", "Paris"]])[0])     # a tag per word
    4
    >>> [word for word, tag in tagger.predict("Anna lives in Paris.")[0]]
    ['Anna', 'lives', 'in', 'Paris', '.']
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.errors import ConfigError
from bert_tf.models.base import CheckpointNames, LeavesOutUnused, WrapsEncoder, read_task
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.task import TextTask, _is_string, head_dense
from bert_tf.preprocessing.preprocessor import BertPreprocessor
from bert_tf.preprocessing.tokenizer import _CJK, _PUNCTUATION, _WHITESPACE

IGNORE = -1  # the label of pieces that are not a word's first (and of padding)
OUTSIDE = "O"  # the tag of words the model did not see (trimmed, or without pieces)
# BERT's word split (`bert_tf.preprocessing.tokenizer.split_words`) on raw text.
_WORD_DELIMITERS = rf"{_WHITESPACE}+|{_PUNCTUATION}|{_CJK}"
_WORD_KEPT = rf"{_PUNCTUATION}|{_CJK}"


@keras.saving.register_keras_serializable(package="bert_tf")
class BertTokenClassifier(TextTask, WrapsEncoder, LeavesOutUnused, CheckpointNames, keras.Model):
    """The three inputs -> `logits` `[B, L, len(labels)]` (float32), per word-piece.

    Args:
        encoder: a `BertEncoder` (not changed; its pooler, unused by tags, is left out
            of the trainable variables).
        labels: the tag names (BIO/IOB2 for entities: `O`, `B-person`, ...); a tag's
            position is its class id.
        dropout: dropout rate before the dense layer.
        preprocessor: an optional `BertPreprocessor` (vocab, casing and `seq_length`),
            so that `fit`, `evaluate` and `predict` take words and text.
        window_stride: the context in tokens each token keeps on both sides when a
            text longer than `seq_length` is read in windows (`predict` and the
            serving export; see the module); None: a quarter of a window's content.
    """

    TRANSPOSED = ("output_weights",)

    def __init__(self, encoder: BertEncoder, labels: list[str], dropout: float = 0.1,
                 preprocessor: BertPreprocessor | None = None,
                 window_stride: int | None = None,
                 name: str = "bert_token_classifier", **kwargs):
        labels = list(labels)
        if not labels or not all(isinstance(label, str) and label for label in labels):
            raise ConfigError(f"labels {labels!r:.80}: a non-empty list of tag names")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"labels name {repeated} more than once")
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        x = keras.layers.Dropout(dropout, name="token_classifier_dropout")(sequence)
        logits = head_dense(len(labels), "token_classifier", encoder)(x)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.preprocessor = preprocessor
        self.labels = labels
        self.dropout = dropout
        self.window_stride = window_stride   # checked against the seq_length it runs at

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    # -- variables -------------------------------------------------------------------
    def unused_variables(self) -> list:
        return self.encoder.get_layer("pooler").weights  # tags use sequence_output only

    def checkpoint_variables(self) -> dict:
        names = self.encoder.checkpoint_variables()
        dense = self.get_layer("token_classifier")
        names["output_weights"] = dense.kernel
        names["output_bias"] = dense.bias
        return names

    # -- model dirs ----------------------------------------------------------------------
    def model_dir_task(self) -> dict:
        task = {"type": "token_classification", "labels": self.labels}
        if self.preprocessor is not None and self.preprocessor.seq_length:
            task["max_seq_length"] = self.preprocessor.seq_length
        if self.window_stride is not None:
            task["window_stride"] = self.window_stride
        return task

    @classmethod
    def from_model_dir(cls, model_dir: str, skip_padding: bool = False,
                       seq_length: int | None = None) -> "BertTokenClassifier":
        """The token classifier of a model dir (written by `save_model_dir`), with a
        preprocessor of `seq_length` (default: the length it was trained with)."""
        task = read_task(model_dir, "token_classification")
        preprocessor = BertPreprocessor.from_model_dir(
            model_dir, seq_length or task.get("max_seq_length", 128))
        model = cls(BertEncoder.from_model_dir(model_dir, skip_padding=skip_padding),
                    task["labels"], preprocessor=preprocessor,
                    window_stride=task.get("window_stride"))
        model.load_model_dir_weights(model_dir)
        return model

    # -- serving ---------------------------------------------------------------------------
    def serving_module(self, tokenizer, seq_length: int):
        """`text` -> the entities with their code point offsets (`serving_default`) and
        each word's tag (`tags`): `bert_tf.models.entity_serving`, on a copy whose dense
        layers skip padding, long texts in windows of `seq_length` moved as
        `window_stride` says."""
        from bert_tf.models.entity_serving import entity_serving_module  # builds on this module
        return entity_serving_module(tokenizer, self.with_skip_padding(), seq_length,
                                     self.labels, self.window_stride)

    # -- loss and metrics ------------------------------------------------------------------
    def default_loss(self):
        # Keras averages over the labelled pieces only (the loss masks IGNORE).
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                          ignore_class=IGNORE)

    def default_metrics(self):
        return [TokenAccuracy(name="accuracy")]

    # -- words in, tags out ------------------------------------------------------------------
    def fit(self, x=None, y=None, **kwargs):
        # Tags as an array of rows, so that `validation_split` can cut them as the words.
        return super().fit(x, _rows(y) if self._texts(x) is not None else y, **kwargs)

    def predict(self, x, batch_size=None, **kwargs):
        """Keras' `predict` for the model's inputs; for sentences given as lists of
        words, each word's tag (a list of tags per sentence); for raw text, each
        word's `(word, tag)` (words as `split_text` splits them). Sentences longer
        than the preprocessor's `seq_length` run in windows (see the module), a
        batch's windows as one batch."""
        texts = self._texts(x)
        if texts is None:
            return super().predict(x, batch_size=batch_size, **kwargs)
        window_sizes(self.preprocessor.seq_length, self.window_stride)   # before any tracing
        words = texts[0]
        tags = []
        for inputs, positions in self._text_dataset(texts, None, None, batch_size):
            logits = self.predict_on_batch(inputs)
            tags += self.tags_at(logits, positions)
        if not _is_raw(x):
            return tags
        return [list(zip(_decode(w), t)) for w, t in zip(words.to_list(), tags)]

    def tags_at(self, logits, word_positions) -> list[list[str]]:
        """Each word's tag: the best label of its first piece in `logits`
        `[windows, L, num_labels]` (`word_positions` from `encode_windows`; `O` where -1)."""
        flat = tf.reshape(logits, [-1, tf.shape(logits)[-1]])
        ids = tf.argmax(tf.gather(flat, tf.maximum(word_positions, 0)), -1)
        ids = tf.where(word_positions >= 0, ids, -1).numpy()
        lengths = tf.reduce_sum(tf.cast(word_positions != PADDING_WORD, tf.int32), 1).numpy()
        return [[OUTSIDE if i < 0 else self.labels[i] for i in row[:n]]
                for row, n in zip(ids, lengths)]

    def _texts(self, x) -> tuple | None:
        """`x` as `(words,)`, a string RaggedTensor `[N, (words)]`, or None when `x` is
        not words or text (the model's inputs, or a dataset of them)."""
        if self.preprocessor is None or x is None or isinstance(x, (dict, tf.data.Dataset)):
            return None
        if isinstance(x, tf.RaggedTensor):
            return (x,) if x.dtype == tf.string and x.shape.rank == 2 else None
        if _is_raw(x):
            texts = [x] if _is_string(x) else list(x)
            return (split_text(tf.constant(texts, tf.string))[0],)
        if isinstance(x, (list, tuple)) and x and isinstance(x[0], (list, tuple)):
            for i, sentence in enumerate(x):
                if not isinstance(sentence, (list, tuple)) or not all(map(_is_string, sentence)):
                    raise ConfigError(f"sentence {i} is {sentence!r:.60}, not a list of words")
            flat = [word for sentence in x for word in sentence]
            return (tf.RaggedTensor.from_row_lengths(tf.constant(flat, tf.string, [len(flat)]),
                                                     [len(sentence) for sentence in x]),)
        if isinstance(x, (list, tuple)) and not x:
            raise ConfigError("no sentences: the list is empty")
        return None

    def _tag_ids(self, tags, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """Sentences' tags (names, word for word with `words`) -> int32 ids `[N, (words)]`."""
        index = {label: i for i, label in enumerate(self.labels)}
        lengths = words.row_lengths().numpy()
        if len(tags) != len(lengths):
            raise ConfigError(f"{len(lengths)} sentences but tags for {len(tags)}")
        ids = []
        for n, (sentence, length) in enumerate(zip(tags, lengths)):
            if len(sentence) != length:
                raise ConfigError(f"sentence {n}: {length} words but {len(sentence)} tags")
            for tag in sentence:
                if tag not in index:
                    raise ConfigError(f"sentence {n}: tag {tag!r} is not one of the labels "
                                      f"{self.labels}")
                ids.append(index[tag])
        return tf.RaggedTensor.from_row_lengths(tf.constant(ids, tf.int32, [len(ids)]), lengths)

    def _text_dataset(self, texts: tuple, y, weights, batch_size, shuffle: bool = False):
        """Batches of the model's inputs with each piece's label (`IGNORE` but at first
        pieces) and sentence weights, from words and tags; without tags, the inputs
        and `encode_words`' word positions."""
        words = texts[0]
        parts = [words]
        if y is not None:
            parts.append(self._tag_ids(y, words))
        if weights is not None:
            weights = np.asarray(weights, "float32")
            if len(weights) != int(words.nrows()):
                raise ConfigError(f"{int(words.nrows())} sentences but {len(weights)} "
                                  "sample_weight")
            parts.append(weights)
        ds = tf.data.Dataset.from_tensor_slices(tuple(parts))
        if shuffle:
            ds = ds.shuffle(int(words.nrows()), reshuffle_each_iteration=True)
        pre = self.preprocessor

        def encode(words, *rest):
            if not rest:
                return encode_windows(pre.tokenizer, words, pre.seq_length, self.window_stride,
                                      pre.pad_to_longest)
            inputs, positions = encode_words(pre.tokenizer, words, pre.seq_length,
                                             pre.pad_to_longest)
            width = tf.shape(inputs["input_word_ids"])[1]
            return (inputs, place_tags(rest[0], positions, width), *rest[1:])
        return ds.ragged_batch(batch_size or 32).map(
            encode, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def _dataset(self, ds: tf.data.Dataset, batch_size) -> tf.data.Dataset:
        return ds  # a dataset of the model's inputs (and labels), as Keras takes it

    # -- config ------------------------------------------------------------------------------
    def get_config(self):
        return self.wrapped_config(labels=self.labels, dropout=self.dropout,
                                   window_stride=self.window_stride)


PADDING_WORD = -2  # `encode_words`' position for the padding after a sentence's words


def split_text(texts):
    """Raw text `[B]` -> its words as BERT splits them (at whitespace, and around
    punctuation and CJK characters) `[B, (words)]`, with each word's start and end
    byte offsets in the text (RaggedTensors of the same shape)."""
    return tf_text.regex_split_with_offsets(texts, _WORD_DELIMITERS, _WORD_KEPT)


def _sentence_pieces(tokenizer, words: tf.RaggedTensor):
    """Sentences as words `[B, (words)]` -> their word-pieces `[B, (pieces)]`, each
    word's piece count and the offset of its first piece in its sentence (both
    `[all words]`, int64)."""
    pieces = tokenizer.tokenize(words.flat_values).merge_dims(1, 2)    # [all words, pieces]
    per_word = pieces.row_lengths()
    per_sentence = tf.reduce_sum(words.with_flat_values(per_word), axis=1)
    sentences = tf.RaggedTensor.from_row_lengths(pieces.flat_values, per_sentence)
    first = tf.cumsum(per_word, exclusive=True) \
        - tf.gather(sentences.row_splits[:-1], words.value_rowids())
    return sentences, per_word, first


def encode_words(tokenizer, words: tf.RaggedTensor, seq_length: int | None,
                 pad_to_longest: bool = False):
    """Sentences as words (strings `[B, (words)]`) -> the model's three inputs
    `[B, L]` (`[CLS]`, the words' pieces, `[SEP]`, as `BertTokenizer.pack_inputs`
    trims and pads them) and `word_positions` int32 `[B, max words]`: where each
    word's first piece is in the inputs; -1 for a word trimmed away or with no piece,
    `PADDING_WORD` (-2) after a sentence's last word. (Training reads sentences so;
    `predict` reads long ones in windows: `encode_windows`.)"""
    sentences, per_word, first = _sentence_pieces(tokenizer, words)
    inputs = tokenizer.pack_inputs([sentences], seq_length, pad_to_longest)
    per_sentence = sentences.row_lengths()
    kept = per_sentence if seq_length is None else tf.minimum(per_sentence, seq_length - 2)
    seen = (per_word > 0) & (first < tf.gather(kept, words.value_rowids()))
    positions = words.with_flat_values(tf.cast(tf.where(seen, first + 1, -1), tf.int32))
    return inputs, positions.to_tensor(default_value=PADDING_WORD)   # 1: after [CLS]


def window_sizes(seq_length: int | None, stride: int | None = None) -> tuple[int, int]:
    """`(content, stride)`: the word-pieces a window of `seq_length` tokens holds
    (`seq_length - 2`, between [CLS] and [SEP]) and the context each token keeps on
    both sides; `stride` None gives `content // 4` (at least 1): a quarter window of
    context either side, windows half a window apart, so a long text costs about
    twice the windows of its length. Without a `seq_length`, one window holds all.

    >>> window_sizes(128)
    (126, 31)

    Raises:
        ConfigError: `stride` is not between 1 and `(content - 1) // 2` (windows must
            move by at least one token: `content - 2 * stride`).
    """
    if seq_length is None:
        return 0, 0
    content = seq_length - 2
    if stride is None:
        stride = max(content // 4, 1)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) \
            or not 1 <= stride <= (content - 1) // 2:
        raise ConfigError(
            f"window stride {stride!r}: the tokens of context kept on each side of a window "
            f"must be at least 1 and less than half of a window's {content} word-pieces "
            f"(seq_length {seq_length} - 2), at most {(content - 1) // 2}")
    return content, int(stride)


def encode_windows(tokenizer, words: tf.RaggedTensor, seq_length: int | None,
                   stride: int | None = None, pad_to_longest: bool = False):
    """Sentences as words (strings `[B, (words)]`) -> the model's three inputs of their
    windows `[N, L]` and `word_positions` int32 `[B, max words]`: where each word's
    first piece is in the windows' inputs flattened to `[N * L]` (row * L + column);
    -1 for a word with no piece, `PADDING_WORD` (-2) after a sentence's last word.

    A sentence of P pieces that fits in `seq_length` is one window (as `encode_words`
    packs it); a longer one is `1 + ceil((P - content) / step)` windows of `content`
    pieces (`window_sizes`) starting `step = content - 2 * stride` apart, the last one
    moved back to end with the sentence. A piece is read in the first of its windows
    that holds it at least `stride` pieces from both edges, an edge at the sentence's
    own start or end excepted: window `clip((p - stride) // step, 0, n - 1)` for piece
    `p`. The windows of all sentences are rows of one batch, in order."""
    content, stride = window_sizes(seq_length, stride)
    sentences, per_word, first = _sentence_pieces(tokenizer, words)
    total = sentences.row_lengths()                                      # P, [B]
    if seq_length is None:                      # no limit: one window holds each sentence
        content = step = tf.reduce_max(tf.concat([total, tf.ones([1], tf.int64)], 0))
    else:
        content, step = (tf.constant(n, tf.int64) for n in (content, content - 2 * stride))
    windows = 1 + tf.maximum(total - content + step - 1, 0) // step     # n, [B]
    last_start = tf.maximum(total - content, 0)
    of_window = tf.repeat(tf.range(tf.size(total, tf.int64)), windows)  # [N]: its sentence
    index = tf.ragged.range(windows).flat_values                         # [N]: k
    start = tf.minimum(index * step, tf.gather(last_start, of_window))
    length = tf.minimum(content, tf.gather(total, of_window) - start)
    begin = tf.gather(sentences.row_splits, of_window) + start
    pieces = tf.RaggedTensor.from_row_lengths(
        tf.gather(sentences.flat_values, tf.ragged.range(begin, begin + length).flat_values),
        length)
    inputs = tokenizer.pack_inputs([pieces], seq_length, pad_to_longest)
    # Each word's window (first that holds its first piece `stride` from the edges).
    sentence = words.value_rowids()
    k = tf.clip_by_value(tf.math.floordiv(first - stride, step), 0,
                         tf.gather(windows, sentence) - 1)
    row = tf.gather(tf.cumsum(windows, exclusive=True), sentence) + k
    column = 1 + first - tf.minimum(k * step, tf.gather(last_start, sentence))  # 1: [CLS]
    width = tf.cast(tf.shape(inputs["input_word_ids"])[1], tf.int64)
    flat = tf.where(per_word > 0, row * width + column, -1)
    positions = words.with_flat_values(tf.cast(flat, tf.int32))
    return inputs, positions.to_tensor(default_value=PADDING_WORD)


def place_tags(tag_ids: tf.RaggedTensor, word_positions, width):
    """Each word's tag id (`[B, (words)]`) at its first piece -> labels `[B, width]`,
    `IGNORE` everywhere else."""
    ids = tag_ids.to_tensor(default_value=IGNORE, shape=tf.shape(word_positions))
    words = tf.where(word_positions >= 0)                          # [K, 2]: sentence, word
    at = tf.stack([words[:, 0], tf.cast(tf.gather_nd(word_positions, words), tf.int64)], 1)
    batch = tf.shape(word_positions)[0]
    return tf.tensor_scatter_nd_update(tf.fill([batch, width], IGNORE), at,
                                       tf.gather_nd(tf.cast(ids, tf.int32), words))


@keras.saving.register_keras_serializable(package="bert_tf")
class TokenAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy over the pieces whose label is not `IGNORE` (each word's first).

    >>> m = TokenAccuracy()
    >>> m.update_state(np.array([[-1, 1, -1, 0]]),
    ...                np.array([[[9.0, 0], [0, 1], [0, 9], [0, 1]]], "float32"))
    >>> float(m.result())     # pieces 1 (right) and 3 (wrong)
    0.5
    """

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.convert_to_tensor(y_true)
        labelled = keras.ops.cast(keras.ops.not_equal(y_true, IGNORE), "float32")
        if sample_weight is not None:
            sample_weight = keras.ops.convert_to_tensor(sample_weight, "float32")
            while len(sample_weight.shape) < len(labelled.shape):
                sample_weight = keras.ops.expand_dims(sample_weight, -1)
            labelled = labelled * sample_weight
        super().update_state(keras.ops.maximum(y_true, 0), y_pred, labelled)


def _is_raw(x) -> bool:
    """Raw text: one string, or a list (or 1-D array) of strings."""
    if _is_string(x):
        return True
    if isinstance(x, np.ndarray):
        return x.ndim == 1 and x.dtype.kind in "USO" and all(map(_is_string, x))
    return isinstance(x, (list, tuple)) and bool(x) and all(map(_is_string, x))


def _rows(y):
    """Sentences' tags as a 1-D object array (one list per sentence), as `_split` cuts."""
    if y is None or isinstance(y, (np.ndarray, tf.Tensor, tf.RaggedTensor, dict)):
        return y
    rows = np.empty(len(y), dtype=object)
    for i, tags in enumerate(y):
        rows[i] = list(tags)
    return rows


def _decode(words) -> list[str]:
    return [w.decode("utf-8") for w in words]
