"""The encoder computes what HF transformers' BertModel computes for the same weights.

Reference arrays: tests/reference/minilm_outputs.npz, made by
tests/reference/make_references.py with PyTorch + transformers in a throwaway env.
"""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.config import BertConfig
from bert_tf.models.encoder import build_encoder
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock
from tests.conftest import REFERENCE_DIR, report


# Parity bounds, from measurement. On x86 CPUs (oneDNN, float32) bert-tf's MiniLM outputs
# differ from BertModel's by at most 3.8e-6 in sequence_output (the 512-token text;
# 2.5e-6 to 3.7e-6 in the other cases) and 2.4e-7 in pooled_output. The bounds leave a
# margin of 2.6x and 4x for other CPUs' kernels and summation orders. The earlier 1e-4
# (26x the measurement) let through a LayerNorm epsilon of 1e-6 in the attention blocks,
# which moves sequence_output to 5e-6 .. 1.2e-5 (tests/test_promises.py checks every
# LayerNorm's epsilon itself). Measured on CPU only: TF32 matmuls (TensorFlow's default
# on NVIDIA GPUs from Ampere on, 10 mantissa bits) would need a wider bound.
SEQUENCE_BOUND = 1e-5
POOLED_BOUND = 1e-6


@pytest.fixture(scope="module")
def reference():
    ref = np.load(os.path.join(REFERENCE_DIR, "minilm_outputs.npz"))
    with open(os.path.join(REFERENCE_DIR, "minilm_texts.json"), encoding="utf-8") as f:
        return ref, json.load(f)


@pytest.mark.parametrize("skip_padding", [False, True])
@pytest.mark.parametrize("kind", ["single", "pair"])
def test_minilm_matches_transformers(minilm_dir, reference, kind, skip_padding):
    import bert_tf
    ref, texts = reference
    encoder = bert_tf.load_encoder(minilm_dir, skip_padding=skip_padding)
    preprocess = bert_tf.load_preprocessor(minilm_dir, seq_length=None)
    if kind == "single":
        inputs = preprocess(tf.constant(texts["single"]))
    else:
        inputs = preprocess([tf.constant([a for a, _ in texts["pair"]]),
                             tf.constant([b for _, b in texts["pair"]])])
    for name, value in inputs.items():  # same ids as HF's tokenizer
        np.testing.assert_array_equal(value.numpy(), ref[f"{kind}_{name}"], err_msg=name)
    out = encoder(inputs)
    real = ref[f"{kind}_input_mask"].astype(bool)
    seq_diff = np.abs(out["sequence_output"].numpy()[real] - ref[f"{kind}_sequence_output"][real])
    pooled_diff = np.abs(out["pooled_output"].numpy() - ref[f"{kind}_pooled_output"])
    report(f"encoder parity vs transformers BertModel, MiniLM, {kind}, skip_padding="
           f"{skip_padding}: {real.shape[0]} texts, "
           f"max |diff| sequence_output {seq_diff.max():.2e}, pooled_output {pooled_diff.max():.2e}")
    assert seq_diff.max() < SEQUENCE_BOUND and pooled_diff.max() < POOLED_BOUND, \
        (seq_diff.max(), pooled_diff.max())
    np.testing.assert_array_equal(out["encoder_outputs"][-1], out["sequence_output"])
    if skip_padding:
        assert not out["sequence_output"].numpy()[~real].any()


def _assert_trimmed_parity(minilm_dir, ref, kind, inputs, what):
    """bert-tf's ids are HF's exactly (row by row), and the encoder's outputs on them
    are BertModel's within the tolerance of the untrimmed parity test."""
    import bert_tf
    for name, value in inputs.items():
        got, want = value.numpy(), ref[f"{kind}_{name}"]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        bad = [row for row in range(want.shape[0]) if not np.array_equal(got[row], want[row])]
        assert not bad, (f"{kind} {name} differ from HF's in rows {bad}: "
                         + "; ".join(f"row {r}: bert-tf {got[r].tolist()} HF {want[r].tolist()}"
                                     for r in bad))
    out = bert_tf.load_encoder(minilm_dir)(inputs)
    real = ref[f"{kind}_input_mask"].astype(bool)
    seq_diff = np.abs(out["sequence_output"].numpy()[real] - ref[f"{kind}_sequence_output"][real])
    pooled_diff = np.abs(out["pooled_output"].numpy() - ref[f"{kind}_pooled_output"])
    report(f"encoder parity vs transformers BertModel, MiniLM, {what}: max |diff| "
           f"sequence_output {seq_diff.max():.2e}, pooled_output {pooled_diff.max():.2e}")
    assert seq_diff.max() < SEQUENCE_BOUND and pooled_diff.max() < POOLED_BOUND, \
        (seq_diff.max(), pooled_diff.max())


def test_minilm_512_tokens_matches_transformers(minilm_dir, reference):
    """A text of far more than 510 wordpieces: trimmed to exactly 512 ids ([CLS], the
    first 510 pieces, [SEP]) as HF's truncation=True, max_length=512, and the encoder
    at full length (every position embedding used) matches BertModel."""
    import bert_tf
    ref, texts = reference
    assert ref["long_input_word_ids"].shape == (1, 512) and ref["long_input_mask"].all()
    preprocess = bert_tf.load_preprocessor(minilm_dir, seq_length=512)
    assert preprocess.count_trimmed(tf.constant([texts["long"]])) == 1
    inputs = preprocess(tf.constant([texts["long"]]))
    _assert_trimmed_parity(minilm_dir, ref, "long", inputs, "1 text trimmed to 512 tokens")


def test_minilm_trimmed_pairs_match_transformers(minilm_dir, reference):
    """Pairs longer than seq_length are trimmed by reference BERT's rule
    (google-research/bert `_truncate_seq_pair`: pop from the longer segment, from b on
    a tie), as transformers' Python `BertTokenizerLegacy` does with
    truncation="longest_first", max_length=32: a long a with a short b, a short a with
    a long b, and both long with an odd number of pieces to share (the tie rule)."""
    import bert_tf
    ref, texts = reference
    seq_length = texts["trimmed_pair_max_length"]
    pairs = texts["trimmed_pair"]
    assert ref["trimmed_pair_input_word_ids"].shape == (len(pairs), seq_length)
    preprocess = bert_tf.load_preprocessor(minilm_dir, seq_length=seq_length)
    segments = [tf.constant([a for a, _ in pairs]), tf.constant([b for _, b in pairs])]
    assert preprocess.count_trimmed(segments) == len(pairs)
    inputs = preprocess(segments)
    _assert_trimmed_parity(minilm_dir, ref, "trimmed_pair", inputs,
                           f"{len(pairs)} pairs trimmed longest-first to {seq_length} tokens")


def tiny_inputs(batch=2, seq=7, vocab=100, pad=2):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, vocab, (batch, seq)).astype("int32")
    mask = np.ones_like(ids)
    mask[:, seq - pad:] = 0
    return {"input_word_ids": ids * mask, "input_mask": mask, "input_type_ids": 0 * ids}


def test_padding_does_not_change_real_token_outputs():
    encoder = build_encoder(BertConfig.preset("tiny", vocab_size=100))
    inputs = tiny_inputs(pad=3)
    trimmed = {k: v[:, :4] for k, v in inputs.items()}
    full, short = encoder(inputs), encoder(trimmed)
    np.testing.assert_allclose(full["sequence_output"][:, :4], short["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(full["pooled_output"], short["pooled_output"], atol=1e-5)


def test_skip_padding_gives_the_same_outputs_and_gradients():
    config = BertConfig.preset("tiny", vocab_size=100)
    dense, skipping = build_encoder(config), build_encoder(config, skip_padding=True)
    skipping.set_weights(dense.get_weights())
    inputs = tiny_inputs(batch=3, seq=9, pad=4)
    inputs["input_mask"][1, 3:] = 0  # rows of different lengths
    real = inputs["input_mask"].astype(bool)
    grads, outs = [], []
    for encoder in (dense, skipping):
        with tf.GradientTape() as tape:
            out = encoder(inputs)
            loss = tf.reduce_sum(out["pooled_output"] ** 2) + tf.reduce_sum(
                tf.boolean_mask(out["sequence_output"], real) ** 2)
        grads.append(tape.gradient(loss, encoder.trainable_variables))
        outs.append(out)
    np.testing.assert_allclose(outs[1]["sequence_output"].numpy()[real],
                               outs[0]["sequence_output"].numpy()[real], atol=1e-5)
    assert not outs[1]["sequence_output"].numpy()[~real].any()
    np.testing.assert_allclose(outs[1]["pooled_output"], outs[0]["pooled_output"], atol=1e-5)
    for a, b, var in zip(grads[0], grads[1], dense.trainable_variables):
        np.testing.assert_allclose(tf.convert_to_tensor(b), tf.convert_to_tensor(a), atol=1e-4,
                                   err_msg=var.path)


def test_skip_padding_takes_the_plain_path_only_for_batches_without_padding(monkeypatch):
    """At inference a batch with no padding skips the gather and scatter (tf.cond); a
    padded batch, and every training step, keeps them. Would catch a predicate that is
    always false (the fast path never taken) or always true (padding computed)."""
    block = TransformerBlock(8, 2, 16, skip_padding=True)
    seen = []
    original = TransformerBlock._block

    def spy(self, x, mask, skip_padding, training):
        seen.append(skip_padding)
        return original(self, x, mask, skip_padding, training)
    monkeypatch.setattr(TransformerBlock, "_block", spy)
    x = tf.random.normal((2, 5, 8))
    full, padded = tf.ones((2, 5), tf.int32), tf.constant([[1] * 5, [1, 1, 1, 0, 0]])
    block(x, full)          # eager: tf.cond runs the branch the predicate picks
    block(x, padded)
    block(x, full, training=True)
    assert seen == [False, True, True]


def test_dropout_only_in_training():
    encoder = build_encoder(BertConfig.preset("tiny", vocab_size=100))
    inputs = tiny_inputs()
    a, b = encoder(inputs)["pooled_output"], encoder(inputs)["pooled_output"]
    np.testing.assert_array_equal(a, b)
    c = encoder(inputs, training=True)["pooled_output"]
    assert np.abs(c - a).max() > 1e-3


def test_layers_serialise_and_model_round_trips(tmp_path):
    for layer in (BertEmbeddings(100, 8, name="e"), TransformerBlock(8, 2, 16, "gelu_tanh"),
                  TransformerBlock(8, 2, 16, skip_padding=True), BertPooler(8)):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    encoder = build_encoder(BertConfig.preset("tiny", vocab_size=100))
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.models.load_model(path)
    inputs = tiny_inputs()
    np.testing.assert_allclose(loaded(inputs)["pooled_output"], encoder(inputs)["pooled_output"],
                               atol=1e-6)


def test_config_formats_and_gelu_meaning(tmp_path):
    hf = BertConfig.from_hf_dict({"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                                  "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "intermediate_size": 16, "hidden_act": "gelu"})
    assert hf.hidden_act == "gelu"  # HF's gelu is exact
    google = BertConfig.from_google_dict({"vocab_size": 10, "hidden_size": 8,
                                          "num_hidden_layers": 1, "num_attention_heads": 2,
                                          "intermediate_size": 16, "hidden_act": "gelu"})
    assert google.hidden_act == "gelu_tanh"  # Google's code computes the tanh form
    path = str(tmp_path / "bert_config.json")
    hf.to_json_file(path)
    assert BertConfig.from_json_file(path) == hf
    assert BertConfig.from_hf_dict(hf.to_hf_dict()) == hf
    sizes = {n: (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size)
             for n in ("tiny", "mini", "small", "medium", "base", "large")
             for c in [BertConfig.preset(n)]}
    assert sizes["base"] == (12, 768, 12, 3072) and sizes["tiny"] == (2, 128, 2, 512)
    with pytest.raises(ValueError, match="not a multiple"):
        BertConfig(hidden_size=10, num_attention_heads=3)


def test_gelu_variants_differ_as_documented():
    from bert_tf.layers import activation
    x = np.linspace(-3, 3, 13).astype("float32")
    exact = np.asarray(activation("gelu")(x))
    tanh = np.asarray(activation("gelu_tanh")(x))
    from math import erf, pi, sqrt, tanh as th
    np.testing.assert_allclose(exact, [v * 0.5 * (1 + erf(v / sqrt(2))) for v in x], atol=1e-6)
    # Google's gelu: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    np.testing.assert_allclose(
        tanh, [0.5 * v * (1 + th(sqrt(2 / pi) * (v + 0.044715 * v ** 3))) for v in x], atol=1e-6)
    # the two differ by up to ~2e-4 around |x| = 2: a mix-up is far above the 1e-6 checks
    assert 1e-4 < np.abs(exact - tanh).max() < 1e-3


@pytest.mark.parametrize("setting,expected", [(None, "1"), ("0", "0")])
def test_importing_bert_tf_first_turns_on_onednn_unless_told_not_to(setting, expected):
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = ("import os, bert_tf; from tensorflow.python.util import _pywrap_util_port as p; "
            "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], p.IsMklEnabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    value, enabled = out.stdout.split()[-2:]
    assert value == expected and enabled == str(expected == "1")
