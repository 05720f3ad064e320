"""LoRA (`bert_tf.models.lora`): only the adapters and the head train, the outputs
start as the plain model's, adapters round-trip alone, and what is written (model dir,
exports) is the plain model with merged kernels that computes the LoRA model's
outputs. All on the tiny random BERT (2 layers, hidden 128) and a few steps."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.cli import main as cli
from bert_tf.errors import ConfigError
from bert_tf.io.checkpoint import read_checkpoint
from bert_tf.training.strategy import policy_scope
from tests.conftest import DATA_DIR, metrics, report

TEXTS = ["a fine film", "a dull , lifeless script", "great acting", "i left early",
         "what a mess", "loved it", "no opinion", "the movie was wonderful"]
LABELS = [1, 0, 1, 0, 0, 1, 0, 1]
# tiny: hidden 128, 2 layers; rank 4 on query and value: A [128, 4] and B [4, 128] per
# layer and target; the head: a [128, 2] kernel and 2 biases.
TINY_LORA_PARAMS = 2 * 2 * (128 * 4 + 4 * 128) + 128 * 2 + 2


def _classifier(model_dir, policy="float32"):
    keras.utils.set_random_seed(3)
    with policy_scope(policy):
        return bert_tf.BertClassifier(bert_tf.load_encoder(model_dir), 2,
                                      preprocessor=bert_tf.load_preprocessor(model_dir, 16))


def _logits(model, texts=TEXTS):
    return keras.ops.convert_to_numpy(model(model.preprocessor(tf.constant(texts)))).astype(
        "float32")


def _adapter_and_head_paths(targets=("query", "value"), layers=2):
    return sorted([f"layer_{i}/{t}/lora_kernel_{m}" for i in range(layers) for t in targets
                   for m in "ab"] + ["classifier/kernel", "classifier/bias"])


def _train(model, steps=3, learning_rate=1e-2):
    model.compile(learning_rate=learning_rate, total_steps=steps)
    model.fit(TEXTS, LABELS, batch_size=len(TEXTS) // steps + 1, epochs=1, verbose=0)


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir):
    """A classifier with LoRA rank 4 on query and value, trained 3 steps; every weight
    before and after (by path), and the plain model's logits before LoRA."""
    model = _classifier(tiny_model_dir)
    plain = _logits(model)
    model.encoder.enable_lora(4)
    enabled = _logits(model)
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    _train(model)
    after = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    return {"model": model, "plain": plain, "enabled": enabled, "before": before,
            "after": after}


def test_trainable_weights_are_the_adapters_and_the_head(lora_run):
    """Catches a frozen encoder weight left trainable (a target's bias, a LayerNorm,
    the pooler), an adapter missing on one layer, or a frozen head."""
    paths = sorted(v.path.split("/", 1)[1] if v.path.startswith("bert_encoder") else v.path
                   for v in lora_run["model"].trainable_variables)
    assert paths == _adapter_and_head_paths(), paths
    count = sum(int(np.prod(v.shape)) for v in lora_run["model"].trainable_variables)
    assert count == TINY_LORA_PARAMS


def test_outputs_start_as_the_plain_models(lora_run):
    """B starts at zero: enabling LoRA changes no output (bit for bit)."""
    np.testing.assert_array_equal(lora_run["enabled"], lora_run["plain"])


def test_training_changes_only_the_adapters_and_the_head(lora_run):
    """Every other weight (embeddings, all kernels and biases, LayerNorms, pooler) is
    bit-identical after a few steps at a large rate; B and the head moved."""
    trained = {p.split("/", 1)[1] if p.startswith("bert_encoder") else p
               for p in _adapter_and_head_paths()}
    before, after = lora_run["before"], lora_run["after"]
    changed = sorted(p for p in before if not np.array_equal(before[p], after[p]))
    moved_b = [p for p in changed if p.endswith("lora_kernel_b")]
    assert len(moved_b) == 4, changed
    assert "classifier/kernel" in changed, changed
    frozen_changed = [p for p in changed if not any(p.endswith(t) for t in trained)
                      and "seed_generator" not in p]
    assert not frozen_changed, frozen_changed


def test_feed_forward_targets(tiny_model_dir):
    """Targets name the dense layers: `intermediate` and `output` adapt the feed-forward
    layers only (A [128, 2] / [512, 2], B [2, 512] / [2, 128])."""
    encoder = bert_tf.load_encoder(tiny_model_dir)
    encoder.enable_lora(2, targets=("intermediate", "output"), alpha=8)
    shapes = {v.path: tuple(v.shape) for v in encoder.trainable_variables}
    assert shapes == {"layer_0/intermediate/lora_kernel_a": (128, 2),
                      "layer_0/intermediate/lora_kernel_b": (2, 512),
                      "layer_0/output/lora_kernel_a": (512, 2),
                      "layer_0/output/lora_kernel_b": (2, 128),
                      "layer_1/intermediate/lora_kernel_a": (128, 2),
                      "layer_1/intermediate/lora_kernel_b": (2, 512),
                      "layer_1/output/lora_kernel_a": (512, 2),
                      "layer_1/output/lora_kernel_b": (2, 128)}, shapes
    assert encoder.lora_settings() == {"rank": 2, "alpha": 8,
                                       "targets": ["intermediate", "output"]}


@pytest.mark.parametrize("call, message", [
    (lambda e: e.enable_lora(0), "rank 0"),
    (lambda e: e.enable_lora(4, targets=("query", "ffn")), "choose among"),
    (lambda e: (e.enable_lora(4), e.enable_lora(8)), "already has LoRA"),
    (lambda e: e.save_lora_weights("x.npz"), "no LoRA to save"),
])
def test_wrong_uses_are_refused(tiny_model_dir, call, message):
    with pytest.raises(ConfigError, match=message):
        call(bert_tf.load_encoder(tiny_model_dir))


def test_model_dir_weights_load_before_lora_only(tiny_model_dir):
    """Assigning a model dir to a LoRA layer's merged kernel would fail inside Keras;
    the error says to load first."""
    encoder = bert_tf.load_encoder(tiny_model_dir)
    encoder.enable_lora(4)
    with pytest.raises(ConfigError, match="has LoRA enabled: load .* before enable_lora"):
        encoder.load_model_dir_weights(tiny_model_dir)


def test_lora_weights_round_trip_onto_a_fresh_model(lora_run, tiny_model_dir, tmp_path):
    """save_lora_weights / load_lora_weights: a fresh encoder (no LoRA yet) with the
    trained head gives the trained model's logits exactly; a rank that differs is
    refused, naming both."""
    model = lora_run["model"]
    path = str(tmp_path / "adapter.npz")
    model.encoder.save_lora_weights(path)
    with np.load(path) as f:
        assert sorted(f) == sorted(
            [f"bert/encoder/layer_{i}/attention/self/{t}/lora_{m}" for i in range(2)
             for t in ("query", "value") for m in "ab"] + ["lora_settings"])
    fresh = _classifier(tiny_model_dir)
    fresh.encoder.load_lora_weights(path)
    fresh.get_layer("classifier").set_weights(model.get_layer("classifier").get_weights())
    assert fresh.encoder.lora_settings() == model.encoder.lora_settings()
    np.testing.assert_array_equal(_logits(fresh), _logits(model))
    other = bert_tf.load_encoder(tiny_model_dir)
    other.enable_lora(8)
    with pytest.raises(ConfigError, match="'rank': 4.*'rank': 8"):
        other.load_lora_weights(path)


def test_model_dir_holds_merged_kernels(lora_run, tmp_path):
    """The model dir written from the trained LoRA classifier holds plain Google names
    only (no adapter), loads without LoRA, and gives the LoRA model's logits (max
    |diff| under 1e-5; measured 0 here: both compute x · merged kernel)."""
    model = lora_run["model"]
    out = model.save_model_dir(str(tmp_path / "model"))
    tensors = read_checkpoint(os.path.join(out, "bert_model.ckpt"))
    assert not [k for k in tensors if "lora" in k]
    loaded = bert_tf.load_model(out)
    assert loaded.encoder.lora_settings() is None
    diff = float(np.abs(_logits(loaded) - _logits(model)).max())
    report(f"LoRA model dir vs LoRA model: max |logit diff| {diff:.2g}")
    assert diff < 1e-5
    # the merged query kernel moved away from the pretrained one; key did not
    pretrained = lora_run["before"]
    key = "bert/encoder/layer_0/attention/self/{}/kernel"
    assert not np.array_equal(tensors[key.format("query")],
                              pretrained["layer_0/query/kernel"])
    np.testing.assert_array_equal(tensors[key.format("key")],
                                  pretrained["layer_0/key/kernel"])


def test_keras_file_holds_the_plain_model(lora_run, tmp_path):
    """A `.keras` file of the LoRA classifier (Keras' Dense saves its merged kernel)
    loads as the plain model, with the LoRA model's logits."""
    model = lora_run["model"]
    path = str(tmp_path / "lora.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.encoder.lora_settings() is None
    np.testing.assert_allclose(_logits(loaded), _logits(model), atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_copies_for_serving_and_other_precisions_are_merged(lora_run, policy):
    """`with_skip_padding` and `with_dtype_policy` (what the exports build on) give
    plain models with the merged kernels: float32 copies equal the LoRA model's logits,
    a bfloat16 copy is within bfloat16's rounding (0.05 on these logits)."""
    model = lora_run["model"]
    skipping = model.encoder.with_skip_padding()
    assert skipping.lora_settings() is None
    plain = bert_tf.BertClassifier(skipping, 2, preprocessor=model.preprocessor)
    plain.get_layer("classifier").set_weights(model.get_layer("classifier").get_weights())
    np.testing.assert_allclose(_logits(plain), _logits(model), atol=1e-5)
    from bert_tf.models.base import with_dtype_policy
    f32 = with_dtype_policy(model, "float32")
    assert f32 is not model and f32.encoder.lora_settings() is None
    np.testing.assert_allclose(_logits(f32), _logits(model), atol=1e-5)
    with policy_scope(policy):
        half = with_dtype_policy(model, policy)
    np.testing.assert_allclose(_logits(half), _logits(model), atol=0.05)


def test_lora_trains_under_mixed_bfloat16(tiny_model_dir):
    """LoRA on a bfloat16-computing classifier: the adapters are float32 variables, the
    steps train B and leave the kernels as they were."""
    model = _classifier(tiny_model_dir, "mixed_bfloat16")
    model.encoder.enable_lora(4)
    dense = model.encoder.get_layer("layer_1").query
    assert dense.lora_kernel_b.dtype == "float32" and dense.compute_dtype == "bfloat16"
    kernel = keras.ops.convert_to_numpy(dense.weights[0])
    with policy_scope("mixed_bfloat16"):
        _train(model, steps=2)
    assert np.abs(keras.ops.convert_to_numpy(dense.lora_kernel_b)).max() > 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(dense.weights[0]), kernel)


@pytest.mark.slow
def test_export_equals_the_lora_model(lora_run, tmp_path):
    """`export_model` of the LoRA classifier: the serving export's probabilities equal
    the LoRA model's (1e-5), and the encoder export holds the plain model's variables
    (no adapter): the same format as any export."""
    model = lora_run["model"]
    paths = bert_tf.export_model(model, str(tmp_path / "export"))
    served = tf.saved_model.load(paths["serving"]).signatures["serving_default"](
        text=tf.constant(TEXTS))
    want = tf.nn.softmax(_logits(model)).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), want, atol=1e-5)
    names = tf.train.load_checkpoint(os.path.join(paths["encoder"], "variables", "variables")
                                     ).get_variable_to_shape_map()
    assert not [k for k in names if "lora" in k], names


def test_finetune_lora_rank_end_to_end(tiny_model_dir, tmp_path, capsys):
    """`bert-tf finetune --lora-rank 4`: run.json and metrics.json record the rank and
    targets, the trainable parameters are printed and recorded, and the run's model dir
    keeps every pretrained weight but the query and value kernels (merged)."""
    out = str(tmp_path / "run")
    assert cli(["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir",
                DATA_DIR, "--out", out, "--train-limit", "24", "--batch-size", "8",
                "--max-seq-length", "16", "--learning-rate", "1e-2", "--no-export", "--quiet",
                "--lora-rank", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"{TINY_LORA_PARAMS:,} trainable parameters" in printed, printed
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    assert (run["lora_rank"], run["lora_targets"]) == (4, ["query", "value"])
    result = metrics(out)
    assert result["trainable_parameters"] == TINY_LORA_PARAMS
    assert result["lora"] == {"rank": 4, "alpha": 4, "targets": ["query", "value"]}
    pretrained = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    trained = read_checkpoint(os.path.join(out, "model", "bert_model.ckpt"))
    changed = sorted(k for k in pretrained if not np.array_equal(pretrained[k], trained[k]))
    assert changed == [f"bert/encoder/layer_{i}/attention/self/{t}/kernel"
                       for i in range(2) for t in ("query", "value")], changed


def test_lora_targets_need_a_rank(tiny_model_dir, tmp_path, capsys):
    """--lora-targets alone would train the whole model, not LoRA: refused in one line."""
    assert cli(["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir",
                DATA_DIR, "--out", str(tmp_path / "run"), "--lora-targets", "key"]) == 2
    assert "--lora-targets needs --lora-rank" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")
