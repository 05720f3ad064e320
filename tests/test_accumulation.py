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


def test_pretrain_says_why_it_takes_no_accumulation(tmp_path):
    """The masked-LM loss is averaged over the whole batch's masked positions: a slice
    weighted by its share of the examples would train a different step, so pretrain
    refuses, naming the flag and the reason."""
    from bert_tf.training.pretrain import PretrainConfig
    with pytest.raises(ConfigError, match=r"--gradient-accumulation-steps.*masked positions"):
        PretrainConfig(train="x.tfrecord", out=str(tmp_path / "o"), config="tiny",
                       micro_batches=2)


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
