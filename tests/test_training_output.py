"""What a training job leaves and says besides its model: the per-step history behind
`training_curve.png`, the examples a second without the first step, the lines of the
long steps (dev evaluation, exports, conversion), and the outputs that need an extra
(matplotlib's plot, TF Serving's warm-up requests) left out with a note when it is
not installed."""
import os
import re
import sys

import numpy as np
import pytest

from tests.conftest import DATA_DIR, report

PNG = b"\x89PNG\r\n\x1a\n"


def _tiny_finetune(model_dir, out, **settings):
    """SST-2 on a tiny model: 32 examples trimmed to 8 tokens, so all in one length
    bucket: 4 full batches of 8 an epoch."""
    from bert_tf.training.finetune import FinetuneConfig
    return FinetuneConfig(**{**dict(task="sst2", model=model_dir, data_dir=DATA_DIR, out=str(out),
                                    train_limit=32, batch_size=8, max_seq_length=8,
                                    learning_rate=1e-3, seed=3, quiet=True), **settings})


def _block(monkeypatch, *packages):
    """Makes `packages` (and their loaded modules) fail to import, as if not installed,
    and lets `bert_tf.extras.optional` say its notes again."""
    from bert_tf import extras
    for name in [n for n in sys.modules if n.split(".")[0] in packages] + list(packages):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(extras, "_said", set())


def test_history_has_every_steps_loss_and_learning_rate(tiny_model_dir, tmp_path, capsys):
    """A 2-epoch run of 4 steps an epoch records per step the loss of the step's batch
    and the learning rate the step used. The rate is the schedule's at the step before
    (a rate read after the step, one step late, differs at every step of the warm-up
    and decay); the loss is the batch's own, recovered from Keras' running mean (the
    logs' `loss`, which a record of the logs would repeat); the epoch's loss is the mean
    of its steps'. examples/s times the 7 steps after the first (8 × 8 examples with
    the first step's tracing before 2026-12-07). The dev evaluation says when it starts
    and ends, with the metrics the history holds."""
    import keras
    from bert_tf.optimizers import WarmupLinearDecay
    from bert_tf.training.finetune import finetune

    class RunningMean(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            means.append(float(logs["loss"]))

    means = []
    metrics = finetune(_tiny_finetune(tiny_model_dir, tmp_path / "run", epochs=2,
                                      warmup_proportion=0.25, no_export=True),
                       callbacks=[RunningMean()])
    history = metrics["history"]
    assert metrics["steps_per_epoch"] == 4 and len(history["loss"]) == 2
    schedule = WarmupLinearDecay(1e-3, total_steps=8, warmup_steps=2)
    assert history["step_learning_rate"] == [float(schedule(step)) for step in range(8)]
    assert history["step_learning_rate"][:3] == pytest.approx([0.0, 5e-4, 1e-3])
    means = np.reshape(means, (2, 4))
    batches = means * np.arange(1, 5) - np.pad(means, ((0, 0), (1, 0)))[:, :4] * np.arange(4)
    np.testing.assert_allclose(history["step_loss"], batches.ravel(), rtol=1e-5)
    assert len(set(history["step_loss"])) == 8
    np.testing.assert_allclose(history["loss"], np.mean(batches, axis=1), rtol=1e-6)
    assert (tmp_path / "run" / "training_curve.png").read_bytes().startswith(PNG)
    assert (metrics["timed_steps"], metrics["timed_examples"]) == (7, 56)
    assert metrics["train_examples_per_second"] == pytest.approx(56 / metrics["timed_seconds"],
                                                                 rel=0.01)
    report(f"tiny finetune, 2 × 4 steps of 8: {metrics['train_examples_per_second']} examples/s "
           f"over steps 2-8 ({metrics['timed_seconds']} s), whole training "
           f"{metrics['train_wall_seconds']} s")
    out = capsys.readouterr().out.splitlines()
    starts = [i for i, line in enumerate(out)
              if line == "dev evaluation: 872 examples in 109 batches ..."]
    ends = [i for i, line in enumerate(out) if re.fullmatch(
        r"dev evaluation: \d+\.\d s - dev_accuracy: [\d.]+ - dev_f1: [\d.]+", line)]
    assert len(starts) == len(ends) == 2 and starts[0] < ends[0] < starts[1] < ends[1], out
    assert out[ends[1]].endswith(f"dev_accuracy: {history['dev_accuracy'][1]:.4f} - "
                                 f"dev_f1: {history['dev_f1'][1]:.4f}")


def test_run_without_matplotlib_says_so_and_the_export_says_what_it_does(
        tiny_model_dir, tmp_path, capsys, monkeypatch):
    """Without matplotlib a run completes, writes no training_curve.png and says why in
    one note (before 2026-12-07 `import bert_tf.training.finetune` failed). The export
    (a stand-in here: `test_export_without_tensorflow_serving_api` exports) says when
    it starts and ends, after the dev evaluation."""
    from bert_tf.training import run_dir
    _block(monkeypatch, "matplotlib")
    monkeypatch.setattr(run_dir, "export_model", lambda model, base, **kwargs: {"serving": base})
    from bert_tf.training.finetune import finetune
    out = tmp_path / "run"
    metrics = finetune(_tiny_finetune(tiny_model_dir, out, epochs=1))
    assert sorted(os.listdir(out)) == ["logs", "metrics.json", "model", "run.json"]
    assert metrics["exports"] == {"serving": str(out / "export")}
    captured = capsys.readouterr()
    assert "note: training_curve.png not written: it needs matplotlib (pip install " \
           "'bert-tf[plots]')" in captured.err.splitlines()
    lines = captured.out.splitlines()
    order = [next(i for i, line in enumerate(lines) if re.fullmatch(pattern, line))
             for pattern in (r"dev evaluation: 872 examples in 109 batches \.\.\.",
                             r"dev evaluation: \d+\.\d s - dev_accuracy: .*",
                             re.escape(f"export: encoder, preprocessor and serving SavedModels "
                                       f"to {out / 'export'} ..."),
                             r"export: \d+\.\d s")]
    assert order == sorted(order), lines


def test_warmup_requests_need_tensorflow_serving_api(tmp_path, capsys, monkeypatch):
    """Without tensorflow-serving-api the warm-up requests are left out with one note
    (before 2026-12-07 `bert_tf.export` imported it with the module)."""
    from bert_tf.export.savedmodel import write_warmup_requests
    _block(monkeypatch, "tensorflow_serving")
    assert write_warmup_requests(str(tmp_path), {"text": ["a fine film", "a dull one"]}) is None
    assert os.listdir(tmp_path) == []
    assert capsys.readouterr().err.splitlines() == [
        "note: assets.extra/tf_serving_warmup_requests not written: it needs "
        "tensorflow-serving-api (pip install 'bert-tf[serving]')"]


@pytest.mark.slow
def test_export_without_tensorflow_serving_api(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """Without tensorflow-serving-api an export writes its three SavedModels, without
    warm-up requests, and they load and answer as the model does."""
    import tensorflow as tf
    import bert_tf
    _block(monkeypatch, "tensorflow_serving")
    from bert_tf.export import export_model
    encoder = bert_tf.load_encoder(tiny_model_dir)
    preprocessor = bert_tf.load_preprocessor(tiny_model_dir, seq_length=16)
    paths = export_model(encoder, str(tmp_path / "export"), preprocessor=preprocessor)
    assert not os.path.exists(os.path.join(paths["serving"], "assets.extra"))
    assert "tf_serving_warmup_requests not written" in capsys.readouterr().err
    texts = tf.constant(["a fine film", "a dull one"])
    served = tf.saved_model.load(paths["serving"]).signatures["serving_default"](text=texts)
    inputs = tf.saved_model.load(paths["preprocessor"])(texts)
    pooled = tf.saved_model.load(paths["encoder"])(inputs)["pooled_output"]
    np.testing.assert_allclose(served["pooled_output"].numpy(), pooled.numpy(), atol=1e-5)
    np.testing.assert_allclose(pooled.numpy(), encoder(inputs)["pooled_output"].numpy(),
                               atol=1e-5)


def test_convert_says_what_it_reads_and_writes(tiny_model_dir, tmp_path, capsys):
    """`convert --to google` names the checkpoint it reads, and the tensors it writes
    and where, before it writes them."""
    from bert_tf.io.checkpoint import read_checkpoint
    from bert_tf.models.convert import convert_to_google
    out = convert_to_google(tiny_model_dir, str(tmp_path / "google"))
    written = read_checkpoint(os.path.join(out, "bert_model.ckpt"))
    assert capsys.readouterr().out.splitlines() == [
        f"convert: reading {os.path.join(tiny_model_dir, 'bert_model.ckpt')}",
        f"convert: writing {len(written)} tensors as Google's layout to {out}"]
