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


def text_serving_module(tokenizer, model: keras.Model, seq_length: int, pair: bool,
                        labels: list[str] | None = None):
    """`serving_default`: `text` (and `text_b` for pair models) -> outputs.

    `model` maps the three inputs to a dict with `sequence_output` and
    `pooled_output` (an encoder), plus `logits` for task models; `labels` names
    the classes of a task model. Each batch is padded to its longest text (at
    most `seq_length` tokens).

    Returns `(module, signatures, warm-up examples)`.
    """
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model
    label_names = tf.constant(labels) if labels else None

    def run(texts):
        inputs = tokenizer.preprocess(texts, seq_length, pad_to_longest=True)
        out = as_float32(model(inputs, training=False))
        result = {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"],
                  "input_mask": inputs["input_mask"]}
        if "logits" in out:
            probs = tf.nn.softmax(out["logits"], axis=-1)
            result.update(logits=out["logits"], probabilities=probs,
                          label=tf.gather(label_names, tf.argmax(probs, axis=-1)))
        return result

    text = tf.TensorSpec([None], tf.string, name="text")
    text_b = tf.TensorSpec([None], tf.string, name="text_b")
    signatures = {}
    warmup = {"text": WARMUP_TEXTS}
    if pair and labels:  # a model fine-tuned on pairs needs both texts
        root.serve = tf.function(lambda text, text_b: run([text, text_b]),
                                 input_signature=[text, text_b])
        warmup["text_b"] = list(reversed(WARMUP_TEXTS))
    else:
        root.serve = tf.function(lambda text: run(text), input_signature=[text])
        if not labels:  # a pair encoder without a head can also encode pairs
            root.encode_pair = tf.function(lambda text, text_b: run([text, text_b]),
                                           input_signature=[text, text_b])
            signatures["encode_pair"] = root.encode_pair.get_concrete_function()
    signatures["serving_default"] = root.serve.get_concrete_function()
    return root, signatures, warmup
