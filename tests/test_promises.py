"""Promises of README and the docstrings that no other quick test protected (issue 40):
each was broken on purpose, one plausible bug at a time, and every test still passed.
One test per promise; each test's docstring names the bug it catches, and each checks
values (a step's size, a rate, an order, a name, a logit), so that it fails with the
bug in. tests/test_mutations.py puts some of these bugs back in and checks that the
tests here still fail.

1. AdamW clips gradients at global norm 1.0.
2. AdamW's epsilon is 1e-6.
3. Linear warm-up over 10 % of the steps (the fine-tune job's optimizer and
   `BertClassifier.compile`).
4. Training data shuffled reproducibly for `--seed`.
5. Each epoch's batches drawn anew (seeded by the epoch).
6. The classifier head's dropout is 0.1 (the config's hidden dropout).
7. The F1 in `metrics.json` is the F1 of class 1 (GLUE's MRPC F1).
8. A classifier head is saved as Google's `output_weights` / `output_bias`.
9. The span head's start/end logits are masked to the context and [CLS].
10. Every LayerNorm uses the config's epsilon (1e-12 for BERT).
11. `export` takes the length the model was trained with unless told otherwise.
12. The serving export's warm-up requests hold batches of every size 1..n.
13. `count_trimmed` counts rows longer than the limit, not rows of exactly it.
14. The MLM loss is averaged over the real predictions only (padding weighs 0).

Also from issue 40 (caught before only by tests marked `slow`):
15. Each fine-tune task's recipe without flags (MRPC: 5 epochs at 5e-5).
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

LEARNING_RATE = 1e-3


class _Stop(Exception):
    """Raised where a job would start training: what it built is all these tests need."""


def _write_tsv_task(folder, rows=40) -> tuple[str, str]:
    """A tiny single-text TSV task whose every row is a different text."""
    words = ["good", "bad", "film", "plot", "actor", "scene", "dull", "great", "long", "fun"]
    lines = [f"{words[i % 10]} {words[(i // 10) % 10]} {' '.join(words[:i % 7])}\t{i % 2}"
             for i in range(rows)]
    os.makedirs(folder, exist_ok=True)
    train, dev = os.path.join(folder, "train.tsv"), os.path.join(folder, "dev.tsv")
    with open(train, "w") as f:
        f.write("sentence\tlabel\n" + "\n".join(lines) + "\n")
    with open(dev, "w") as f:
        f.write("sentence\tlabel\n" + "\n".join(lines[:8]) + "\n")
    return train, dev


def _finetune_job(model_dir, folder, seed: int) -> dict:
    """What `finetune` builds for a 3-epoch run on a 40-row TSV task (its model,
    compiled, and its `epoch_data`), caught where training would start."""
    from bert_tf.training import finetune as ft
    train, dev = _write_tsv_task(folder)
    seen = {}

    def stop(model, epoch_data, epochs, *args, **kwargs):
        seen.update(model=model, epoch_data=epoch_data, epochs=epochs)
        raise _Stop
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ft, "fit_resumable", stop)
        with pytest.raises(_Stop):
            ft.finetune(ft.FinetuneConfig(
                task="tsv", model=model_dir, out=os.path.join(folder, f"run-{seed}"),
                train=train, dev=dev, text_column="sentence", label_column="label",
                epochs=3, batch_size=4, max_seq_length=16, learning_rate=LEARNING_RATE,
                seed=seed, no_export=True, quiet=True))
    return seen


@pytest.fixture(scope="module")
def job(tiny_model_dir, tmp_path_factory):
    return _finetune_job(tiny_model_dir, str(tmp_path_factory.mktemp("job")), seed=7)


def _order(dataset) -> list[tuple]:
    """The examples of an epoch, in order, each as its token ids (padding dropped)."""
    rows = []
    for x, _ in dataset:
        for ids, mask in zip(x["input_word_ids"].numpy(), x["input_mask"].numpy()):
            rows.append(tuple(ids[mask > 0]))
    return rows


def _batches(dataset) -> set[frozenset]:
    """An epoch's batches as sets of examples (their order within the epoch left out)."""
    return {frozenset(tuple(ids[mask > 0]) for ids, mask in
                      zip(x["input_word_ids"].numpy(), x["input_mask"].numpy()))
            for x, _ in dataset}


# -- 1, 2: AdamW's clipping and epsilon ---------------------------------------------------

def _adam_step(gradient, lr, epsilon, clipnorm):
    """One Adam step from zero weights (zero weights: no weight decay), in numpy."""
    g = np.asarray(gradient, np.float64)
    if clipnorm:
        g = g * clipnorm / max(np.linalg.norm(g), clipnorm)
    m, v = 0.1 * g, 0.001 * g * g
    return -lr * np.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + epsilon)


# A huge component and a small one: clipped to global norm 1, the small one is far
# below epsilon and barely moves; unclipped it moves by about the learning rate.
GRADIENT = [3e6, 4e-3]


def _step_of(optimizer_config: dict, optimizer_class) -> np.ndarray:
    """One step of an optimizer made from `optimizer_config` at a constant rate."""
    optimizer = optimizer_class.from_config({**optimizer_config,
                                             "learning_rate": LEARNING_RATE})
    weights = keras.Variable(np.zeros(2, "float32"), name="kernel")
    optimizer.apply_gradients([(tf.constant(GRADIENT, tf.float32), weights)])
    return weights.numpy()


def test_adamw_clips_at_global_norm_1(job):
    """Bug: AdamW built without `global_clipnorm=1.0` ("gradient clipping at global norm
    1.0"): a step with a huge gradient then moves the small component by ~1e-3 instead
    of the clipped ~4e-8."""
    from bert_tf.optimizers import bert_optimizer
    for optimizer in (job["model"].optimizer, bert_optimizer(1e-4, 100, 10),
                      bert_optimizer(1e-4, 100, 10, name="lamb")):
        clipnorm = optimizer.get_config()["global_clipnorm"]
        assert clipnorm == 1.0, f"{type(optimizer).__name__}: global_clipnorm {clipnorm}"
    optimizer = job["model"].optimizer    # the fine-tune job's own, at a constant rate
    moved = _step_of(optimizer.get_config(), type(optimizer))
    want = _adam_step(GRADIENT, LEARNING_RATE, 1e-6, clipnorm=1.0)
    np.testing.assert_allclose(moved, want, rtol=1e-3, atol=1e-12)
    unclipped = _adam_step(GRADIENT, LEARNING_RATE, 1e-6, clipnorm=None)
    assert abs(unclipped[1]) > 1e4 * abs(want[1])    # what the bug would give instead


def test_adamw_epsilon_is_1e_6(job):
    """Bug: AdamW's epsilon 1e-8 instead of BERT's 1e-6: the config says so, and the
    small clipped component of a step moves 100 times as far."""
    from bert_tf.optimizers import bert_optimizer
    for optimizer in (job["model"].optimizer, bert_optimizer(1e-4, 100, 10),
                      bert_optimizer(1e-4, 100, 10, name="lamb")):
        epsilon = optimizer.get_config()["epsilon"]
        assert epsilon == 1e-6, f"{type(optimizer).__name__}: epsilon {epsilon}"
    optimizer = job["model"].optimizer
    moved = _step_of(optimizer.get_config(), type(optimizer))
    np.testing.assert_allclose(moved[1], _adam_step(GRADIENT, LEARNING_RATE, 1e-6, 1.0)[1],
                               rtol=1e-3)
    assert abs(_adam_step(GRADIENT, LEARNING_RATE, 1e-8, 1.0)[1]) > 50 * abs(moved[1])


# -- 3: warm-up ------------------------------------------------------------------------------

def test_warmup_rises_linearly_over_a_tenth_of_the_steps(job, tiny_model_dir):
    """Bug: warm-up steps 0 ("linear warm-up over 10 % of the steps"): the fine-tune
    job's rate at step 0 is then the peak, not 0. Also `BertClassifier.compile()`'s
    schedule, once `fit` gives it its length."""
    import bert_tf
    from bert_tf.optimizers import WarmupLinearDecay
    schedule = job["model"].optimizer._learning_rate
    assert isinstance(schedule, WarmupLinearDecay)
    steps_per_epoch = int(job["epoch_data"](0).cardinality())
    total = steps_per_epoch * job["epochs"]
    warmup = int(0.1 * total)
    assert total >= 30 and warmup >= 3, (total, warmup)  # enough steps for a real warm-up
    assert (schedule.total_steps, schedule.warmup_steps) == (total, warmup)
    assert float(job["model"].optimizer.learning_rate) == 0.0    # the rate at step 0
    steps = list(range(warmup + 1)) + [warmup + (total - warmup) // 2, total]
    want = [LEARNING_RATE * s / warmup for s in range(warmup + 1)] + [
        LEARNING_RATE * (total - steps[-2]) / (total - warmup), 0.0]
    np.testing.assert_allclose([float(schedule(s)) for s in steps], want, rtol=1e-5, atol=1e-12)

    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2)
    clf.compile(learning_rate=2e-5)
    schedule = clf.optimizer._learning_rate
    schedule.set_total_steps(250)             # what the first fit does
    assert schedule.warmup_steps == 25
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 5, 25, 250)],
                               [0.0, 4e-6, 2e-5, 0.0], rtol=1e-5, atol=1e-12)


# -- 4, 5: data order ---------------------------------------------------------------------

def _features(n=64, seed=0):
    """`n` examples of different lengths, each identified by its ids."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 30, n)
    mask = (np.arange(32)[None, :] < lengths[:, None]).astype("int32")
    ids = (np.arange(n)[:, None] + 1000) * mask
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": 0 * mask}, \
        np.arange(n) % 2


def test_data_order_follows_the_seed(tiny_model_dir, tmp_path, job):
    """Bug: the data order fixed, ignoring `--seed` ("shuffles reproducibly for
    `--seed`"): two seeds must give two orders, the same seed the same one, in
    `training_epochs` and in the fine-tune job."""
    from bert_tf.data.glue import training_epochs
    features, labels = _features()

    def first_epoch(seed):
        return _order(training_epochs(features, labels, 8, seed=seed)[1](0))
    a, b, again = first_epoch(1), first_epoch(2), first_epoch(1)
    assert sorted(a) == sorted(b), "an epoch holds every example once"
    assert a != b, "training_epochs: seeds 1 and 2 gave the same order"
    assert a == again, "training_epochs: seed 1 gave two orders"
    # The fine-tune job: seed 7 (the `job` fixture) against 8, and 7 again.
    other = _finetune_job(tiny_model_dir, str(tmp_path / "other"), seed=8)
    same = _finetune_job(tiny_model_dir, str(tmp_path / "same"), seed=7)
    order, other_order = _order(job["epoch_data"](0)), _order(other["epoch_data"](0))
    assert sorted(order) == sorted(other_order)
    assert order != other_order, "finetune: seeds 7 and 8 gave the same data order"
    assert order == _order(same["epoch_data"](0)), "finetune: seed 7 gave two data orders"


def test_each_epoch_draws_new_batches(job):
    """Bug: `reshuffle_each_iteration=False` (each epoch's batches "seeded by the
    epoch"): every epoch would hold the same batches (only their order reshuffled).
    Each epoch must be the same whenever asked (a resumed run relies on it)."""
    from bert_tf.data.glue import training_epochs
    features, labels = _features()
    _, epoch_data = training_epochs(features, labels, 8, seed=3)
    epochs = [_batches(epoch_data(e)) for e in range(3)]
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert epochs[a] != epochs[b], f"epochs {a} and {b} hold the same batches"
    assert _order(epoch_data(1)) == _order(epoch_data(1)), "epoch 1 differs when asked again"
    assert _batches(job["epoch_data"](0)) != _batches(job["epoch_data"](1)), \
        "finetune: epochs 0 and 1 hold the same batches"


# -- 6: head dropout ----------------------------------------------------------------------

def test_classifier_head_dropout_is_the_hidden_rate(job, tiny_model_dir):
    """Bug: the head's dropout 0.0 ("dropout 0.1"): the fine-tune job's classifier and
    `BertClassifier`'s default must drop 10 % before the dense layer, in training only."""
    import bert_tf
    from bert_tf.config import load_config
    assert load_config(tiny_model_dir).hidden_dropout_prob == 0.1
    for model in (job["model"], bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2)):
        layer = model.get_layer("classifier_dropout")
        assert layer.rate == 0.1
        assert model.get_layer("classifier").input is layer.output  # dropout feeds the head
        out = layer(np.ones((200, 128), "float32"), training=True).numpy()
        np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.9], rtol=1e-6)
        assert 0.07 < float((out == 0).mean()) < 0.13
        assert (layer(np.ones((2, 128), "float32"), training=False).numpy() == 1).all()


# -- 7: F1 of class 1 -------------------------------------------------------------------

def test_f1_is_the_f1_of_class_1():
    """Bug: `binary_f1` of class 0 (the F1 in `metrics.json`): on labels
    [1, 1, 0, 0, 0] predicted [1, 0, 0, 0, 1] class 1 has F1 0.5, class 0 2/3."""
    from bert_tf.training.finetune import DevEvaluation
    from bert_tf.training.metrics import binary_f1, dev_metrics
    labels, predicted = np.array([1, 1, 0, 0, 0]), np.array([1, 0, 0, 0, 1])
    assert binary_f1(labels, predicted) == 0.5
    assert binary_f1(labels, predicted, positive=0) == pytest.approx(2 / 3)
    logits = np.eye(2, dtype="float32")[predicted] * 3.0
    assert dev_metrics("single_label", logits, labels) == {"dev_accuracy": 0.6, "dev_f1": 0.5}
    # what the fine-tune job writes to metrics.json: its dev evaluation
    model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
    dataset = tf.data.Dataset.from_tensor_slices((logits, labels)).batch(2)
    evaluation = DevEvaluation(dataset, labels)
    evaluation.set_model(model)
    assert evaluation.evaluate() == {"dev_accuracy": 0.6, "dev_f1": 0.5}


# -- 8: Google's head names -----------------------------------------------------------

def test_classifier_head_has_googles_names(tiny_model_dir, tmp_path):
    """Bug: the classifier head saved as `output/weights` (Google's `output_weights`
    `[classes, H]` and `output_bias` `[classes]`, as `run_classifier.py` names them)."""
    import bert_tf
    from bert_tf.io.checkpoint import read_checkpoint
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 3,
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 16))
    dense = clf.get_layer("classifier")
    kernel = np.arange(128 * 3, dtype="float32").reshape(128, 3) / 1000
    dense.kernel.assign(kernel)
    dense.bias.assign(np.array([0.5, -1.0, 2.0], "float32"))
    model_dir = clf.save_model_dir(str(tmp_path / "clf"))
    tensors = read_checkpoint(os.path.join(model_dir, "bert_model.ckpt"))
    encoder = set(read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt")))
    assert set(tensors) - encoder == {"output_weights", "output_bias"}
    np.testing.assert_array_equal(tensors["output_weights"], kernel.T)
    np.testing.assert_array_equal(tensors["output_bias"], [0.5, -1.0, 2.0])


# -- 9: span logits masked -------------------------------------------------------------

def test_span_logits_are_masked_to_the_context_and_cls(tiny_model_dir):
    """Bug: the span head lets question tokens win (start/end masked to the context
    and [CLS]): every position outside the second segment but [CLS] must be -10,000,
    the others the dense layer's logits."""
    import bert_tf
    from bert_tf.layers.heads import MASKED, SpanLogits
    layer = SpanLogits()
    x = np.random.default_rng(0).normal(size=(2, 7, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1]])
    types = np.array([[0, 0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1]])
    got = layer(x, mask, types).numpy()
    logits = np.einsum("blh,hk->bkl", x, layer.kernel.numpy()) + layer.bias.numpy()[None, :, None]
    allowed = ((mask > 0) & (types > 0)) | (np.arange(7) == 0)[None]
    np.testing.assert_allclose(got[np.broadcast_to(allowed[:, None], got.shape)],
                               logits[np.broadcast_to(allowed[:, None], got.shape)], atol=1e-6)
    assert (got[np.broadcast_to(~allowed[:, None], got.shape)] == MASKED).all()
    # the model passes the type ids to the head: question tokens 1-2 are masked there too
    model = bert_tf.BertSpanModel(bert_tf.load_encoder(tiny_model_dir))
    ids = np.array([[101, 2054, 102, 1996, 4937, 102]], "int32")
    out = model({"input_word_ids": ids, "input_mask": np.ones_like(ids),
                 "input_type_ids": np.array([[0, 0, 0, 1, 1, 1]], "int32")}).numpy()
    assert (out[0, :, 1:3] == MASKED).all() and (out[0, :, [0, 3, 4, 5]] > MASKED / 2).all()


# -- 10: LayerNorm epsilon --------------------------------------------------------------

def _layer_norms(layer) -> list:
    """Every `LayerNormalization` inside `layer`, however deeply nested."""
    return [sub for sub in layer._flatten_layers(include_self=True, recursive=True)
            if isinstance(sub, keras.layers.LayerNormalization)]


def test_every_layer_norm_uses_the_config_epsilon():
    """Bug: LayerNorm epsilon 1e-6 in the attention block only (the config's is 1e-12):
    every LayerNorm of the encoder and the MLM head must have the config's epsilon, and
    compute with it (on inputs of variance 1e-10, where 1e-6 changes the output 100x).
    (The HF parity test misses this bug: it moves MiniLM's outputs by ~8e-6.)"""
    from bert_tf.config import BertConfig
    from bert_tf.models.encoder import BertEncoder
    from bert_tf.models.pretrainer import BertPretrainer
    for eps in (1e-12, 1e-5):
        config = BertConfig.preset("tiny", vocab_size=50)
        config.layer_norm_eps = eps
        model = BertPretrainer(BertEncoder.from_bert_config(config))
        norms = _layer_norms(model)
        # embeddings, 2 per block, the MLM head's transform
        assert len(norms) == 1 + 2 * config.num_hidden_layers + 1, [n.path for n in norms]
        x = np.random.default_rng(0).normal(size=(3, 128)).astype("float32") * 1e-5
        centred = x - x.mean(-1, keepdims=True)
        want = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + eps)
        for norm in norms:
            assert norm.epsilon == eps, norm.path
            np.testing.assert_allclose(norm(x).numpy(), want, rtol=1e-3, atol=1e-4,
                                       err_msg=norm.path)


# -- 11: export length --------------------------------------------------------------------

def test_export_defaults_to_the_trained_length(tiny_model_dir, tmp_path, monkeypatch):
    """Bug: `export`'s `seq_length` default ignores the trained length ("`--seq-length`
    defaults to the length the model was trained with"): a classifier trained at 24
    tokens exports at 24 (the preprocessor's length, and the serving export's longest
    batch); an encoder, which has no trained length, at 128."""
    import bert_tf
    from bert_tf import export
    from bert_tf.cli import main as cli
    seen = []
    monkeypatch.setattr(export, "_write", lambda targets, encoder, tokenizer, seq_length, mlm,
                        serving: seen.append((seq_length, serving[0])))
    # (nothing is written, so there are no signatures to print curls for)
    monkeypatch.setattr(export, "serving_instructions", lambda *args: "")
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2,
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 24))
    model_dir = clf.save_model_dir(str(tmp_path / "clf"))
    assert cli(["export", "--model", model_dir, "--out", str(tmp_path / "a")]) == 0
    assert cli(["export", "--model", tiny_model_dir, "--out", str(tmp_path / "b")]) == 0
    assert [length for length, _ in seen] == [24, 128]
    long_text = tf.constant(["word " * 300])
    widths = [int(serving.encode(long_text)["input_mask"].shape[1]) for _, serving in seen]
    assert widths == [24, 128]


# -- 12: warm-up requests ---------------------------------------------------------------

def test_warmup_requests_hold_every_batch_size(tmp_path):
    """Bug: one warm-up record written (warm-up records for sizes 1..n): the file must
    hold n requests, of the first 1, 2, ..., n examples of every input."""
    from tensorflow_serving.apis import prediction_log_pb2
    from bert_tf.export.savedmodel import write_warmup_requests
    examples = {"text": ["a", "b", "c", "d"], "text_b": ["w", "x", "y", "z"]}
    path = write_warmup_requests(str(tmp_path), examples)
    assert path == str(tmp_path / "assets.extra" / "tf_serving_warmup_requests")
    requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
                for r in tf.data.TFRecordDataset(path)]
    got = [{k: [t.decode() for t in tf.make_ndarray(v)] for k, v in r.inputs.items()}
           for r in requests]
    assert got == [{k: v[:size] for k, v in examples.items()} for size in range(1, 5)]
    assert {(r.model_spec.name, r.model_spec.signature_name) for r in requests} == {
        ("bert", "serving_default")}


# -- 13: count_trimmed --------------------------------------------------------------------

def test_count_trimmed_spares_a_row_of_exactly_the_limit(tokenizer):
    """Bug: `count_trimmed` with `>=` ("says how many lines were trimmed"): a row of
    exactly `seq_length` tokens ([CLS], the pieces, [SEP]) is not trimmed, one more is."""
    rows = tf.constant(["a b c d", "a b c d e", "a b c"])   # 6, 7 and 5 tokens
    assert [int(tokenizer.count_trimmed(rows, n)) for n in (5, 6, 7)] == [2, 1, 0]
    packed = tokenizer.preprocess(rows, 6)
    assert packed["input_mask"].numpy().sum(1).tolist() == [6, 6, 5]
    assert packed["input_word_ids"].numpy()[0, -1] == 102          # nothing of row 0 lost
    pair = [tf.constant(["a b"]), tf.constant(["c d"])]           # [CLS] a b [SEP] c d [SEP]
    assert [int(tokenizer.count_trimmed(pair, n)) for n in (6, 7)] == [1, 0]


# -- 14: MLM loss over the real predictions --------------------------------------------

@pytest.fixture(scope="module")
def records(vocab_file, tmp_path_factory):
    """Pre-training records of 32 tokens with room for 8 predictions: ~4 are real, the
    rest padding."""
    from bert_tf.data.pretraining import create_pretraining_data
    folder = tmp_path_factory.mktemp("mlm")
    text = str(folder / "corpus.txt")
    with open(text, "w") as f:
        f.write("The cat sat on the mat.\nIt purred.\n\nA storm came.\nThe river rose.\n\n" * 20)
    out = str(folder / "train.tfrecord")
    create_pretraining_data([text], vocab_file, out, max_seq_length=32, max_predictions=8,
                            seed=1, dupe_factor=1, progress=False)
    return out


def test_mlm_loss_is_averaged_over_real_predictions(tiny_model_dir, records, tmp_path,
                                                   monkeypatch):
    """Bug: MLM weights all 1, padding predictions counted ("MLM loss averaged over
    real predictions"): the records and the data pipeline (static and dynamic masking)
    weigh padding predictions 0, and the pre-training job's loss on a batch is
    sum(w * ce) / sum(w) + NSP cross-entropy, computed here in numpy."""
    from bert_tf.data.pretraining import MaskingVocab, pretraining_dataset
    from bert_tf.training import pretrain as pt
    vocab = MaskingVocab.from_file(os.path.join(tiny_model_dir, "vocab.txt"))
    for dynamic in (False, True):
        x, _, w = next(iter(pretraining_dataset(records, 16, training=dynamic,
                                                dynamic_masking=dynamic, vocab=vocab)))
        real = (x["masked_lm_positions"].numpy() > 0).astype("float32")  # [CLS] is never one
        assert 0 < real.mean() < 0.9, real.mean()          # there are padding predictions
        np.testing.assert_array_equal(w["mlm_logits"].numpy(), real, err_msg=(
            f"dynamic_masking={dynamic}: MLM weights must be 1 at real predictions, 0 at "
            "padding"))

    seen = {}

    def stop(model, epoch_data, *args, **kwargs):
        seen.update(model=model, epoch_data=epoch_data)
        raise _Stop
    monkeypatch.setattr(pt, "fit_resumable", stop)
    with pytest.raises(_Stop):
        pt.pretrain(pt.PretrainConfig(init=tiny_model_dir, train=records,
                                      out=str(tmp_path / "pretrain"), steps=2, batch_size=16,
                                      quiet=True))
    model = seen["model"]
    x, y, w = next(iter(seen["epoch_data"](0)))
    out = model(x, training=False)
    loss = float(model.compute_loss(x, y, out, w))

    def cross_entropy(logits, labels):
        logits = logits.astype("float64")
        top = logits.max(-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
        return log_z - np.take_along_axis(logits, labels[..., None], -1)[..., 0]
    real = (x["masked_lm_positions"].numpy() > 0).astype("float64")
    mlm = cross_entropy(out["mlm_logits"].numpy(), y["mlm_logits"].numpy())
    nsp = cross_entropy(out["nsp_logits"].numpy(), y["nsp_logits"].numpy())
    want = (mlm * real).sum() / real.sum() + nsp.mean()
    every_position = mlm.mean() + nsp.mean()
    assert abs(want - every_position) > 1e-2              # the bug would be seen
    assert loss == pytest.approx(want, rel=1e-5)


# -- 15: each task's recipe ---------------------------------------------------------------

def test_each_task_takes_the_readmes_recipe_without_flags():
    """Bug: a task's default recipe changed (MRPC's default epochs were guarded only by
    a slow test): without `--epochs` / `--learning-rate`, sst2 trains 1 epoch at 1e-4,
    mrpc 5 at 5e-5, tsv 3 at 5e-5 (README's table of flags), all with warm-up over 10 %
    of the steps; a flag given overrides only itself."""
    from bert_tf.training.finetune import FinetuneConfig
    recipes = {task: (c.epochs, c.learning_rate, c.warmup_proportion, c.defaults_used)
               for task in ("sst2", "mrpc", "tsv")
               for c in [FinetuneConfig(task=task, model="m", out="o")]}
    both = ("epochs", "learning_rate")
    assert recipes == {"sst2": (1, 1e-4, 0.1, both), "mrpc": (5, 5e-5, 0.1, both),
                       "tsv": (3, 5e-5, 0.1, both)}
    config = FinetuneConfig(task="mrpc", model="m", out="o", epochs=2)
    assert (config.epochs, config.learning_rate, config.defaults_used) == (
        2, 5e-5, ("learning_rate",))
