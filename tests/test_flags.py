"""One test per flag that had none: each fails if its flag is ignored or misapplied.

`--mixed-precision bfloat16`, `--jit-compile`, `--optimizer lamb`, `pretrain --init`, a
cased model, `export --overwrite` and the next free version, `finetune --pooling
attention`, and `embed` to `.jsonl` against `.npy`.
"""
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.cli import main as cli
from bert_tf.io.checkpoint import read_checkpoint
from tests.conftest import DATA_DIR, metrics, no_dropout_copy, report

SMALL = ["--task", "sst2", "--data-dir", DATA_DIR, "--train-limit", "64", "--epochs", "1",
         "--batch-size", "16", "--max-seq-length", "32", "--seed", "2", "--quiet"]


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_weight_decay_spares_layer_norm_and_biases(name):
    """With zero gradients only the weight decay moves a variable: kernels shrink by
    lr * 0.01, LayerNorm gamma/beta and biases stay (BERT's exclusions), for LAMB as for
    AdamW."""
    from bert_tf.optimizers import bert_optimizer
    opt = bert_optimizer(1e-2, total_steps=10, warmup_steps=0, name=name)
    variables = [keras.Variable(np.ones((2, 2), "float32"), name=n)
                 for n in ("kernel", "gamma", "beta", "bias")]
    opt.apply_gradients([(tf.zeros((2, 2)), v) for v in variables])
    values = {v.name: float(v.numpy()[0, 0]) for v in variables}
    assert values["kernel"] == pytest.approx(1 - 1e-2 * 0.01, abs=1e-7), values
    assert values["gamma"] == values["beta"] == values["bias"] == 1.0, values


@pytest.mark.slow
def test_mixed_precision_bfloat16(tiny_model_dir, tmp_path):
    """bf16 compute: the loss is finite, the master weights and the model dir stay
    float32, and the run's serving export computes in float32 (its outputs are float32
    and equal the float32 model of the same weights), whatever the run trained in."""
    run = tmp_path / "bf16"
    assert cli(["finetune", "--model", tiny_model_dir, "--out", str(run), *SMALL,
                "--mixed-precision", "bfloat16"]) == 0
    keras.mixed_precision.set_global_policy("float32")  # the run set it for this process
    m = metrics(run)
    assert np.isfinite(m["history"]["loss"]).all() and m["history"]["loss"][0] > 0
    reader = tf.train.load_checkpoint(str(run / "model" / "bert_model.ckpt"))
    dtypes = set(reader.get_variable_to_dtype_map().values())
    assert dtypes == {tf.float32}, dtypes
    signatures = tf.saved_model.load(str(run / "export" / "serving" / "1")).signatures
    serve = signatures["serving_default"]
    texts = tf.constant(["a wonderful film", "dull and lifeless", "it is fine"])
    out = {**serve(text=texts), **signatures["embed"](text=texts),
           **signatures["encode"](text=texts)}
    for key in ("probabilities", "logits", "pooled_output", "sequence_output"):
        assert out[key].dtype == tf.float32, key
    # the export is the float32 model (built under the run's bf16 policy, it served
    # bfloat16 tensors)
    fp32 = bert_tf.load_model(str(run / "model"))
    want = tf.nn.softmax(fp32.predict(texts, verbose=0))
    diff = float(np.abs(out["probabilities"].numpy() - want.numpy()).max())
    report(f"finetune --mixed-precision bfloat16 (tiny): loss {m['history']['loss'][0]:.3f}, "
           f"weights float32, serving probabilities vs fp32 max |diff| {diff:.1e}")
    assert diff < 1e-5


@pytest.mark.slow
def test_jit_compile_trains_the_same_steps(tiny_model_dir, tmp_path):
    """`--jit-compile` (XLA, no padding skipped) and the default path train the same 4
    steps (no dropout, so both compute one function): same losses and weights within
    float32 reordering."""
    model = no_dropout_copy(tiny_model_dir, tmp_path / "model")
    runs = {}
    for name, extra in (("eager", []), ("xla", ["--jit-compile"])):
        assert cli(["finetune", "--model", model, "--out", str(tmp_path / name), *SMALL,
                    "--no-export", *extra]) == 0
        runs[name] = (metrics(tmp_path / name),
                      read_checkpoint(str(tmp_path / name / "model" / "bert_model.ckpt")))
    start = read_checkpoint(os.path.join(model, "bert_model.ckpt"))
    (m0, w0), (m1, w1) = runs["eager"], runs["xla"]
    moved = max(np.abs(w0[k] - start[k]).max() for k in start)
    diff = max(np.abs(w0[k] - w1[k]).max() for k in w0)
    report(f"finetune --jit-compile vs default (tiny, 4 steps): loss {m1['history']['loss'][0]:.6f}"
           f" vs {m0['history']['loss'][0]:.6f}, weights max |diff| {diff:.1e} (moved {moved:.1e})")
    assert m1["history"]["loss"][0] == pytest.approx(m0["history"]["loss"][0], rel=1e-5)
    assert diff < 0.02 * moved


@pytest.mark.slow
def test_pooling_attention_finetune_round_trips(tiny_model_dir, tmp_path):
    """`--pooling attention`: the head is attention pooling (its weights are in the model
    dir and were trained), and the model dir and serving export predict what the run's
    model does."""
    run = tmp_path / "attn"
    assert cli(["finetune", "--model", tiny_model_dir, "--out", str(run), *SMALL,
                "--pooling", "attention", "--learning-rate", "1e-3"]) == 0
    meta = json.loads((run / "model" / "bert_tf.json").read_text())
    assert meta["task"]["pooling"] == "attention"
    model = bert_tf.load_model(str(run / "model"))
    pooling = [layer for layer in model.layers if isinstance(layer, bert_tf.layers.AttentionPooling)]
    assert len(pooling) == 1
    texts = ["a wonderful film", "dull and lifeless"]
    serve = tf.saved_model.load(str(run / "export" / "serving" / "1")).signatures[
        "serving_default"]
    probs = tf.nn.softmax(model.predict(texts, verbose=0)).numpy()  # predict gives logits
    np.testing.assert_allclose(serve(text=tf.constant(texts))["probabilities"], probs, atol=1e-5)
    # an untrained attention head scores every token alike: the run moved it
    weights = pooling[0].get_weights()
    assert any(np.abs(w).max() > 0 for w in weights)
    fresh = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2, pooling="attention")
    fresh_pool = [layer for layer in fresh.layers
                  if isinstance(layer, bert_tf.layers.AttentionPooling)][0]
    assert any(not np.allclose(a, b) for a, b in zip(weights, fresh_pool.get_weights()))


@pytest.mark.slow
def test_pretrain_init_starts_from_the_model(tiny_model_dir, vocab_file, tmp_path):
    """`pretrain --init DIR`: the encoder starts from DIR's weights (after 2 steps at lr
    1e-6 every encoder weight is within 1e-5 of DIR's, where a fresh draw differs by
    ~0.02), the missing MLM/NSP heads are drawn, and DIR's vocab is kept."""
    text = tmp_path / "corpus.txt"
    lines = open(os.path.join(DATA_DIR, "SST-2", "train.tsv"), encoding="utf-8").read().splitlines()
    docs = [" .\n".join(line.split("\t")[0] for line in lines[i:i + 6]) for i in range(1, 600, 6)]
    text.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    records = str(tmp_path / "train.tfrecord")
    assert cli(["create-pretraining-data", "--input", str(text), "--vocab", vocab_file,
                "--out", records, "--max-seq-length", "32", "--max-predictions-per-seq", "5",
                "--dupe-factor", "1", "--quiet"]) == 0
    out = tmp_path / "pretrained"
    assert cli(["pretrain", "--init", tiny_model_dir, "--train", records, "--out", str(out),
                "--steps", "2", "--steps-per-epoch", "2", "--batch-size", "8",
                "--learning-rate", "1e-6", "--warmup-steps", "0", "--quiet"]) == 0
    start = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    after = read_checkpoint(str(out / "bert_model.ckpt"))
    encoder = [k for k in start if k.startswith("bert/")]
    assert encoder and max(np.abs(after[k] - start[k]).max() for k in encoder) < 1e-5
    assert "cls/predictions/output_bias" in after and "cls/seq_relationship/output_weights" in after
    assert (out / "vocab.txt").read_text() == open(os.path.join(tiny_model_dir, "vocab.txt")).read()


def test_cased_model_keeps_case(tiny_model_dir, tmp_path):
    """A cased model dir (`do_lower_case: false`, a vocab with cased pieces) tokenises
    "Paris" and "paris" apart, in Python, in the preprocessor layer and in the exports,
    as HF's `BertWordPieceTokenizer(lowercase=False)` does; the uncased model folds them."""
    from tokenizers import BertWordPieceTokenizer
    cased = tmp_path / "cased"
    shutil.copytree(tiny_model_dir, cased)
    vocab = (cased / "vocab.txt").read_text().splitlines()
    # give a few unused slots cased words (the vocab size, so the checkpoint, stays)
    unused = [i for i, w in enumerate(vocab) if w.startswith("[unused")][:3]
    for i, word in zip(unused, ("Paris", "The", "##ANCE")):
        vocab[i] = word
    (cased / "vocab.txt").write_text("\n".join(vocab) + "\n")
    meta = json.loads((cased / "bert_tf.json").read_text())
    (cased / "bert_tf.json").write_text(json.dumps({**meta, "do_lower_case": False}))
    texts = ["The city of Paris", "the city of paris", "FRANCE Éclair Straße"]
    hf = BertWordPieceTokenizer(str(cased / "vocab.txt"), lowercase=False, strip_accents=False)
    want = [e.ids for e in hf.encode_batch(texts)]
    pre = bert_tf.load_preprocessor(str(cased), seq_length=None)
    got = pre(tf.constant(texts))["input_word_ids"].numpy()
    assert [row[:len(w)].tolist() for row, w in zip(got, want)] == want
    assert want[0] != want[1]  # case kept
    uncased = bert_tf.load_preprocessor(tiny_model_dir, seq_length=None)(
        tf.constant(texts[:2]))["input_word_ids"].numpy()
    assert uncased[0].tolist() == uncased[1].tolist()
    base = str(tmp_path / "export")
    assert cli(["export", "--model", str(cased), "--out", base, "--seq-length", "16"]) == 0
    exported = tf.saved_model.load(os.path.join(base, "preprocessor", "1"))(tf.constant(texts))
    ids = pre(tf.constant(texts))["input_word_ids"].numpy()  # padded to the longest text
    np.testing.assert_array_equal(exported["input_word_ids"].numpy()[:, :ids.shape[1]], ids)
    assert not exported["input_word_ids"].numpy()[:, ids.shape[1]:].any()


@pytest.mark.slow
def test_export_next_version_and_overwrite(tiny_model_dir, tmp_path, capsys):
    """Without --version an export takes the next free version; `--version N
    --overwrite` replaces version N only (its model changes, the others stay)."""
    base = tmp_path / "exports"
    for _ in range(2):
        assert cli(["export", "--model", tiny_model_dir, "--out", str(base),
                    "--seq-length", "16"]) == 0
    assert sorted(os.listdir(base / "encoder")) == ["1", "2"]
    x = bert_tf.load_preprocessor(tiny_model_dir, 16)(tf.constant(["a test"]))

    def pooled(version):
        return tf.saved_model.load(str(base / "encoder" / version))(x)["pooled_output"].numpy()
    before = {v: pooled(v) for v in ("1", "2")}
    assert cli(["export", "--model", tiny_model_dir, "--out", str(base), "--version", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    other = tmp_path / "other"  # the same architecture, drawn with another seed
    keras.utils.set_random_seed(7)
    bert_tf.BertEncoder.from_bert_config(bert_tf.load_encoder(tiny_model_dir).bert_config) \
        .save_model_dir(str(other), preprocessor=bert_tf.load_preprocessor(tiny_model_dir))
    assert cli(["export", "--model", str(other), "--out", str(base), "--version", "1",
                "--seq-length", "16", "--overwrite"]) == 0
    assert sorted(os.listdir(base / "encoder")) == ["1", "2"]
    assert np.abs(pooled("1") - before["1"]).max() > 1e-3  # replaced
    np.testing.assert_array_equal(pooled("2"), before["2"])  # untouched
    assert cli(["export", "--model", tiny_model_dir, "--out", str(base), "--seq-length", "16"]) == 0
    assert sorted(os.listdir(base / "encoder")) == ["1", "2", "3"]


def test_embed_jsonl_equals_npy(tiny_model_dir, tmp_path):
    """`embed` to `.jsonl` gives, line by line, the text and the vector of `.npy`."""
    texts = ["A man is eating food.", "", "Café au lait — naïve", "long " * 100]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    for suffix in ("npy", "jsonl"):
        assert cli(["embed", "--model", tiny_model_dir, "--pooling", "mean", str(src),
                    "--max-seq-length", "32", "--output", str(tmp_path / f"v.{suffix}")]) == 0
    array = np.load(tmp_path / "v.npy")
    rows = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose(np.array([r["vector"] for r in rows]), array, atol=1e-6)
    assert array.shape == (4, 128) and np.abs(array).max() > 0


def test_version_names_the_installed_distribution(capsys):
    """`bert-tf --version` prints the version pip installed (setup.cfg's), exit 0."""
    from importlib.metadata import version
    with pytest.raises(SystemExit) as exit:
        cli(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"bert-tf {version('bert-tf')}"


def test_embed_normalize_gives_unit_vectors_of_the_same_direction(tiny_model_dir, tmp_path):
    """`embed --normalize`: each vector is the plain one divided by its L2 norm (the plain
    ones are not of norm 1, so an ignored flag fails); Beam's handler does the same."""
    from bert_tf.inference.beam import EmbedderHandler
    texts = tmp_path / "texts.txt"
    texts.write_text("a cat sat on the mat\nthe weather is fine today\n")
    for name, flags in (("plain", []), ("unit", ["--normalize"])):
        assert cli(["embed", "--model", tiny_model_dir, "--pooling", "mean", str(texts),
                    "--output", str(tmp_path / f"{name}.npy"), *flags]) == 0
    plain, unit = np.load(tmp_path / "plain.npy"), np.load(tmp_path / "unit.npy")
    norms = np.linalg.norm(plain, axis=1, keepdims=True)
    assert np.abs(norms - 1).min() > 0.1
    np.testing.assert_allclose(unit, plain / norms, atol=1e-6)
    handler = EmbedderHandler(tiny_model_dir, "mean", normalize=True)
    vectors, _ = handler.load_model().embed_batch(["a cat sat on the mat"])
    np.testing.assert_allclose(vectors, unit[:1], atol=1e-6)
