"""Gradient accumulation (`--gradient-accumulation-steps N`, also `--micro-batches N`):
N slices of a batch, their summed gradients applied once, train the same steps as the
whole batch (`bert_tf.training.micro_batch`)."""
import json

import numpy as np
import pytest

from bert_tf.cli import build_parser, main as cli
from bert_tf.errors import ConfigError
from tests.conftest import data_path, report


def test_one_flag_two_names():
    """`--micro-batches` is the old spelling of `--gradient-accumulation-steps`: one
    argparse argument, one config field (`micro_batches`, as run.json records it), so a
    run started with either resumes with the other. Catches two flags that drift apart."""
    for command in (["finetune", "--task", "sst2"], ["squad", "--train", "t", "--predict", "p"],
                    ["pretrain", "--train", "t"]):
        base = [*command, "--model", "m", "--out", "o"] if command[0] != "pretrain" \
            else [*command, "--out", "o"]
        for flag in ("--gradient-accumulation-steps", "--micro-batches"):
            assert build_parser().parse_args([*base, flag, "4"]).micro_batches == 4


def test_pretrain_takes_accumulation_but_not_under_xla(tmp_path):
    """Pre-training's slices are exact (the test at the end of this file); under XLA
    the summed embedding gradients change shape, so `--jit-compile` still refuses."""
    from bert_tf.training.pretrain import PretrainConfig
    args = dict(train="x.tfrecord", out=str(tmp_path / "o"), config="tiny", micro_batches=4)
    assert PretrainConfig(**args).micro_batches == 4
    with pytest.raises(ConfigError, match=r"--gradient-accumulation-steps 4.*--jit-compile"):
        PretrainConfig(**args, jit_compile=True)


def test_slices_weigh_each_output_by_its_share_of_the_batchs_divisor():
    """Two outputs whose Keras losses divide by something else than the examples: one by
    its sample weights' sum (`mean_with_sample_weight`, as pre-training's masked-LM
    loss), one by its targets not ignored (`ignore_class`, as the tagger's loss).
    Slices of 3, 3, 2, 2 examples whose weights and ignored targets are spread
    unequally: the losses (total and each output's) and weights equal the whole
    batch's. Catches slices weighted by their share of the examples (the weighting of
    2026-12-07, commit 4218225), a divisor taken from the slice instead of the
    batch, and per-output losses averaged over slices instead of the batch."""
    import keras
    from bert_tf.training.micro_batch import use_micro_batches

    def model():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((5, 4))
        outputs = {"tokens": keras.layers.Dense(3, name="tokens")(inputs),
                   "labels": keras.layers.Dense(3, name="labels")(inputs)}
        m = keras.Model(inputs, outputs)
        m.compile(keras.optimizers.SGD(0.5),  # plain SGD: a mis-weighted sum shows
                  loss={"tokens": keras.losses.SparseCategoricalCrossentropy(
                            from_logits=True, reduction="mean_with_sample_weight"),
                        "labels": keras.losses.SparseCategoricalCrossentropy(
                            from_logits=True, ignore_class=-1)})
        return m

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 5, 4)).astype("float32")
    tokens = rng.integers(0, 3, size=(10, 5))
    weights = (rng.random((10, 5)) < np.linspace(0.1, 0.9, 10)[:, None]).astype("float32")
    labels = np.where(rng.random((10, 5)) < np.linspace(0.9, 0.2, 10)[:, None],
                      rng.integers(0, 3, size=(10, 5)), -1)
    slices = [slice(0, 3), slice(3, 6), slice(6, 8), slice(8, 10)]  # 4 slices of 10
    counts = [(weights[s].sum() / (s.stop - s.start), (labels[s] >= 0).mean()) for s in slices]
    assert len(set(counts)) == len(slices)  # per example, each slice has its own share
    y = {"tokens": tokens, "labels": labels}
    w = {"tokens": weights, "labels": np.ones((10, 5), "float32")}
    whole, sliced = model(), model()
    use_micro_batches(sliced, 4)
    a = whole.fit(x, y, sample_weight=w, batch_size=10, epochs=3, verbose=0).history
    b = sliced.fit(x, y, sample_weight=w, batch_size=10, epochs=3, verbose=0).history
    assert sorted(a) == sorted(b) == ["labels_loss", "loss", "tokens_loss"]
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)
    for u, v in zip(whole.get_weights(), sliced.get_weights()):
        np.testing.assert_allclose(v, u, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_accumulation_of_4_x_8_trains_as_batch_32(tiny_model_dir, tmp_path):
    """`finetune --batch-size 32 --gradient-accumulation-steps 4` (slices of 8 or fewer:
    the length buckets' last batches are smaller) on SST-2 sentences against
    whole batches of 32, without dropout: the same loss at every step and the same
    weights. The two sum the same 32 per-example gradients in a different order, so
    they differ by float32 rounding: measured 2026-12-07 on the tiny model, at most
    2.5e-7 in a step's loss (~0.69) and 1.2e-7 in a weight, while training moved the
    weights by ~4e-3. The loss bound, 1e-6, lies between that and float32's worst case
    for 32 terms of ~0.7 summed in another order (32 x 2^-24 x 0.7, about 1.3e-6); the
    weights' bound, 1e-5, is 1% of one Adam step at this learning rate (Adam divides by
    sqrt(v), which can enlarge rounding where a gradient is near zero). A slice left
    out, counted twice or mis-weighted, or a schedule stepped per slice as Keras'
    `gradient_accumulation_steps` does (3e-3 apart), lands far outside both."""
    from bert_tf.io.checkpoint import read_checkpoint
    from tests.conftest import no_dropout_copy
    model = no_dropout_copy(tiny_model_dir, tmp_path / "model")
    # SST-2's first 96 training sentences, as TSV files: a dev set of 8 keeps the
    # per-epoch evaluation short.
    with open(data_path("SST-2", "train.tsv"), encoding="utf-8") as f:
        rows = f.readlines()[:105]
    (tmp_path / "train.tsv").write_text("".join(rows[:97]), encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("".join(rows[:1] + rows[97:]), encoding="utf-8")
    runs = {}
    for n in ("1", "4"):
        out = tmp_path / f"n{n}"
        assert cli(["finetune", "--task", "tsv", "--train", str(tmp_path / "train.tsv"),
                    "--dev", str(tmp_path / "dev.tsv"), "--text-column", "sentence",
                    "--label-column", "label", "--model", model, "--out", str(out),
                    "--max-seq-length", "32", "--batch-size", "32", "--learning-rate", "1e-3",
                    "--epochs", "2", "--gradient-accumulation-steps", n, "--no-export",
                    "--quiet"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        runs[n] = (metrics["history"], read_checkpoint(str(out / "model" / "bert_model.ckpt")),
                   2 * metrics["steps_per_epoch"])
    (h1, w1, steps), (h4, w4, _) = runs["1"], runs["4"]
    start = read_checkpoint(str(tmp_path / "model" / "bert_model.ckpt"))
    moved = max(np.abs(w1[k] - start[k]).max() for k in start)
    loss_diff = np.abs(np.array(h4["step_loss"]) - np.array(h1["step_loss"])).max()
    weight_diff = max(np.abs(w1[k] - w4[k]).max() for k in w1)
    report(f"finetune --gradient-accumulation-steps 4 vs batch 32 (tiny, no dropout, "
           f"{len(h1['step_loss'])} steps): step loss max |diff| {loss_diff:.1e}, weights max "
           f"|diff| {weight_diff:.1e} (moved {moved:.1e})")
    assert len(h4["step_loss"]) == len(h1["step_loss"]) == steps
    assert h4["step_learning_rate"] == h1["step_learning_rate"]
    assert loss_diff < 1e-6
    assert weight_diff < 1e-5
    assert moved > 1e-3


@pytest.mark.slow
def test_pretrain_accumulation_of_4_x_8_trains_as_batch_32(tiny_model_dir, vocab_file, tmp_path):
    """`pretrain --batch-size 32 --gradient-accumulation-steps 4` against whole batches of
    32 on Tiny Shakespeare records, without dropout: every step's loss, each epoch's masked-LM
    and NSP losses and accuracies, and the weights equal. The records' slices of 8 hold
    unequal numbers of masked positions (checked below), so slices weighted by their
    share of the examples, as before 2026-12-08, train another step: the masked-LM
    loss is the batch's sum(w * loss) / sum(w), each slice's term weighs by its share
    of sum(w). Measured 2026-12-08: 1.0e-7 apart in a loss (relative: they are ~10,
    where float32 steps by 1e-6) and 1.2e-7 in a weight; weighted by examples, 3.3e-4
    and 8.1e-4. The bounds are those of the fine-tuning test above."""
    from bert_tf.data.pretraining import pretraining_dataset
    from bert_tf.io.checkpoint import read_checkpoint
    from tests.conftest import no_dropout_copy
    model = no_dropout_copy(tiny_model_dir, tmp_path / "model")
    # Tiny Shakespeare's short lines make short instances, with fewer masked positions.
    with open(data_path("tinyshakespeare", "input.txt"), encoding="utf-8") as f:
        (tmp_path / "text.txt").write_text("".join(f.readlines()[:400]), encoding="utf-8")
    records = str(tmp_path / "train.tfrecord")
    assert cli(["prepare-text", str(tmp_path / "text.txt"), "--out",
                str(tmp_path / "corpus.txt")]) == 0
    assert cli(["create-pretraining-data", "--input", str(tmp_path / "corpus.txt"), "--vocab",
                vocab_file, "--out", records, "--max-seq-length", "32",
                "--max-predictions-per-seq", "5", "--short-seq-prob", "0.5",
                "--dupe-factor", "4", "--quiet"]) == 0  # ~370 records: 6 steps in one pass
    # The first step's batch (epoch 0's data, seeded by the epoch): its slices of 8
    # hold different numbers of masked positions.
    _, _, w = next(iter(pretraining_dataset(records, 32, training=True, seed=0)))
    per_slice = w["mlm_logits"].numpy().reshape(4, -1).sum(axis=1)
    assert np.ptp(per_slice) > 0, per_slice
    runs = {}
    for n in ("1", "4"):
        out = tmp_path / f"n{n}"
        assert cli(["pretrain", "--init", model, "--train", records, "--out", str(out),
                    "--steps", "6", "--steps-per-epoch", "3", "--batch-size", "32",
                    "--learning-rate", "1e-3", "--warmup-steps", "2",
                    "--gradient-accumulation-steps", n, "--quiet"]) == 0
        runs[n] = (json.loads((out / "metrics.json").read_text())["history"],
                   read_checkpoint(str(out / "bert_model.ckpt")))
    (h1, w1), (h4, w4) = runs["1"], runs["4"]
    epoch_keys = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")
    assert all(len(h1[k]) == len(h4[k]) == 2 for k in epoch_keys)
    assert len(h1["step_loss"]) == len(h4["step_loss"]) == 6
    assert h4["step_learning_rate"] == h1["step_learning_rate"]
    # relative: the losses are ~10 here, where float32 steps by 1e-6
    loss_diff = max((np.abs(np.array(h4[k]) - np.array(h1[k])) / np.abs(h1[k])).max()
                    for k in ("step_loss", *epoch_keys))
    weight_diff = max(np.abs(w1[k] - w4[k]).max() for k in w1)
    start = read_checkpoint(str(tmp_path / "model" / "bert_model.ckpt"))
    moved = max(np.abs(w1[k] - start[k]).max() for k in start)
    report(f"pretrain --gradient-accumulation-steps 4 vs batch 32 (tiny, no dropout, 6 steps, "
           f"masked positions per slice of the first batch {per_slice.astype(int).tolist()}): "
           f"losses and accuracies max relative diff {loss_diff:.1e}, weights max |diff| "
           f"{weight_diff:.1e} (moved {moved:.1e})")
    assert loss_diff < 1e-6
    assert weight_diff < 1e-5
    assert moved > 1e-3
