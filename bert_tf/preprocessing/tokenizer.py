"""BERT's WordPiece tokenizer and input packing, in-graph with tensorflow-text.

Reproduces google-research/bert `tokenization.FullTokenizer` (uncased) exactly:

1. `normalize`: drop NUL, U+FFFD and control/format characters; whitespace to
   spaces; lower-case (full Unicode mapping, as Python's `str.lower`); NFD; drop
   combining marks. tensorflow-text's own `case_fold_utf8` applies NFKC, which
   BERT does not (it would turn "x²" into "x2"), so it is not used.
2. `split_words`: split on whitespace, and around punctuation and CJK ideographs.
3. WordPiece: greedy longest-match with `##` continuations; a word longer than
   100 characters, or with no full match, becomes `[UNK]`.

Invalid UTF-8 is not an error: each bad byte sequence becomes U+FFFD, which the
cleaning step then drops, as BERT drops U+FFFD.

Packing (`pack_inputs`) builds `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` with
segment ids 0/1, trims pairs longest-first as BERT's `_truncate_seq_pair`, and
pads to a fixed length or to the batch's longest sequence.

Example:
    >>> import tensorflow as tf
    >>> tok = BertTokenizer(vocab_file)     # e.g. "saved_models/minilm/vocab.txt"
    >>> tok.tokenize(tf.constant(["Hello, unaffable world!"])).to_list()    # [B, words, pieces]
    [[[7592], [1010], [14477, 20961, 3468], [2088], [999]]]
    >>> inputs = tok.preprocess(tf.constant(["hello world"]), seq_length=8)
    >>> inputs["input_word_ids"].numpy().tolist(), inputs["input_mask"].numpy().tolist()
    ([[101, 7592, 2088, 102, 0, 0, 0, 0]], [[1, 1, 1, 1, 0, 0, 0, 0]])
    >>> pair = tok.preprocess([tf.constant(["hello"]), tf.constant(["world"])], seq_length=6)
    >>> pair["input_type_ids"].numpy().tolist()
    [[0, 0, 0, 1, 1, 0]]
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.errors import ConfigError
from bert_tf.io.text import read_text

MAX_CHARS_PER_WORD = 100
SPECIAL_TOKENS = {"padding_id": "[PAD]", "start_of_sequence_id": "[CLS]",
                  "end_of_segment_id": "[SEP]", "mask_id": "[MASK]", "unknown_id": "[UNK]"}

# BERT's _clean_text drops NUL, U+FFFD and _is_control: categories Cc and Cf
# (\t \n \r are Cc but count as whitespace, so they are mapped first).
_CONTROL = r"[\x{0}\x{FFFD}\p{Cc}\p{Cf}]"
# BERT's _is_whitespace (space, \t \n \r, Zs) plus line/paragraph separators,
# which BERT keeps in cleaning but then splits on with str.split().
_WHITESPACE = r"[\t\n\r\p{Zs}\p{Zl}\p{Zp}]"
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"
_CJK = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")


def load_vocab(vocab_file: str) -> list[str]:
    """The WordPiece vocab, one token a line; the line number is the id."""
    vocab = [line.rstrip("\r") for line in read_text(vocab_file).split("\n")]
    if vocab and vocab[-1] == "":
        vocab.pop()
    return check_vocab(vocab, vocab_file)


def check_vocab(vocab: list[str], source: str) -> list[str]:
    """`vocab` itself, once it is known to hold each token once (the line number
    is the id, and a token of two ids would map to either) and BERT's special tokens."""
    if not vocab:
        raise ConfigError(f"{source}: vocab is empty")
    if len(set(vocab)) != len(vocab):
        first = {}
        for line, token in enumerate(vocab, 1):
            if token in first:
                raise ConfigError(f"{source}: line {line} repeats token {token!r} of line "
                                  f"{first[token]}; each token needs one id")
            first[token] = line
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in vocab]
    if missing:
        raise ConfigError(f"{source}: vocab lacks the special tokens {missing}")
    return vocab


def normalize(text, lower_case: bool = True):
    """BERT's text cleaning and (uncased) normalisation of a string tensor."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)
    text = tf.strings.regex_replace(text, _WHITESPACE, " ")  # before: \t \n \r are Cc too
    text = tf.strings.regex_replace(text, _CONTROL, "")
    if lower_case:
        text = tf.strings.lower(text, encoding="utf-8")
        text = tf_text.normalize_utf8(text, "NFD")
        text = tf.strings.regex_replace(text, r"\p{Mn}", "")
    return text


def split_words(text):
    """Normalised text `[B]` -> words `[B, words]`: whitespace is dropped,
    punctuation and CJK ideographs become words of their own."""
    delim = rf"\s+|{_PUNCTUATION}|{_CJK}"
    keep = rf"{_PUNCTUATION}|{_CJK}"
    return tf_text.regex_split(text, delim, keep)


class BertTokenizer(tf.Module):
    """Text -> WordPiece ids `[B, words, pieces]`, and packing into model inputs.

    Args:
        vocab_file: path to `vocab.txt`, or the list of tokens (the index is the id).
        lower_case: uncased BERT (lower-case and strip accents).
    """

    def __init__(self, vocab_file, lower_case: bool = True, name=None):
        super().__init__(name=name)
        if isinstance(vocab_file, str):
            self.vocab = load_vocab(vocab_file)
            self.vocab_file = vocab_file
        else:  # the tokens themselves
            self.vocab = check_vocab(list(vocab_file), "vocabulary")
            self.vocab_file = None
        self.lower_case = lower_case
        ids = {token: i for i, token in enumerate(self.vocab)}
        self.special_ids = {key: ids.get(token, -1) for key, token in SPECIAL_TOKENS.items()}
        # Words are split by `split_words`; the byte limit is set above any word
        # of MAX_CHARS_PER_WORD characters, and the character limit applied here.
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=self.vocab, suffix_indicator="##", max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
            token_out_type=tf.int32, unknown_token="[UNK]", no_pretokenization=True)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def tokenize(self, text):
        """String tensor `[B]` -> int32 RaggedTensor `[B, words, wordpieces]`."""
        words = split_words(normalize(tf.convert_to_tensor(text, tf.string), self.lower_case))
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))
        return self._wordpiece.tokenize(words)

    def pack_inputs(self, segments, seq_length=128, pad_to_longest=False):
        """Packs one or two tokenized segments into `input_word_ids`, `input_mask`,
        `input_type_ids` (int32 `[B, seq_length]`).

        Each segment is a RaggedTensor `[B, words, pieces]` or `[B, pieces]`.
        Sequences longer than `seq_length` are trimmed (pairs longest-first).
        With `pad_to_longest`, the batch is padded only to its longest sequence
        (at most `seq_length`); `seq_length=None` means no limit.
        """
        segments = [s.merge_dims(-2, -1) if s.shape.rank == 3 else s for s in segments]
        if not 1 <= len(segments) <= 2:
            raise ConfigError(f"pack_inputs takes one or two segments, got {len(segments)}")
        if seq_length is not None:
            segments = trim_longest_first(segments, seq_length - len(segments) - 1)
        ids, type_ids = tf_text.combine_segments(
            segments, start_of_sequence_id=self.special_ids["start_of_sequence_id"],
            end_of_segment_id=self.special_ids["end_of_segment_id"])
        if seq_length is None or pad_to_longest:
            # At least 2 ([CLS] [SEP]): a batch of no texts gives [0, 2], not [0, -inf].
            seq_length = tf.cast(tf.reduce_max(tf.concat([ids.row_lengths(), [2]], 0)), tf.int32)
        word_ids, mask = tf_text.pad_model_inputs(ids, seq_length,
                                                  pad_value=self.special_ids["padding_id"])
        type_ids, _ = tf_text.pad_model_inputs(type_ids, seq_length)
        return {"input_word_ids": tf.cast(word_ids, tf.int32), "input_mask": tf.cast(mask, tf.int32),
                "input_type_ids": tf.cast(type_ids, tf.int32)}

    def preprocess(self, texts, seq_length=128, pad_to_longest=False):
        """One string tensor `[B]`, or a list of two (pairs) -> the three model inputs."""
        segments = [self.tokenize(t) for t in _as_segments(texts)]
        return self.pack_inputs(segments, seq_length, pad_to_longest)

    def count_trimmed(self, texts, seq_length):
        """How many rows of `texts` (as for `preprocess`) exceed `seq_length` and get trimmed."""
        segments = [self.tokenize(t).merge_dims(-2, -1) for t in _as_segments(texts)]
        total = sum(s.row_lengths() for s in segments) + len(segments) + 1
        return tf.reduce_sum(tf.cast(total > seq_length, tf.int32))

    __call__ = preprocess


def _as_segments(texts):
    return list(texts) if isinstance(texts, (list, tuple)) else [texts]


def trim_longest_first(segments, max_total: int):
    """Trims ragged `[B, pieces]` segments to at most `max_total` pieces per row,
    as BERT's `_truncate_seq_pair`: remove from the end of the longer segment
    (`b` when equal) until the pair fits."""
    if len(segments) == 1:
        return [segments[0][:, :max_total]]
    a, b = segments
    len_a, len_b = a.row_lengths(), b.row_lengths()
    m = tf.cast(max_total, len_a.dtype)
    # Closed form of the pop-one-at-a-time loop: the longer segment shrinks to
    # what the other leaves, but never below half (the extra one going to `a`).
    half_up = (m + 1) // 2
    keep_a = tf.minimum(len_a, tf.maximum(m - len_b, half_up))
    keep_b = m - keep_a
    fits = len_a + len_b <= m
    keep_a = tf.where(fits, len_a, keep_a)
    keep_b = tf.where(fits, len_b, keep_b)
    return [_keep_first(a, keep_a), _keep_first(b, keep_b)]


def _keep_first(rt, keep):
    positions = tf.ragged.range(rt.row_lengths())
    return tf.ragged.boolean_mask(rt, positions < tf.expand_dims(keep, 1))
