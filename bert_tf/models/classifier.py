"""Sequence classification on top of the encoder: pooling -> dropout -> dense.

The head's weights use the names of google-research/bert's `run_classifier.py`:
`output_weights` `[num_labels, H]` and `output_bias` `[num_labels]`, and a learned
attention pooling adds `pooling/attention/query`.

Example:
    >>> from bert_tf.config import BertConfig                 # doctest: +SKIP
    >>> from bert_tf.models.encoder import build_encoder
    >>> train_model, full_model = build_classifier(build_encoder(BertConfig.preset("tiny")), 2)
    >>> train_model.output_shape, sorted(full_model.output_shape)
    ((None, 2), ['logits', 'pooled_output', 'sequence_output'])
"""
from __future__ import annotations

import os

import keras
import numpy as np

from bert_tf.io.checkpoint import CKPT_NAME, read_checkpoint, read_meta
from bert_tf.models.encoder import encoder_checkpoint_variables, encoder_inputs
from bert_tf.layers.pooling import AttentionPooling, pool


def build_classifier(encoder: keras.Model, num_labels: int, pooling: str = "pooled_output",
                     dropout: float = 0.1, initializer_range: float = 0.02):
    """Returns `(train_model, full_model)`, sharing layers: `train_model` maps the
    three inputs to `logits` `[B, num_labels]` (for `fit`); `full_model` to a dict
    of `logits`, `pooled_output` (the vector the head sees) and `sequence_output`.
    With any `pooling` but `pooled_output` the head never sees BERT's pooler, so
    `encoder`'s pooler layer is set non-trainable (on the encoder passed in)."""
    if pooling != "pooled_output":  # the head never sees the pooler: nothing to train there
        encoder.get_layer("pooler").trainable = False
    inputs = encoder_inputs()
    outputs = encoder(inputs)
    vector = pool(pooling, outputs, inputs["input_mask"], name="pooling")
    x = keras.layers.Dropout(dropout, name="classifier_dropout")(vector)
    logits = keras.layers.Dense(
        num_labels, kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
        name="classifier", dtype="float32")(x)
    train_model = keras.Model(inputs, logits, name="bert_classifier")
    full_model = keras.Model(inputs, {"logits": logits, "pooled_output": vector,
                                      "sequence_output": outputs["sequence_output"]},
                             name="bert_classifier_outputs")
    return train_model, full_model


def classifier_checkpoint_variables(train_model: keras.Model) -> dict:
    """Google names -> Keras variables, encoder and head. The dense kernel is stored
    transposed (`output_weights` `[num_labels, H]`), as in run_classifier.py."""
    encoder = next(layer for layer in train_model.layers if "encoder" in layer.name)
    names = encoder_checkpoint_variables(encoder)
    dense = train_model.get_layer("classifier")
    names["output_weights"] = dense.kernel
    names["output_bias"] = dense.bias
    for layer in train_model.layers:
        if isinstance(layer, AttentionPooling):
            names.update(layer.checkpoint_variables())
    return names


def classifier_tensors(train_model: keras.Model) -> dict[str, np.ndarray]:
    out = {}
    for name, var in classifier_checkpoint_variables(train_model).items():
        value = np.asarray(keras.ops.convert_to_numpy(var))
        out[name] = value.T if name == "output_weights" else value
    return out


def load_classifier(model_dir: str, encoder: keras.Model):
    """`(train_model, full_model)` of a fine-tuned model dir, with its head weights."""
    task = read_meta(model_dir).get("task")
    if not task or task.get("type") != "classification":
        raise ValueError(f"{model_dir} has no classification head (bert_tf.json has no task)")
    train_model, full_model = build_classifier(encoder, len(task["labels"]), task["pooling"])
    tensors = read_checkpoint(os.path.join(model_dir, CKPT_NAME))
    for name, var in classifier_checkpoint_variables(train_model).items():
        if name not in tensors:
            raise ValueError(f"{model_dir}: missing tensor {name}")
        value = tensors[name].T if name == "output_weights" else tensors[name]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"{model_dir}: tensor {name} has shape {value.shape}, "
                             f"the model needs {tuple(var.shape)}")
        var.assign(value)
    return train_model, full_model
