"""The masked-LM head: Google's `cls/predictions` weights, tied word embeddings, and
the encoder export's `.mlm` sub-object."""
import os
from math import erf, sqrt

import numpy as np
import tensorflow as tf

from bert_tf.io.checkpoint import read_checkpoint, write_model_dir
from bert_tf.layers.heads import pretraining_head_shapes
from tests.conftest import report


def _with_heads(tiny_model_dir, out):
    rng = np.random.default_rng(7)
    tensors = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    for name, shape in pretraining_head_shapes(
            __import__("bert_tf").load_config(tiny_model_dir)).items():
        tensors[name] = (rng.normal(size=shape) * 0.1).astype("float32")
    from bert_tf.config import load_config
    return write_model_dir(out, load_config(tiny_model_dir),
                           os.path.join(tiny_model_dir, "vocab.txt"), tensors)


def reference_mlm_logits(tensors, sequence_output, positions, eps=1e-12):
    """Google's get_masked_lm_output, in numpy (exact GELU, as the tiny config says)."""
    x = np.take_along_axis(sequence_output, positions[..., None], axis=1)
    x = x @ tensors["cls/predictions/transform/dense/kernel"] + \
        tensors["cls/predictions/transform/dense/bias"]
    x = x * 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + eps) * tensors["cls/predictions/transform/LayerNorm/gamma"] + \
        tensors["cls/predictions/transform/LayerNorm/beta"]
    return x @ tensors["bert/embeddings/word_embeddings"].T + tensors["cls/predictions/output_bias"]


def test_mlm_logits_and_export(tiny_model_dir, tmp_path, tokenizer):
    import bert_tf
    model_dir = _with_heads(tiny_model_dir, str(tmp_path / "with_heads"))
    inputs = tokenizer.preprocess(tf.constant(["the cat sat on the [MASK] .", "hello there"]), 12)
    positions = np.array([[1, 6], [2, 3]], np.int32)
    pretrainer = bert_tf.load_model(model_dir)
    assert isinstance(pretrainer, bert_tf.BertPretrainer)
    encoder = pretrainer.encoder
    out = pretrainer.mlm_model()({**inputs, "masked_lm_positions": tf.constant(positions)})
    tensors = read_checkpoint(os.path.join(model_dir, "bert_model.ckpt"))
    want = reference_mlm_logits(tensors, out["sequence_output"].numpy(), positions)
    diff = np.abs(out["mlm_logits"].numpy() - want).max()
    report(f"MLM logits vs numpy reference of Google's head (BERT-tiny, random head): "
           f"max |diff| {diff:.1e}")
    assert out["mlm_logits"].shape == (2, 2, 30522) and diff < 1e-4

    targets = bert_tf.export_model(pretrainer, str(tmp_path / "export"), seq_length=12,
                                   preprocessor=bert_tf.load_preprocessor(model_dir))
    loaded = tf.saved_model.load(targets["encoder"])
    got = loaded.mlm({**inputs, "masked_lm_positions": tf.constant(positions)}, training=False)
    np.testing.assert_allclose(got["mlm_logits"], out["mlm_logits"], atol=1e-5)
    assert len(loaded.variables) == len(encoder.variables)  # head weights not in the root's
    assert len(loaded.mlm.trainable_variables) == len(encoder.trainable_variables) + 5
    assert isinstance(bert_tf.load_model(tiny_model_dir), bert_tf.BertEncoder)  # no heads
