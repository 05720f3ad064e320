"""Text in, model outputs out: the `tf.Module` behind a serving SavedModel.

Each model class builds its own serving module with these helpers
(`serving_module(tokenizer, seq_length)`); `bert_tf.export` saves it.
"""
from __future__ import annotations

import keras
import tensorflow as tf

# Sent by TF Serving's warm-up (assets.extra/tf_serving_warmup_requests).
WARMUP_TEXTS = ["the movie was wonderful", "a dull, lifeless script", "It's fine."]


def as_float32(outputs):
    """Every floating tensor of `outputs` (a nest) as float32: a model computing in
    bfloat16 still answers in float32, as clients expect."""
    return tf.nest.map_structure(
        lambda t: tf.cast(t, tf.float32) if t.dtype.is_floating else t, outputs)


def head_outputs(logits, problem: str, labels, threshold: float = 0.5) -> dict:
    """A classifier's serving outputs from its `logits` `[B, C]`, by `problem`:
    - `single_label`: `logits`, `probabilities` (softmax) and `label` (the most
      probable of `labels`);
    - `multi_label`: `logits`, `probabilities` (each label's sigmoid) and `labels`
      `[B, C]`: the names of the labels over `threshold`, in `labels`' order, then
      empty strings;
    - `regression`: `predictions` (the outputs themselves).

    >>> out = head_outputs(tf.constant([[2.0, -1.0, 0.5]]), "multi_label", ["a", "b", "c"])
    >>> [x.decode() for x in out["labels"].numpy()[0]]
    ['a', 'c', '']
    """
    if problem == "regression":
        return {"predictions": logits}
    names = tf.constant(labels)
    if problem == "multi_label":
        probs = tf.sigmoid(logits)
        over = probs > threshold
        # Stable sort of the predicted labels' positions to the front.
        order = tf.argsort(tf.cast(tf.logical_not(over), tf.int32), axis=-1, stable=True)
        picked = tf.where(tf.gather(over, order, batch_dims=1), tf.gather(names, order), "")
        return {"logits": logits, "probabilities": probs, "labels": picked}
    probs = tf.nn.softmax(logits, axis=-1)
    return {"logits": logits, "probabilities": probs,
            "label": tf.gather(names, tf.argmax(probs, axis=-1))}


def batch_of_texts(texts: tf.Tensor, name: str) -> tf.Tensor:
    """`texts`, checked when the signature runs to be a batch `[N]` of strings. A
    SavedModel does not enforce its signature's `[None]` input shape (before 2026-12-07,
    commit 1691735, a `[2, 2]` `text` gave 4 rows); another rank is an
    `InvalidArgumentError` naming the input: "Shape of tensor text [2,2] is not
    compatible with expected shape [?]"."""
    return tf.ensure_shape(texts, [None], name=name)


def code_point_offsets(texts: tf.Tensor, byte_offsets: tf.RaggedTensor) -> tf.RaggedTensor:
    """Byte offsets into the UTF-8 `texts` `[B]` (`[B, (n)]`, int64, each at a
    character's first byte or at the text's end) -> the same offsets in Unicode code
    points (int32), as clients index Python strings: `text[start:end]`.

    >>> texts = tf.constant(["Zoë Ōsaka", "東京 x"])
    >>> code_point_offsets(texts, tf.ragged.constant([[0, 5, 11], [0, 6, 8]], tf.int64)).to_list()
    [[0, 4, 9], [0, 2, 4]]
    """
    _, char_bytes = tf.strings.unicode_decode_with_offsets(texts, "UTF-8")
    # An offset's code point is the number of characters that start before it.
    points = tf.searchsorted(char_bytes.to_tensor(default_value=tf.int64.max),
                             byte_offsets.to_tensor(), out_type=tf.int32)
    return tf.RaggedTensor.from_tensor(points, lengths=byte_offsets.row_lengths())


def text_serving_module(tokenizer, model: keras.Model, seq_length: int, pair: bool,
                        labels: list[str] | None = None, problem: str = "single_label",
                        threshold: float = 0.5):
    """`serving_default`: `text` (and `text_b` for pair models) -> outputs.

    `model` maps the three inputs to a dict with `sequence_output` and
    `pooled_output` (an encoder), plus `logits` for task models; `labels` names
    the classes of a task model, whose outputs `head_outputs` makes by `problem`.
    Each batch is padded to its longest text (at most `seq_length` tokens).

    Returns `(module, signatures, warm-up examples)`.
    """
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model

    def run(text, text_b=None):
        texts = batch_of_texts(text, "text")
        if text_b is not None:
            texts = [texts, batch_of_texts(text_b, "text_b")]
        inputs = tokenizer.preprocess(texts, seq_length, pad_to_longest=True)
        out = as_float32(model(inputs, training=False))
        result = {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"],
                  "input_mask": inputs["input_mask"]}
        if "logits" in out:
            result.update(head_outputs(out["logits"], problem, labels, threshold))
        return result

    text = tf.TensorSpec([None], tf.string, name="text")
    text_b = tf.TensorSpec([None], tf.string, name="text_b")
    signatures = {}
    warmup = {"text": WARMUP_TEXTS}
    if pair and labels:  # a model fine-tuned on pairs needs both texts
        root.serve = tf.function(run, input_signature=[text, text_b])
        warmup["text_b"] = list(reversed(WARMUP_TEXTS))
    else:
        root.serve = tf.function(lambda text: run(text), input_signature=[text])
        if not labels:  # a pair encoder without a head can also encode pairs
            root.encode_pair = tf.function(run, input_signature=[text, text_b])
            signatures["encode_pair"] = root.encode_pair.get_concrete_function()
    signatures["serving_default"] = root.serve.get_concrete_function()
    return root, signatures, warmup
