"""`BertPreprocessor`: text in, BERT's three int32 inputs out, as a Keras layer.

It wraps the in-graph `BertTokenizer` (exactly google-research/bert's ids) and its
packing, so raw strings can enter a Keras functional model, a `tf.data` pipeline,
a `.keras` file and the SavedModel exports alike (TensorFlow backend).

Example:
    >>> import keras, tensorflow as tf
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"]
    >>> pre = BertPreprocessor(vocab, seq_length=6)
    >>> pre(tf.constant(["Hello world!"]))["input_word_ids"].numpy().tolist()
    [[2, 4, 5, 1, 3, 0]]
    >>> pre((tf.constant(["hello"]), tf.constant(["world"])))["input_type_ids"].numpy().tolist()
    [[0, 0, 0, 1, 1, 0]]
    >>> text = keras.Input(shape=(), dtype="string")
    >>> pre(text)["input_mask"].shape
    (None, 6)
"""
from __future__ import annotations

import keras
import tensorflow as tf

from bert_tf.config import INPUT_NAMES
from bert_tf.errors import ConfigError
from bert_tf.io.checkpoint import read_meta, vocab_path
from bert_tf.preprocessing.tokenizer import BertTokenizer
from bert_tf.presets import resolve_model_dir


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPreprocessor(keras.layers.Layer):
    """Strings `[B]`, or a pair `(a, b)` / `[a, b]` of them, -> dict of int32
    `input_word_ids`, `input_mask`, `input_type_ids` `[B, seq_length]`.

    Args:
        vocabulary: the WordPiece vocab: a `vocab.txt` path or the list of tokens.
        lower_case: uncased BERT (lower-case and strip accents).
        seq_length: the packed length; longer inputs are trimmed (pairs longest
            first, as BERT). `None`: no limit, each batch padded to its longest.
        pad_to_longest: pad each batch only to its longest sequence (at most
            `seq_length`) instead of to `seq_length`.

    The vocabulary is part of `get_config`, so a `.keras` file or `from_config`
    rebuilds the layer with no other file.
    """

    def __init__(self, vocabulary, lower_case: bool = True, seq_length: int | None = 128,
                 pad_to_longest: bool = False, **kwargs):
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        if seq_length is not None and seq_length < 3:
            raise ConfigError(f"seq_length={seq_length}: BERT's inputs need at least 3 tokens")
        self.tokenizer = BertTokenizer(vocabulary, lower_case)
        self.lower_case = lower_case
        self.seq_length = seq_length
        self.pad_to_longest = pad_to_longest
        self.built = True

    @classmethod
    def from_model_dir(cls, model_dir: str, seq_length: int | None = 128,
                       pad_to_longest: bool = False) -> "BertPreprocessor":
        """The preprocessor of a model dir: its `vocab.txt` and casing."""
        return cls(vocab_path(model_dir), read_meta(model_dir)["do_lower_case"], seq_length,
                   pad_to_longest)

    @classmethod
    def from_preset(cls, preset: str, seq_length: int | None = 128,
                    pad_to_longest: bool = False) -> "BertPreprocessor":
        """The preprocessor of a preset's weights (`bert_tf.presets`: a name such as
        "all-MiniLM-L6-v2", or a model dir)."""
        return cls.from_model_dir(resolve_model_dir(preset), seq_length, pad_to_longest)

    @property
    def vocabulary(self) -> list[str]:
        return self.tokenizer.vocab

    def call(self, inputs):
        segments = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not 1 <= len(segments) <= 2:
            raise ConfigError(f"BertPreprocessor takes one or two string tensors, got "
                              f"{len(segments)}")
        segments = [tf.convert_to_tensor(s, tf.string) for s in segments]
        return self.tokenizer.preprocess(segments, self.seq_length, self.pad_to_longest)

    def compute_output_spec(self, inputs):
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        shape = (first.shape[0], None if self.pad_to_longest else self.seq_length)
        return {name: keras.KerasTensor(shape, dtype="int32", name=name) for name in INPUT_NAMES}

    def count_trimmed(self, inputs) -> int:
        """How many rows of `inputs` are longer than `seq_length` and get trimmed."""
        if self.seq_length is None:
            return 0
        segments = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return int(self.tokenizer.count_trimmed(segments, self.seq_length))

    def get_config(self):
        return {**super().get_config(), "vocabulary": list(self.tokenizer.vocab),
                "lower_case": self.lower_case, "seq_length": self.seq_length,
                "pad_to_longest": self.pad_to_longest}
