"""`BertSpanModel`: extractive question answering (SQuAD) on `sequence_output`.

The span head is BERT's (`run_squad.py`): a dense layer from each token's final
hidden state to two logits, start and end, stored as `cls/squad/output_weights`
`[2, H]` and `cls/squad/output_bias` `[2]`. The question and padding are masked
out (`SpanLogits`); [CLS] stays, the target of windows without the answer.

Its serving export takes `question` and `context` strings and returns the logits
with each token's character span in the context (`serving_module`);
`bert_tf.inference.squad.answer` turns them into answer text.

Example:
    >>> from bert_tf.config import BertConfig
    >>> from bert_tf.models.encoder import BertEncoder
    >>> model = BertSpanModel(BertEncoder.from_bert_config(BertConfig.preset("tiny")))
    >>> model.output_shape
    (None, 2, None)
"""
from __future__ import annotations

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.errors import ConfigError
from bert_tf.layers import SpanLogits
from bert_tf.models.base import CheckpointNames, LeavesOutUnused, WrapsEncoder, read_task
from bert_tf.models.encoder import BertEncoder, encoder_inputs
from bert_tf.models.serving import batch_of_texts, code_point_offsets
from bert_tf.preprocessing.preprocessor import BertPreprocessor

HEAD_NAMES = ("cls/squad/output_weights", "cls/squad/output_bias")


@keras.saving.register_keras_serializable(package="bert_tf")
class BertSpanModel(WrapsEncoder, LeavesOutUnused, CheckpointNames, keras.Model):
    """The three inputs -> `span_logits` `[B, 2, L]` (row 0 start, row 1 end; float32).

    Args:
        encoder: a `BertEncoder` (not changed; its pooler, unused by spans, is left
            out of the trainable variables).
        preprocessor: an optional `BertPreprocessor` (its vocab and `seq_length`
            serve the export).
        max_query_length: question tokens kept by the serving export.
        max_answer_length: longest answer, in tokens, that post-processing picks.
    """

    TRANSPOSED = (HEAD_NAMES[0],)

    def __init__(self, encoder: BertEncoder, preprocessor: BertPreprocessor | None = None,
                 max_query_length: int = 64, max_answer_length: int = 30,
                 name: str = "bert_span", **kwargs):
        inputs = encoder_inputs()
        sequence = encoder(inputs)["sequence_output"]
        logits = SpanLogits(encoder.bert_config.initializer_range, name="span_logits")(
            sequence, inputs["input_mask"], inputs["input_type_ids"])
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        self.encoder = encoder
        self.preprocessor = preprocessor
        self.max_query_length = max_query_length
        self.max_answer_length = max_answer_length

    def unused_variables(self) -> list:
        return self.encoder.get_layer("pooler").weights  # spans use sequence_output only

    def checkpoint_variables(self) -> dict:
        names = self.encoder.checkpoint_variables()
        head = self.get_layer("span_logits")
        names.update(zip(HEAD_NAMES, (head.kernel, head.bias)))
        return names

    def model_dir_task(self) -> dict:
        task = {"type": "squad", "max_query_length": self.max_query_length,
                "max_answer_length": self.max_answer_length}
        if self.preprocessor is not None and self.preprocessor.seq_length:
            task["max_seq_length"] = self.preprocessor.seq_length
        return task

    @classmethod
    def from_model_dir(cls, model_dir: str, skip_padding: bool = False,
                       seq_length: int | None = None) -> "BertSpanModel":
        """The span model of a model dir written by `bert-tf squad`."""
        task = read_task(model_dir, "squad")
        preprocessor = BertPreprocessor.from_model_dir(
            model_dir, seq_length or task.get("max_seq_length", 384))
        model = cls(BertEncoder.from_model_dir(model_dir, skip_padding=skip_padding),
                    preprocessor, task.get("max_query_length", 64),
                    task.get("max_answer_length", 30))
        model.load_model_dir_weights(model_dir)
        return model

    def serving_module(self, tokenizer, seq_length: int):
        """`question`, `context` -> logits and token offsets (`squad_serving_module`), on a
        copy whose dense layers skip padding."""
        root, signatures = squad_serving_module(tokenizer, self.with_skip_padding(), seq_length,
                                                self.max_query_length, self.max_answer_length)
        return root, signatures, WARMUP

    def get_config(self):
        return self.wrapped_config(max_query_length=self.max_query_length,
                                   max_answer_length=self.max_answer_length)


WHITESPACE = r"[ \t\r\n\x{202F}]+"  # run_squad's is_whitespace


def squad_serving_module(tokenizer, model: keras.Model, seq_length: int,
                               max_query_length: int, max_answer_length: int = 30):
    """`serving_default`: `question`, `context` (strings `[B]`) -> `start_logits`,
    `end_logits` `[B, L]`, and per token: `tokens` (WordPiece strings),
    `token_start` / `token_end` (the character span in `context` of the word the
    token belongs to; -1 outside the context), plus `context_truncated` `[B]` when
    the context did not fit in one window of `seq_length` tokens.
    `answer_from_outputs` turns one row into answer text."""
    if seq_length < max_query_length + 4:
        raise ConfigError(f"seq_length {seq_length} leaves no room for the context after a "
                          f"question of up to {max_query_length} tokens")
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model
    # What answer_from_outputs needs to cut answers as the model was trained to.
    root.do_lower_case = tf.Variable(tokenizer.lower_case, trainable=False)
    root.max_answer_length = tf.Variable(max_answer_length, trainable=False)
    vocab = tf.constant(tokenizer.vocab)
    cls = tokenizer.special_ids["start_of_sequence_id"]
    sep = tokenizer.special_ids["end_of_segment_id"]

    def serve(question, context):
        question = batch_of_texts(question, "question")
        context = batch_of_texts(context, "context")
        words, begin, end = tf_text.regex_split_with_offsets(context, WHITESPACE)
        # Byte offsets -> character offsets (clients index Python strings).
        char_begin = code_point_offsets(context, begin).flat_values
        char_end = code_point_offsets(context, end).flat_values
        pieces = tokenizer.tokenize(words.flat_values).merge_dims(1, 2)   # [words, pieces]
        per_example = tf.math.unsorted_segment_sum(
            pieces.row_lengths(), words.value_rowids(), tf.shape(context, tf.int64)[0])
        doc = tf.RaggedTensor.from_row_lengths(pieces.flat_values, per_example)
        word_of_piece = tf.RaggedTensor.from_row_lengths(pieces.value_rowids(), per_example)
        query = tokenizer.tokenize(question).merge_dims(1, 2)[:, :max_query_length]
        room = seq_length - 3 - query.row_lengths()
        keep = tf.ragged.range(doc.row_lengths()) < tf.expand_dims(room, 1)
        doc = tf.ragged.boolean_mask(doc, keep)
        word_of_piece = tf.ragged.boolean_mask(word_of_piece, keep)
        ids, type_ids = tf_text.combine_segments([query, doc], cls, sep)
        width = tf.cast(tf.reduce_max(tf.concat([ids.row_lengths(), [2]], 0)), tf.int32)
        word_ids, mask = tf_text.pad_model_inputs(ids, width)
        type_ids, _ = tf_text.pad_model_inputs(type_ids, width)
        inputs = {"input_word_ids": tf.cast(word_ids, tf.int32),
                  "input_mask": tf.cast(mask, tf.int32),
                  "input_type_ids": tf.cast(type_ids, tf.int32)}
        logits = model(inputs, training=False)

        def place(values):  # per context token -> per position (width of ids), -1 elsewhere
            before = tf.ragged.range(query.row_lengths() + 2) * 0 - 1
            after = tf.ragged.range(tf.ones_like(query.row_lengths())) * 0 - 1
            row = tf.concat([before, tf.cast(values, tf.int64), after], axis=1)
            return tf.cast(row.to_tensor(default_value=-1), tf.int32)

        return {"start_logits": logits[:, 0], "end_logits": logits[:, 1],
                "tokens": tf.gather(vocab, inputs["input_word_ids"]),
                "token_start": place(tf.gather(char_begin, word_of_piece)),
                "token_end": place(tf.gather(char_end, word_of_piece)),
                "input_mask": inputs["input_mask"],
                "context_truncated": per_example > tf.maximum(room, 0)}

    root.serve = tf.function(serve, input_signature=[
        tf.TensorSpec([None], tf.string, name="question"),
        tf.TensorSpec([None], tf.string, name="context")])
    return root, {"serving_default": root.serve.get_concrete_function()}


WARMUP = {"question": ["Who wrote the play?", "When did it open?"],
          "context": ["The play was written by Anton Chekhov in 1895.",
                      "The theatre opened in 1901, six years after the play was written."]}
