"""Raw text in, named entities out: the serving module of a `BertTokenClassifier`, all in
TensorFlow ops (no `py_function`), so TF Serving runs it.

text `[B]` -> `split_text` (BERT's words, with byte offsets) -> `encode_windows` (the
model's inputs, a text longer than `seq_length` as overlapping windows, all texts'
windows in one batch, and where each word's first piece is read) -> logits -> each
word's tag (the best label at its first piece; `O` for a word without pieces) -> entities as
`bert_tf.training.entities.entities` reads tags (seqeval's default mode: `B-type`
starts one, `I-type` continues one of its type and starts one after `O` or another
type) -> per text, padded to the batch's most entities:

- `entity_text`, `entity_type` `[B, E]` strings (`""` after a text's entities): the
  entity as it stands in the input (from its first word's start to its last word's
  end, the spaces between included) and its type (`person` for `B-person`);
- `entity_start`, `entity_end` `[B, E]` int32 (-1 after): offsets in Unicode code
  points into the text as given, so that Python's `text[start:end] == entity_text`
  (lower-casing and accent stripping change only what the model reads);
- `entity_score` `[B, E]` float32 (0 after): the mean over the entity's words of the
  probability of the tag each was given (so 1.0 only when the model is sure of
  every word);
- `num_entities` `[B]` int32.

The `tags` signature gives each word of a text instead, padded to the batch's most
words: `words`, `tags` (`""` after), `word_start`, `word_end` (code points, -1 after),
`tag_score` (the tag's probability, 0 after) and `num_words` `[B]`.

A text longer than the model's `seq_length` tokens is read in windows as
`BertTokenClassifier.predict` reads it (`bert_tf.models.token_classifier`): each
word-piece from the first window that holds it at least `window_stride` pieces from
the window's edges, so the export's tags are `predict`'s.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from bert_tf.models.serving import WARMUP_TEXTS, as_float32, batch_of_texts, \
    code_point_offsets
from bert_tf.models.token_classifier import OUTSIDE, encode_windows, split_text, window_sizes

# A tag's part before its type (`bert_tf.training.entities` reads tags so).
OTHER, BEGIN, INSIDE = 0, 1, 2


def tag_parts(labels: list[str]) -> tuple[list[int], list[str]]:
    """Each tag's prefix (`BEGIN` for `B-type`, `INSIDE` for `I-type`, `OTHER` for `O`
    and any tag that is neither) and type (`""` for `OTHER`).

    >>> tag_parts(["O", "B-person", "I-person", "NNP"])
    ([0, 1, 2, 0], ['', 'person', 'person', ''])
    """
    prefixes, kinds = [], []
    for tag in labels:
        prefix, _, kind = tag.partition("-")
        code = {"B": BEGIN, "I": INSIDE}.get(prefix, OTHER) if kind else OTHER
        prefixes.append(code)
        kinds.append(kind if code != OTHER else "")
    return prefixes, kinds


def entity_serving_module(tokenizer, model: keras.Model, seq_length: int, labels: list[str],
                          window_stride: int | None = None):
    """`serving_default`: `text` -> the entities; `tags`: `text` -> each word's tag (see
    the module). `model` maps the three inputs to `logits` `[B, L, len(labels)]`;
    `window_stride`: see `window_sizes` (None: its default).

    Returns `(module, signatures, warm-up examples)`."""
    window_sizes(seq_length, window_stride)   # a bad stride fails before anything is traced
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model
    # The tags, and `O` at index len(labels) for the words without pieces.
    names = tf.constant(list(labels) + [OUTSIDE])
    prefixes, kinds = tag_parts(list(labels) + [OUTSIDE])
    prefix_of, kind_of = tf.constant(prefixes), tf.constant(kinds)
    unseen = len(labels)

    def word_tags(text):
        """Each word's tag id, its probability, and its byte and code point offsets,
        `[B, W]` (padding: tag `unseen` = O, offsets -1, probability 0)."""
        texts = batch_of_texts(text, "text")
        words, begin, end = split_text(texts)
        inputs, positions = encode_windows(tokenizer, words, seq_length, window_stride,
                                           pad_to_longest=True)
        probs = tf.nn.softmax(as_float32(model(inputs, training=False)), axis=-1)
        flat = tf.reshape(probs, [-1, len(labels)])                      # [windows * L, C]
        at_first = tf.gather(flat, tf.maximum(positions, 0))               # [B, W, C]
        seen = positions >= 0
        ids = tf.where(seen, tf.argmax(at_first, -1, output_type=tf.int32), unseen)
        score = tf.where(seen, tf.reduce_max(at_first, -1), 0.0)
        padded = lambda r: r.to_tensor(default_value=-1, shape=tf.shape(ids))  # noqa: E731
        return {"texts": texts, "words": words, "ids": ids, "score": score,
                "byte_begin": padded(begin), "byte_end": padded(end),
                "start": padded(code_point_offsets(texts, begin)),
                "end": padded(code_point_offsets(texts, end))}

    def serve_tags(text):
        w = word_tags(text)
        real = tf.sequence_mask(w["words"].row_lengths(), tf.shape(w["ids"])[1])
        return {"words": w["words"].to_tensor(default_value=""),
                "tags": tf.where(real, tf.gather(names, w["ids"]), ""),
                "word_start": w["start"], "word_end": w["end"], "tag_score": w["score"],
                "num_words": tf.cast(w["words"].row_lengths(), tf.int32)}

    def serve_entities(text):
        w = word_tags(text)
        prefix, kind = tf.gather(prefix_of, w["ids"]), tf.gather(kind_of, w["ids"])
        before = lambda x, fill: tf.pad(x[:, :-1], [[0, 0], [1, 0]],  # noqa: E731
                                        constant_values=fill)
        after = lambda x, fill: tf.pad(x[:, 1:], [[0, 0], [0, 1]],  # noqa: E731
                                       constant_values=fill)
        tagged = prefix != OTHER
        # An I- tag starts an entity after O or after a tag of another type.
        starts = (prefix == BEGIN) | ((prefix == INSIDE) & ((before(prefix, OTHER) == OTHER)
                                                             | (before(kind, "") != kind)))
        # An entity's last word: the next word is O, starts another, or there is none.
        lasts = tagged & ((after(prefix, OTHER) == OTHER) | after(starts, True))
        index = tf.broadcast_to(tf.range(tf.shape(prefix, tf.int64)[1]),
                                tf.shape(prefix, tf.int64))
        first = tf.ragged.boolean_mask(index, starts)                  # [B, (E)] word
        last = tf.ragged.boolean_mask(index, lasts)
        pick = lambda x, at: first.with_flat_values(  # noqa: E731
            tf.gather_nd(x, tf.stack([at.value_rowids(), at.flat_values], 1)))
        byte_begin, byte_end = pick(w["byte_begin"], first), pick(w["byte_end"], last)
        text_of = tf.gather(w["texts"], first.value_rowids())
        entity_text = first.with_flat_values(tf.strings.substr(
            text_of, byte_begin.flat_values, byte_end.flat_values - byte_begin.flat_values))
        # The mean of the words' tag probabilities, from running sums along each text.
        sums = tf.pad(tf.cumsum(w["score"], axis=1), [[0, 0], [1, 0]])
        total = pick(sums, last.with_flat_values(last.flat_values + 1)) - pick(sums, first)
        words = first.with_flat_values(tf.cast(last.flat_values - first.flat_values + 1,
                                               tf.float32))
        return {"entity_text": entity_text.to_tensor(default_value=""),
                "entity_type": pick(kind, first).to_tensor(default_value=""),
                "entity_start": pick(w["start"], first).to_tensor(default_value=-1),
                "entity_end": pick(w["end"], last).to_tensor(default_value=-1),
                "entity_score": (total / words).to_tensor(default_value=0.0),
                "num_entities": tf.cast(first.row_lengths(), tf.int32)}

    spec = [tf.TensorSpec([None], tf.string, name="text")]
    root.serve = tf.function(serve_entities, input_signature=spec)
    root.tags = tf.function(serve_tags, input_signature=spec)
    signatures = {"serving_default": root.serve.get_concrete_function(),
                  "tags": root.tags.get_concrete_function()}
    return root, signatures, {"text": WARMUP_TEXTS}
