"""Fine-tuning: a real small run, strategies, resume after SIGKILL, bad input."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.cli import main as cli
from tests.conftest import DATA_DIR, ROOT, metrics, no_dropout_copy, report


def finetune_cmd(model, out, *extra):
    return ["finetune", "--task", "sst2", "--model", model, "--data-dir", DATA_DIR,
            "--out", str(out), *extra]


def run_cli(args, env=None, timeout=900):
    return subprocess.Popen([sys.executable, "-m", "bert_tf", *args], cwd=ROOT,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc, timeout=900):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_small_real_finetune_writes_everything(minilm_dir, tmp_path):
    out = tmp_path / "run"
    assert cli(finetune_cmd(minilm_dir, out, "--train-limit", "400", "--epochs", "3",
                            "--learning-rate", "1e-4", "--max-seq-length", "64", "--seed", "1")) == 0
    m = metrics(out)
    report(f"fine-tune MiniLM on 400 SST-2 examples, 3 epochs: dev accuracy "
           f"{m['dev_accuracy']:.3f}, {m['train_examples_per_second']} examples/s")
    assert m["dev_accuracy"] > 0.75  # chance is 0.51
    for name in ("model/bert_model.ckpt.index", "training_curve.png", "run.json",
                 "export/serving/1/saved_model.pb", "export/encoder/1/saved_model.pb"):
        assert (out / name).exists(), name
    assert any((out / "logs").rglob("*tfevents*"))
    meta = json.load(open(out / "model" / "bert_tf.json"))
    assert meta["task"]["labels"] == ["0", "1"] and meta["task"]["pooling"] == "pooled_output"
    # the fine-tuned model dir loads as an encoder, and its serving export classifies
    import bert_tf
    import tensorflow as tf
    assert bert_tf.load_encoder(str(out / "model")).output["pooled_output"].shape[-1] == 384
    serve = tf.saved_model.load(str(out / "export" / "serving" / "1")).signatures["serving_default"]
    result = serve(text=tf.constant(["a wonderful, moving film", "dull and lifeless"]))
    assert [x.decode() for x in result["label"].numpy()] == ["1", "0"]
    assert sorted(result) == ["label", "logits", "probabilities"]   # the vectors: embed, encode
    # a finished run is never overwritten without --overwrite
    assert cli(finetune_cmd(minilm_dir, out, "--train-limit", "400", "--epochs", "3",
                            "--learning-rate", "1e-4", "--max-seq-length", "64", "--seed", "1")) == 2


SMALL = ["--train-limit", "256", "--epochs", "2", "--learning-rate", "5e-4", "--batch-size", "32",
         "--max-seq-length", "48", "--no-export", "--seed", "3"]


def free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _one_bucket_tsvs(tmp_path, tokenizer, n_train=64, n_dev=32):
    """SST-2 sentences of 9 to 16 tokens (one length bucket, so every global batch of 16
    is full and no strategy skips a remainder), as train/dev TSVs."""
    import tensorflow as tf
    from tests.conftest import data_path
    rows = [line.split("\t") for line in
            open(data_path("SST-2", "train.tsv"), encoding="utf-8").read().splitlines()[1:2000]]
    lengths = tokenizer.preprocess(tf.constant([r[0] for r in rows]), 128)["input_mask"]
    picked = [r for r, n in zip(rows, np.sum(lengths, axis=1)) if 9 <= n <= 16]
    picked = picked[:n_train + n_dev]
    assert len(picked) == n_train + n_dev
    paths = []
    for name, part in (("train", picked[:n_train]), ("dev", picked[n_train:])):
        path = tmp_path / f"{name}.tsv"
        path.write_text("sentence\tlabel\n" + "".join(f"{a}\t{b}\n" for a, b in part))
        paths.append(str(path))
    return paths


@pytest.mark.slow
def test_strategies_compute_the_same_steps(minilm_dir, tokenizer, tmp_path):
    """One device, MirroredStrategy over two logical CPUs, and MultiWorkerMirrored with
    two worker processes on localhost: the same 8 steps (global batch 16, same data
    order, no dropout) give the same losses and the same weights. Catches a loss scaled
    by the replica count instead of the global batch, a worker that reads the wrong
    shard (or the whole batch), and replicas whose gradients are not summed.

    The three runs go at once (the one-device run in this process, the others in
    their own: a process with two logical CPUs and the two workers), so two cores do
    them in about the time of their work, not of each start-up one after another."""
    from bert_tf.io.checkpoint import read_checkpoint
    model = no_dropout_copy(minilm_dir, tmp_path / "model")
    train, dev = _one_bucket_tsvs(tmp_path, tokenizer)
    args = ["finetune", "--task", "tsv", "--model", model, "--train", train, "--dev", dev,
            "--text-column", "sentence", "--label-column", "label", "--epochs", "2",
            "--learning-rate", "1e-4", "--batch-size", "16", "--max-seq-length", "32",
            "--no-export", "--seed", "3"]
    mirrored = run_cli([*args, "--out", str(tmp_path / "mirrored"), "--strategy", "mirrored",
                        "--cpu-replicas", "2"])
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    workers = [run_cli([*args, "--out", str(tmp_path / "multi_worker"), "--strategy",
                        "multi_worker"],
                       env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {
                           "type": "worker", "index": i}}), "OMP_NUM_THREADS": "1"})
               for i in range(2)]
    try:
        assert cli([*args, "--out", str(tmp_path / "one"), "--strategy", "cpu"]) == 0
        finish(mirrored)
        outputs = [finish(w) for w in workers]
    finally:
        for p in (mirrored, *workers):
            p.kill()
    runs = {name: metrics(tmp_path / name) for name in ("one", "mirrored", "multi_worker")}
    assert [runs[n]["replicas"] for n in runs] == [1, 2, 2]
    assert [runs[n]["steps_per_epoch"] for n in runs] == [4, 4, 4]
    start = read_checkpoint(os.path.join(model, "bert_model.ckpt"))
    weights = {n: read_checkpoint(str(tmp_path / n / "model" / "bert_model.ckpt")) for n in runs}
    moved = max(np.abs(weights["one"][k] - start[k]).max() for k in start)
    lines = []
    for name in ("mirrored", "multi_worker"):
        loss_diff = np.abs(np.subtract(runs[name]["history"]["loss"],
                                       runs["one"]["history"]["loss"])).max()
        w_diff = max(np.abs(weights[name][k] - weights["one"][k]).max() for k in weights["one"])
        lines.append(f"{name}: losses max |diff| {loss_diff:.1e}, weights max |diff| "
                     f"{w_diff:.1e}")
        # Same arithmetic but for the order of the gradient sums (float32): the losses
        # agree to ~1e-6. Adam turns a relative gradient difference d into a step
        # difference of about lr * d, so the weights agree to far less than the steps
        # themselves move them; a wrong shard or lost gradient moves them by ~lr per step.
        assert loss_diff < 1e-4, (name, runs[name]["history"]["loss"],
                                  runs["one"]["history"]["loss"])
        assert w_diff < 0.02 * moved, (name, w_diff, moved)
        assert runs[name]["dev_accuracy"] == runs["one"]["dev_accuracy"], name
    report("strategies, same 8 steps (MiniLM without dropout, global batch 16): weights moved "
           f"up to {moved:.1e}; " + "; ".join(lines))
    # both workers trained the same weights: the second worker's dev metrics (it prints
    # them and writes nothing) equal the chief's
    last = [re.findall(r"dev_accuracy: [0-9.]+", out)[-1] for out in outputs]
    assert last[0] == last[1], last
    # the progress bar counts the run's epochs (each epoch is its own `fit` call)
    assert "Epoch 1/2" in outputs[0] and "Epoch 2/2" in outputs[0]
    assert sorted(os.listdir(tmp_path / "multi_worker")) == sorted(os.listdir(tmp_path / "one"))


def _tsv(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("case,train,dev,message", [
    ("missing file", None, "s\tl\nok\ta\n", "train.tsv: file not found"),
    ("missing column", "text\tlabel\nfine\ta\n", "s\tl\nok\ta\n", "line 1: no column 's'"),
    ("empty file", "", "s\tl\nok\ta\n", "train.tsv: file is empty"),
    ("wrong field count", "s\tl\ngood\ta\nbad line\n", "s\tl\nok\ta\n",
     "train.tsv, line 3: 1 fields, the header has 2"),
    ("unseen dev label", "s\tl\ngood\ta\nbad\tb\n", "s\tl\nok\ta\nhuh\tc\n",
     "dev.tsv, line 3: label 'c' does not occur in training"),
])
def test_bad_input_exits_2_and_writes_nothing(tiny_model_dir, tmp_path, capsys, case, train,
                                             dev, message):
    train_path = str(tmp_path / "train.tsv") if train is None else _tsv(tmp_path / "train.tsv",
                                                                        train)
    dev_path = _tsv(tmp_path / "dev.tsv", dev)
    out = tmp_path / "run"
    code = cli(["finetune", "--task", "tsv", "--model", tiny_model_dir, "--out", str(out),
                "--train", train_path, "--dev", dev_path, "--text-column", "s",
                "--label-column", "l"])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_foreign_run_dir_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert cli(finetune_cmd(tiny_model_dir, out, *SMALL)) == 2
    assert "is not a bert-tf run" in capsys.readouterr().err
    assert os.listdir(out) == ["precious.txt"]


def test_missing_glue_data_says_where_it_looked(tiny_model_dir, tmp_path, capsys):
    assert cli(["finetune", "--task", "sst2", "--model", tiny_model_dir, "--data-dir",
                str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "SST-2/train.tsv" in err and "--data-dir" in err


def test_warmup_linear_decay_schedule():
    from bert_tf.optimizers import WarmupLinearDecay
    s = WarmupLinearDecay(1.0, total_steps=100, warmup_steps=10)
    assert [round(float(s(x)), 4) for x in (0, 5, 10, 55, 100, 120)] == [0, 0.5, 1, 0.5, 0, 0]
    assert WarmupLinearDecay(**s.get_config()).get_config() == s.get_config()


def test_weight_decay_skips_layernorm_and_bias():
    import keras
    from bert_tf.optimizers import bert_optimizer
    opt = bert_optimizer(1e-3, 10, 1)
    dense, norm = keras.layers.Dense(2), keras.layers.LayerNormalization()
    dense.build((None, 2))
    norm.build((None, 2))
    decayed = {v.name: opt._use_weight_decay(v) for v in dense.weights + norm.weights}
    assert decayed == {"kernel": True, "bias": False, "gamma": False, "beta": False}


def test_fused_adamw_matches_keras_adamw():
    """The fused kernel does Keras' arithmetic: dense and embedding (IndexedSlices)
    gradients, weight decay with exclusions, global-norm clipping, five steps."""
    import keras
    import numpy as np
    import tensorflow as tf
    from bert_tf.optimizers import AdamW

    def run(opt_class):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(50, 8),
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)])
        opt = opt_class(keras.optimizers.schedules.PolynomialDecay(1e-2, 5, 1e-3),
                        weight_decay=0.05, epsilon=1e-6, global_clipnorm=1.0)
        opt.exclude_from_weight_decay(var_names=["bias"])
        rng = np.random.default_rng(0)
        for _ in range(5):
            x = tf.constant(rng.integers(0, 50, (4, 5)), tf.int32)
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x) ** 2)
            grads = tape.gradient(loss, model.trainable_variables)
            assert isinstance(grads[0], tf.IndexedSlices)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        return [v.numpy() for v in model.trainable_variables]

    ours, reference = run(AdamW), run(keras.optimizers.AdamW)
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(ours, reference)]
    moved = [float(np.max(np.abs(a))) for a in reference]
    report("fused AdamW vs keras AdamW, 5 steps", f"max |diff| {max(diffs):.1e} "
           f"(weights up to {max(moved):.2f})")
    assert max(diffs) < 5e-6


def test_buckets_pad_each_batch_to_the_smallest_width():
    import numpy as np
    from bert_tf.data.glue import BUCKET_WIDTHS, make_dataset
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 70, 500)
    mask = (np.arange(72)[None, :] < lengths[:, None]).astype("int32")
    features = {"input_word_ids": mask * 7, "input_mask": mask, "input_type_ids": 0 * mask}
    seen = []
    for x, y in make_dataset(features, np.arange(500), 16, training=True, seed=3):
        longest = int(x["input_mask"].numpy().sum(1).max())
        assert x["input_mask"].shape[1] == min([w for w in BUCKET_WIDTHS if w >= longest] + [72])
        seen += y.numpy().tolist()
    assert sorted(seen) == list(range(500))


def test_reinit_pooler_draws_new_weights(tiny_model_dir):
    import numpy as np
    import bert_tf
    from bert_tf.training.finetune import reinit_pooler
    encoder = bert_tf.load_encoder(tiny_model_dir)
    dense = encoder.get_layer("pooler").dense
    dense.bias.assign(np.ones(dense.bias.shape, "float32"))
    before = dense.kernel.numpy().copy()
    reinit_pooler(encoder, 0.02, seed=4)
    after = dense.kernel.numpy()
    assert not np.allclose(before, after) and np.all(dense.bias.numpy() == 0)
    assert abs(after.std() - 0.02 * 0.88) < 0.003 and np.abs(after).max() <= 0.04 + 1e-6


@pytest.mark.slow
def test_pair_tasks_take_their_defaults_and_serve_pairs(tiny_model_dir, tmp_path, capsys):
    """`--task mrpc` and `--task tsv --text-b-column` without --epochs/--learning-rate:
    each prints its recipe and records it in run.json (mrpc 5 at 5e-5, tsv 3 at 5e-5);
    the pair run's serving export needs `text_b` and gives the probabilities of the
    model dir on the same pairs, which differ from the first texts alone."""
    import bert_tf
    import tensorflow as tf
    small = ["--train-limit", "64", "--max-seq-length", "48", "--batch-size", "16", "--quiet"]
    assert cli(["finetune", "--task", "mrpc", "--model", tiny_model_dir, "--data-dir", DATA_DIR,
                "--out", str(tmp_path / "mrpc"), "--no-export", *small]) == 0
    assert "mrpc recipe: 5 epoch(s) at learning rate 5e-05" in capsys.readouterr().out
    run = json.loads((tmp_path / "mrpc" / "run.json").read_text())
    assert (run["epochs"], run["learning_rate"]) == (5, 5e-5)
    assert len(metrics(tmp_path / "mrpc")["history"]["loss"]) == 5

    # MRPC's train.tsv as a user's own pair TSV (its header names the columns)
    rows = open(os.path.join(DATA_DIR, "MRPC", "train.tsv"), encoding="utf-8-sig").read() \
        .splitlines()[:81]
    (tmp_path / "train.tsv").write_text("\n".join(rows[:65]) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("\n".join(rows[:1] + rows[65:]) + "\n", encoding="utf-8")
    out = tmp_path / "pairs"
    assert cli(["finetune", "--task", "tsv", "--model", tiny_model_dir, "--out", str(out),
                "--train", str(tmp_path / "train.tsv"), "--dev", str(tmp_path / "dev.tsv"),
                "--text-column", "#1 String", "--text-b-column", "#2 String",
                "--label-column", "Quality", *small]) == 0
    assert "tsv recipe: 3 epoch(s) at learning rate 5e-05" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert (run["epochs"], run["learning_rate"]) == (3, 5e-5)
    a = [r.split("\t")[3] for r in rows[65:]]
    b = [r.split("\t")[4] for r in rows[65:]]
    model = bert_tf.load_model(str(out / "model"))
    want = tf.nn.softmax(model.predict((a, b), verbose=0)).numpy()
    serve = tf.saved_model.load(str(out / "export" / "serving" / "1")).signatures[
        "serving_default"]
    assert sorted(serve.structured_input_signature[1]) == ["text", "text_b"]
    got = serve(text=tf.constant(a), text_b=tf.constant(b))["probabilities"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    alone = tf.nn.softmax(model.predict((a, [""] * len(a)), verbose=0)).numpy()
    assert np.abs(alone - want).max() > 1e-4  # text_b is read


def _slice(src, dest, rows, header=True):
    lines = open(src, encoding="utf-8-sig").read().splitlines()
    dest.write_text("\n".join(lines[:1] + lines[rows]) + "\n", encoding="utf-8")
    return str(dest)


def test_tsv_regression_and_multi_label(tiny_model_dir, tmp_path, capsys):
    """`finetune --task tsv --problem regression | multi_label` on slices of STS-B and
    GoEmotions (benchmarks/data): metrics.json holds the problem's dev metrics, equal
    to SciPy's / scikit-learn's on the saved model's outputs; the model dir records
    the problem (and threshold), and the multi-label export serves the labels over it."""
    import bert_tf
    import tensorflow as tf
    from scipy import stats
    from sklearn.metrics import f1_score
    small = ["--train-limit", "48", "--max-seq-length", "48", "--batch-size", "16", "--quiet",
             "--epochs", "2", "--learning-rate", "1e-3"]
    stsb = os.path.join(ROOT, "benchmarks", "data", "STS-B")
    train = _slice(os.path.join(stsb, "train.tsv"), tmp_path / "sts_train.tsv", slice(1, 49))
    dev = _slice(os.path.join(stsb, "dev.tsv"), tmp_path / "sts_dev.tsv", slice(1, 41))
    out = tmp_path / "sts"
    assert cli(["finetune", "--task", "tsv", "--model", tiny_model_dir, "--out", str(out),
                "--train", train, "--dev", dev, "--text-column", "sentence1",
                "--text-b-column", "sentence2", "--label-column", "score",
                "--problem", "regression", "--no-export", *small]) == 0
    got = metrics(out)
    rows = [r.split("\t") for r in open(dev, encoding="utf-8").read().splitlines()[1:]]
    model = bert_tf.load_model(str(out / "model"))
    assert (model.problem, model.labels) == ("regression", ["score"])
    pred = model.predict(([r[7] for r in rows], [r[8] for r in rows]), verbose=0)[:, 0]
    scores = np.array([float(r[9]) for r in rows])
    assert got["dev_pearson"] == pytest.approx(stats.pearsonr(pred, scores)[0], abs=1e-4)
    assert got["dev_spearman"] == pytest.approx(stats.spearmanr(pred, scores)[0], abs=1e-4)
    assert len(got["history"]["dev_pearson"]) == 2 and "dev_accuracy" not in got

    emo = os.path.join(ROOT, "benchmarks", "data", "GoEmotions")
    # labels come from the whole training file, then --train-limit keeps its first 48 rows
    train = _slice(os.path.join(emo, "train.tsv"), tmp_path / "emo_train.tsv", slice(1, 1000))
    dev = _slice(os.path.join(emo, "dev.tsv"), tmp_path / "emo_dev.tsv", slice(1, 41))
    out = tmp_path / "emo"
    assert cli(["finetune", "--task", "tsv", "--model", tiny_model_dir, "--out", str(out),
                "--train", train, "--dev", dev, "--text-column", "text", "--label-column",
                "labels", "--problem", "multi_label", "--threshold", "0.3", *small]) == 0
    assert "multi-label labels" in capsys.readouterr().out
    got = metrics(out)
    model = bert_tf.load_model(str(out / "model"))
    assert (model.problem, model.threshold) == ("multi_label", 0.3)
    rows = [r.split("\t") for r in open(dev, encoding="utf-8").read().splitlines()[1:]]
    texts = [r[0] for r in rows]
    truth = np.array([[name in r[1].split(",") for name in model.labels] for r in rows])
    probs = tf.sigmoid(model.predict(texts, verbose=0)).numpy()
    assert got["dev_micro_f1"] == pytest.approx(
        f1_score(truth, probs > 0.3, average="micro", zero_division=0), abs=1e-9)
    assert got["dev_macro_f1"] == pytest.approx(
        f1_score(truth, probs > 0.3, average="macro", zero_division=0), abs=1e-9)
    serve = tf.saved_model.load(str(out / "export" / "serving" / "1")).signatures[
        "serving_default"]
    served = serve(text=tf.constant(texts))
    np.testing.assert_allclose(served["probabilities"].numpy(), probs, atol=1e-5)
    assert [[x.decode() for x in row if x] for row in served["labels"].numpy()] == \
        [[n for n, p in zip(model.labels, row) if p > 0.3] for row in probs]


@pytest.mark.parametrize("problem,train,dev,extra,message", [
    ("regression", "s\tl\ngood\t4.5\nbad\tlow\n", "s\tl\nok\t1\n", [],
     "train.tsv, line 3: label 'low' is not a number"),
    ("regression", "s\tl\ngood\t4.5\nbad\t1,2\n", "s\tl\nok\t1\n", [],
     "train.tsv, line 3: 2 targets, line 2 has 1"),
    ("multi_label", "s\tl\ngood\ta,b\nbad\t\n", "s\tl\nok\tc\n", [],
     "dev.tsv, line 2: label 'c' does not occur in training"),
    ("multi_label", "s\tl\ngood\ta\n", "s\tl\nok\ta\n", ["--threshold", "1"],
     "threshold 1.0: a probability strictly between 0 and 1"),
])
def test_problem_input_errors(tiny_model_dir, tmp_path, capsys, problem, train, dev, extra,
                              message):
    out = tmp_path / "run"
    code = cli(["finetune", "--task", "tsv", "--model", tiny_model_dir, "--out", str(out),
                "--train", _tsv(tmp_path / "train.tsv", train),
                "--dev", _tsv(tmp_path / "dev.tsv", dev), "--text-column", "s",
                "--label-column", "l", "--problem", problem, *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_problem_needs_a_tsv_task(tiny_model_dir, tmp_path, capsys):
    code = cli(finetune_cmd(tiny_model_dir, tmp_path / "run", "--problem", "regression"))
    assert code == 2 and "--problem regression needs --task tsv" in capsys.readouterr().err
