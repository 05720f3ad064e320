"""Conversions: HF safetensors and Google TF1 checkpoints into model dirs, and back."""
import json
import os
import re
import shutil

import numpy as np
import pytest

from bert_tf.io.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from bert_tf.cli import main as cli
from bert_tf.models.convert import convert_google, convert_hf, convert_to_google
from tests.conftest import REFERENCE_DIR, report


def _ckpt(model_dir):
    return read_checkpoint(os.path.join(model_dir, "bert_model.ckpt"))


def test_hf_model_dir_has_google_names(minilm_dir):
    tensors = _ckpt(minilm_dir)
    assert "bert/encoder/layer_5/attention/self/query/kernel" in tensors
    assert tensors["bert/pooler/dense/kernel"].shape == (384, 384)
    assert sorted(os.listdir(minilm_dir)) == sorted([
        "bert_config.json", "vocab.txt", "bert_model.ckpt.index",
        "bert_model.ckpt.data-00000-of-00001", "bert_tf.json"])


def _google_dir(tmp_path, minilm_dir, extra=None, drop=None, reshape=None):
    """A Google-style dir made from MiniLM, with optimizer slots as real ones have."""
    src = tmp_path / "google"
    convert_to_google(minilm_dir, str(src))
    tensors = _ckpt(str(src))
    tensors.update({"global_step": np.int64(7),
                    "bert/pooler/dense/kernel/adam_m": tensors["bert/pooler/dense/kernel"]})
    tensors.update(extra or {})
    if drop:
        del tensors[drop]
    if reshape:
        tensors[reshape] = tensors[reshape][:-1]
    for f in os.listdir(src):
        if f.startswith("bert_model.ckpt"):
            os.remove(src / f)
    write_checkpoint(str(src / "bert_model.ckpt"), tensors)
    return str(src)


def test_google_round_trip_with_heads(tmp_path, minilm_dir):
    rng = np.random.default_rng(0)
    heads = {"cls/predictions/transform/dense/kernel": rng.normal(size=(384, 384)).astype("f4"),
             "cls/predictions/transform/dense/bias": np.zeros(384, "f4"),
             "cls/predictions/transform/LayerNorm/gamma": np.ones(384, "f4"),
             "cls/predictions/transform/LayerNorm/beta": np.zeros(384, "f4"),
             "cls/predictions/output_bias": np.zeros(30522, "f4"),
             "cls/seq_relationship/output_weights": rng.normal(size=(2, 384)).astype("f4"),
             "cls/seq_relationship/output_bias": np.zeros(2, "f4")}
    src = _google_dir(tmp_path, minilm_dir, extra=heads)
    assert cli(["convert", "--from", "google", src, "--out", str(tmp_path / "m")]) == 0
    got, want = _ckpt(str(tmp_path / "m")), _ckpt(minilm_dir)
    assert set(got) == set(want) | set(heads)  # optimizer slots and global_step left behind
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)
    # and back to Google's layout, heads kept
    convert_to_google(str(tmp_path / "m"), str(tmp_path / "g2"))
    assert set(_ckpt(str(tmp_path / "g2"))) == set(got)


def test_missing_tensor_names_it_and_writes_nothing(tmp_path, minilm_dir):
    src = _google_dir(tmp_path, minilm_dir, drop="bert/encoder/layer_3/output/dense/bias")
    out = tmp_path / "m"
    with pytest.raises(CheckpointError, match="missing tensor bert/encoder/layer_3/output/dense/bias"):
        convert_google(src, str(out))
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".m")]


def test_wrong_shape_names_both_shapes(tmp_path, minilm_dir):
    src = _google_dir(tmp_path, minilm_dir, reshape="bert/embeddings/position_embeddings")
    with pytest.raises(CheckpointError, match=r"position_embeddings has shape \(511, 384\), "
                                              r"the config needs \(512, 384\)"):
        convert_google(src, str(tmp_path / "m"))
    assert cli(["convert", "--from", "google", src, "--out", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists()


def test_vocab_config_mismatch_and_existing_out(tmp_path, minilm_dir, minilm_source):
    src = _google_dir(tmp_path, minilm_dir)
    with open(os.path.join(src, "vocab.txt"), "a") as f:
        f.write("[an extra token]\n")  # "extra" is one already
    with pytest.raises(CheckpointError, match="30523 tokens but the config says vocab_size=30522"):
        convert_google(src, str(tmp_path / "m"))
    with pytest.raises(FileExistsError):
        convert_hf(minilm_source, minilm_dir)


def test_info_and_embed_cli(tmp_path, minilm_dir, capsys):
    assert cli(["info", minilm_dir]) == 0
    out = capsys.readouterr().out
    assert "pooler" in out and "147,840" in out and "22,713,216" in out
    texts = tmp_path / "in.txt"
    texts.write_text("A man is eating food.\nA man is eating bread.\n" + "long " * 300 + "\n")
    assert cli(["embed", "--model", minilm_dir, "--pooling", "mean", str(texts),
                "--max-seq-length", "32", "--output", str(tmp_path / "v.npy")]) == 0
    assert "1 of 3 lines were longer" in capsys.readouterr().out
    v = np.load(tmp_path / "v.npy")
    assert v.shape == (3, 384)
    assert cli(["embed", "--model", minilm_dir, str(texts), "--output",
                str(tmp_path / "v.jsonl")]) == 0
    assert cli(["embed", "--model", minilm_dir, str(tmp_path / "nope.txt"), "--output",
                str(tmp_path / "x.npy")]) == 2
    assert "nope.txt: No such file or directory" in capsys.readouterr().err


GOOGLE_TF1 = os.path.join(REFERENCE_DIR, "google_tf1")


def _google_tf1_outputs(model_dir, ref, skip_padding=False):
    import bert_tf
    import tensorflow as tf
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)  # fp32 like the reference
    try:
        out = bert_tf.load_encoder(model_dir, skip_padding=skip_padding)(
            {"input_word_ids": ref["input_ids"], "input_mask": ref["input_mask"],
             "input_type_ids": ref["token_type_ids"]})
        return {k: np.asarray(out[k]) for k in ("sequence_output", "pooled_output")}
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def test_google_tf1_checkpoint_reproduces_googles_modeling_py(tmp_path):
    """google_tf1/ was written, and its expected outputs computed, by google-research/bert's
    own modeling.py (tests/reference/make_google_tf1.py), not by bert-tf.

    Tolerance 1e-5 absolute (outputs are up to ~3): both sides are float32 but order their
    sums differently (TF1 matmul / moments + batch_normalization against Keras einsum and
    bert-tf's LayerNorm); measured ~1e-6 after 2 layers. Every position is compared, padding
    included: modeling.py and bert-tf use the same additive -10000 mask, so padded rows get
    the same values too (with skip_padding only real positions are, padding is zeros). The
    mistakes checked last move the outputs by 1e-4 (exact GELU for Google's tanh form) to ~1.
    """
    ref = np.load(os.path.join(GOOGLE_TF1, "expected_outputs.npz"))
    real = ref["input_mask"].astype(bool)
    assert real.sum(1).tolist() == [16, 11, 7] and ref["token_type_ids"].any()
    model = str(tmp_path / "m")
    assert cli(["convert", "--from", "google", GOOGLE_TF1, "--out", model]) == 0
    for skip_padding in (False, True):
        out = _google_tf1_outputs(model, ref, skip_padding)
        seq = np.abs(out["sequence_output"] - ref["sequence_output"])
        pooled = np.abs(out["pooled_output"] - ref["pooled_output"]).max()
        seq = seq[real].max() if skip_padding else seq.max()
        report(f"google_tf1 (google-research/bert modeling.py) skip_padding={skip_padding}: "
               f"max |diff| sequence_output {seq:.2e}, pooled_output {pooled:.2e}")
        assert seq <= 1e-5 and pooled <= 1e-5, (skip_padding, seq, pooled)

    # The fixture catches conversion mistakes: each of these moves the outputs far past 1e-5.
    src = read_checkpoint(os.path.join(GOOGLE_TF1, "bert_model.ckpt"))
    ln = "bert/encoder/layer_0/output/LayerNorm/"
    mistakes = {  # name: (tensors changed, bert_config.json keys changed)
        "query kernel transposed": ({"bert/encoder/layer_1/attention/self/query/kernel":
                                     src["bert/encoder/layer_1/attention/self/query/kernel"].T},
                                    {}),
        "LayerNorm gamma/beta swapped": ({ln + "gamma": src[ln + "beta"],
                                          ln + "beta": src[ln + "gamma"]}, {}),
        "exact GELU for Google's tanh gelu": ({}, {"gelu_approximate": False}),
    }
    for i, (mistake, (tensors, keys)) in enumerate(mistakes.items()):
        bad = tmp_path / f"bad{i}"
        bad.mkdir()
        with open(os.path.join(GOOGLE_TF1, "bert_config.json")) as f:
            (bad / "bert_config.json").write_text(json.dumps({**json.load(f), **keys}))
        shutil.copyfile(os.path.join(GOOGLE_TF1, "vocab.txt"), bad / "vocab.txt")
        write_checkpoint(str(bad / "bert_model.ckpt"), {**src, **tensors})
        out = _google_tf1_outputs(convert_google(str(bad), str(tmp_path / f"m{i}")), ref)
        assert np.abs(out["sequence_output"] - ref["sequence_output"]).max() > 1e-4, mistake


def test_tiny_hf_source_converts(tmp_path):
    """The tiny HF dir the `models-hf-*` probes of tests/test_errors.py break converts
    whole when it is good, its tensors renamed and transposed as HF's `BertModel` has
    them, and its tokenizer_config.json's casing kept."""
    from safetensors.numpy import load_file
    from tests.probes.models import hf_source
    src = hf_source(tmp_path / "hf")
    (tmp_path / "hf" / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert cli(["convert", "--from", "hf", src, "--out", str(tmp_path / "m")]) == 0
    hf, got = load_file(os.path.join(src, "model.safetensors")), _ckpt(str(tmp_path / "m"))
    np.testing.assert_array_equal(got["bert/encoder/layer_0/intermediate/dense/kernel"],
                                  hf["encoder.layer.0.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(got["cls/predictions/output_bias"], hf["cls.predictions.bias"])
    with open(tmp_path / "m" / "bert_tf.json") as f:
        assert json.load(f)["do_lower_case"] is False


def test_info_checks_the_task_head_against_bert_tf_json(tiny_model_dir, tmp_path, capsys):
    """`info` counts a classifier's head (attention pooling's query too), and refuses
    a dir whose `bert_tf.json` names more labels than the checkpoint's head has rows."""
    import bert_tf
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2, pooling="attention",
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 16))
    model_dir = clf.save_model_dir(str(tmp_path / "clf"))
    capsys.readouterr()
    assert cli(["info", model_dir]) == 0
    out = capsys.readouterr().out
    assert re.search(r"task head +386\n  total +4,386,306\n", out), out  # 2 x 128 + 2 + 128
    meta_path = os.path.join(model_dir, "bert_tf.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["task"]["labels"] = ["a", "b", "c"]
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    assert cli(["info", model_dir]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "tensor output_weights has shape (2, 128), the config needs (3, 128)")
