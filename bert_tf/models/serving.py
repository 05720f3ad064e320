"""Text in, model outputs out: the `tf.Module` behind a serving SavedModel.

Each model class builds its own serving module with these helpers
(`serving_module(tokenizer, seq_length)`); `bert_tf.export` saves it.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from bert_tf.choices import HEAD_OUTPUTS

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


# Signature keys whose method name is not TF Serving's Predict: `save_to_temp` writes
# these into saved_model.pb (tf.saved_model.save writes every signature as Predict).
METHOD_NAMES = {"classify": tf.saved_model.CLASSIFY_METHOD_NAME,
                "regress": tf.saved_model.REGRESS_METHOD_NAME}

ENCODER_OUTPUTS = ("sequence_output", "pooled_output", "input_mask")


def texts_from_examples(serialized: tf.Tensor, pair: bool) -> list[tf.Tensor]:
    """The `text` (and `text_b`) bytes features of serialised `tf.Example`s `[N]`, as
    TF Serving's Classify and Regress APIs and TFX send them. An example without the
    feature, or with it of another type, is an `InvalidArgumentError` naming it
    ("Feature: text (data type: string) is required but could not be found.")."""
    names = ["text", "text_b"] if pair else ["text"]
    features = tf.io.parse_example(batch_of_texts(serialized, "inputs"),
                                   {name: tf.io.FixedLenFeature([], tf.string) for name in names})
    return [features[name] for name in names]


def text_serving_module(tokenizer, model: keras.Model, seq_length: int, pair: bool,
                        labels: list[str] | None = None, problem: str = "single_label",
                        threshold: float = 0.5):
    """The signatures of a text model's serving export.

    `model` maps the three inputs to a dict with `sequence_output` and
    `pooled_output` (an encoder), plus `logits` for task models; `labels` names
    the classes of a task model, whose outputs `head_outputs` makes by `problem`.

    - `serving_default`: `text` [, `text_b` for a model fine-tuned on pairs] -> a task
      model's answer alone (`head_outputs`: a few hundred bytes a text on the wire), or
      an encoder's `sequence_output`, `pooled_output`, `input_mask`;
    - `embed`: the same inputs -> `pooled_output` (the vector a task model's head sees:
      the pooler's, or its mean / max pooling);
    - `encode`: the same inputs -> `sequence_output`, `input_mask`;
    - `encode_pair` (an encoder): `text`, `text_b` -> the three encoder outputs;
    - `classify` (single- and multi-label classifiers): `inputs`, serialised
      `tf.Example`s with a `text` (and `text_b`) bytes feature -> `classes` `[N, C]`
      (every label's name) and `scores` `[N, C]` (its probability), for TF Serving's
      Classify API; `regress` (one-output regression): -> `outputs` `[N]`, for its
      Regress API (method names `METHOD_NAMES`).

    Each batch is padded to its longest text (at most `seq_length` tokens); every
    signature calls one traced function. Returns `(module, signatures, warm-up examples)`.
    """
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model
    text = tf.TensorSpec([None], tf.string, name="text")
    text_b = tf.TensorSpec([None], tf.string, name="text_b")
    task_pair = bool(pair and labels)   # a model fine-tuned on pairs needs both texts
    specs = [text, text_b] if task_pair else [text]

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

    root.run = tf.function(run, input_signature=specs)

    def signature(keys):
        """A function of the model's text inputs returning `keys` of `run`'s outputs."""
        def picked(*texts):
            out = root.run(*texts)
            return {key: out[key] for key in keys}
        return tf.function(picked, input_signature=specs)

    root.serve = signature(HEAD_OUTPUTS[problem] if labels else ENCODER_OUTPUTS)
    root.embed = signature(["pooled_output"])
    root.encode = signature(["sequence_output", "input_mask"])
    signatures = {"serving_default": root.serve.get_concrete_function(),
                  "embed": root.embed.get_concrete_function(),
                  "encode": root.encode.get_concrete_function()}
    if not labels:  # an encoder can also encode pairs
        root.encode_pair = tf.function(run, input_signature=[text, text_b])
        signatures["encode_pair"] = root.encode_pair.get_concrete_function()
    inputs = tf.TensorSpec([None], tf.string, name=tf.saved_model.CLASSIFY_INPUTS)
    if labels and problem in ("single_label", "multi_label"):
        def classify(serialized):
            out = root.run(*texts_from_examples(serialized, task_pair))
            scores = out["probabilities"]
            classes = tf.tile(tf.constant(labels)[None], [tf.shape(scores)[0], 1])
            return {tf.saved_model.CLASSIFY_OUTPUT_CLASSES: classes,
                    tf.saved_model.CLASSIFY_OUTPUT_SCORES: scores}
        root.classify = tf.function(classify, input_signature=[inputs])
        signatures["classify"] = root.classify.get_concrete_function()
    if labels and problem == "regression" and len(labels) == 1:
        def regress(serialized):
            out = root.run(*texts_from_examples(serialized, task_pair))
            return {tf.saved_model.REGRESS_OUTPUTS: out["predictions"][:, 0]}
        root.regress = tf.function(regress, input_signature=[inputs])
        signatures["regress"] = root.regress.get_concrete_function()
    warmup = {"text": WARMUP_TEXTS}
    if task_pair:
        warmup["text_b"] = list(reversed(WARMUP_TEXTS))
    return root, signatures, warmup
