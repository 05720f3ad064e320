"""A killed job resumes exactly: killed with SIGKILL between checkpoints (and, for
fine-tuning, after an epoch's dev evaluation and during the export), the rerun of
the same job ends with the weights, metrics and history of a run never killed."""
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bert_tf.io.checkpoint import read_checkpoint
from tests.conftest import DATA_DIR, data_path, report

JOB = """
import json, os, signal, sys
import keras
import bert_tf
from bert_tf.training import finetune, pretrain, squad

job, settings, kill_step, kill_where = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), \\
    sys.argv[4]
run, Config = {"finetune": (finetune.finetune, finetune.FinetuneConfig),
               "pretrain": (pretrain.pretrain, pretrain.PretrainConfig),
               "squad": (squad.squad, squad.SquadConfig)}[job]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if kill_where == "step" and int(self.model.optimizer.iterations.numpy()) == kill_step:
            die()

    def on_epoch_end(self, epoch, logs=None):  # after dev evaluation, before the checkpoint
        if kill_where == "dev" and epoch == 0:
            die()


if kill_where == "export":
    bert_tf.export.write_warmup_requests = lambda *args: die()
run(Config(**settings), callbacks=[Kill()])
"""


def _run(job: str, settings: dict, kill_step=0, kill_where="none"):
    return subprocess.run([sys.executable, "-c", JOB, job, json.dumps(settings), str(kill_step),
                           kill_where], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _metrics(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def _kill_and_resume(job, settings, where, step, out):
    """One kill point: the job killed there, then run again into the same `out`.
    Returns (the killed run, whether it had written metrics.json, the rerun)."""
    config = dict(settings, out=str(out))
    if where == "export":
        config["no_export"] = False
    killed = _run(job, config, step, where)
    finished = (out / "metrics.json").exists()
    return killed, finished, _run(job, config)


def check_resumes(job, settings, model_subdir, kills, tmp_path, start_dir, compare):
    """Runs `job` once whole, then once per (where, step) in `kills`: killed there, and
    run again; the weights and the metrics named by `compare` must be the same. Only
    the runs killed in their export export (`settings` may say `no_export`): the
    others' exports, seconds each, would not be compared. The runs are processes of
    their own, two at a time (two cores do them in little more than the time of one):
    each kill point's pair one after the other, the whole run beside them unless
    `kills` needs its metrics (a callable of them)."""
    whole = dict(settings, out=str(tmp_path / "whole"))
    with ThreadPoolExecutor(2) as pool:
        done = pool.submit(_run, job, whole)
        if callable(kills):  # kill points that depend on the run (its steps per epoch)
            done.result()
            kills = kills(_metrics(whole["out"]))
        pairs = [pool.submit(_kill_and_resume, job, settings, where, step,
                             tmp_path / f"{where}-{step}") for where, step in kills]
        done = done.result()
        pairs = [pair.result() for pair in pairs]
    assert done.returncode == 0, done.stderr[-3000:]
    want = _metrics(whole["out"])
    want_tensors = read_checkpoint(os.path.join(whole["out"], model_subdir, "bert_model.ckpt"))
    start = read_checkpoint(os.path.join(start_dir, "bert_model.ckpt"))
    name = "bert/encoder/layer_0/attention/self/query/kernel"
    assert np.abs(want_tensors[name] - start[name]).max() > 1e-4  # it did train
    for (where, step), (killed, finished, resumed) in zip(kills, pairs):
        out = tmp_path / f"{where}-{step}"
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert not finished
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "note: resuming at epoch" in resumed.stdout or where != "step", resumed.stdout
        got = _metrics(out)
        got_tensors = read_checkpoint(os.path.join(out, model_subdir, "bert_model.ckpt"))
        assert sorted(got_tensors) == sorted(want_tensors)
        diff = max(float(np.abs(got_tensors[k] - want_tensors[k]).max()) for k in want_tensors)
        report(f"{job} killed ({where}{f' at step {step}' if step else ''}) and resumed vs never "
               f"killed: max |diff| of the weights {diff:.1e}; "
               + ", ".join(f"{k} {got[k]} vs {want[k]}" for k in compare))
        assert diff <= 1e-6, where
        for key in compare:
            assert got[key] == want[key], key
        assert got["history"] == want["history"]  # the killed epoch's training loss too
        assert not (out / "backup").exists()


@pytest.mark.slow
def test_finetune_resumes(tiny_model_dir, tmp_path):
    settings = dict(task="sst2", model=tiny_model_dir, data_dir=DATA_DIR, train_limit=128,
                    epochs=2, batch_size=16, max_seq_length=32, learning_rate=5e-4,
                    checkpoint_every=5, seed=5, quiet=True, no_export=True)
    # 10 steps an epoch: killed in the second epoch 1 step after a checkpoint, after the
    # first epoch's dev evaluation (its last step checkpointed: the resume finishes the
    # epoch), and during the export (that run alone exports)
    check_resumes("finetune", settings, "model",
                  lambda whole: [("step", whole["steps_per_epoch"] + 6), ("dev", 0),
                                 ("export", 0)], tmp_path,
                  tiny_model_dir, ["dev_accuracy", "dev_f1"])


@pytest.mark.slow
def test_pretrain_resumes(tiny_model_dir, vocab_file, tmp_path):
    from bert_tf.data.pretraining import create_pretraining_data, prepare_text
    text = str(tmp_path / "corpus.txt")
    prepare_text([data_path("wikitext-2", "valid.txt")], text)
    records = str(tmp_path / "train.tfrecord")
    create_pretraining_data([text], vocab_file, records, max_seq_length=32, dupe_factor=1,
                            seed=2, progress=False)
    settings = dict(init=tiny_model_dir, train=records, steps=24, steps_per_epoch=10,
                    batch_size=16, learning_rate=1e-3, warmup_steps=2, checkpoint_every=4,
                    seed=3, quiet=True)
    check_resumes("pretrain", settings, "", [("step", 17)], tmp_path, tiny_model_dir,
                  ["train_loss", "train_mlm_accuracy"])


@pytest.mark.slow
def test_squad_resumes(tiny_model_dir, tmp_path):
    dev = data_path("SQuAD1.1", "dev-v1.1.json")
    settings = dict(model=tiny_model_dir, train=dev, train_articles="2:3", predict=dev,
                    predict_articles="8:9", max_seq_length=128, doc_stride=48, epochs=2,
                    batch_size=16, learning_rate=1e-3, checkpoint_every=4, seed=1, quiet=True,
                    no_export=True)
    check_resumes("squad", settings, "model", [("step", 11)], tmp_path, tiny_model_dir,
                  ["exact_match", "f1"])


class _Killed(Exception):
    pass


def _tiny_job():
    """A tiny classifier's job for `fit_resumable`: `(epoch_data, fresh, dev_eval)`, 2
    epochs of 4 batches of 8 made-up examples; `fresh()` builds and compiles the
    classifier (the same initial weights each time), `dev_eval()` a fine-tuning dev
    evaluation on the training examples."""
    import keras
    import bert_tf
    from bert_tf.config import BertConfig
    from bert_tf.data.glue import make_dataset, training_epochs
    from bert_tf.training.finetune import DevEvaluation

    rng = np.random.default_rng(0)
    lengths = rng.integers(9, 17, 32)   # one length bucket: 4 full batches of 8
    mask = (np.arange(16)[None, :] < lengths[:, None]).astype("int32")
    features = {"input_word_ids": rng.integers(5, 100, (32, 16)).astype("int32") * mask,
                "input_mask": mask, "input_type_ids": 0 * mask}
    labels = (lengths > 12).astype("int32")
    steps, epoch_data = training_epochs(features, labels, 8, seed=2)
    assert steps == 4

    def fresh():
        keras.utils.set_random_seed(4)
        clf = bert_tf.BertClassifier(
            bert_tf.BertEncoder.from_bert_config(BertConfig.preset("tiny", vocab_size=100)), 2)
        # eager: 15 steps of a tiny model run faster than tracing three train functions
        clf.compile(learning_rate=1e-3, total_steps=8, run_eagerly=True)
        return clf

    def dev_eval():
        return DevEvaluation(make_dataset(features, labels, 8, training=False), labels)
    return epoch_data, fresh, dev_eval


def test_resume_continues_at_the_batch_and_step_it_stopped(tmp_path, capsys):
    """The quick (not slow) resume check: a tiny classifier trained by `fit_resumable`
    for 2 epochs of 4 batches, stopped after its 7th step (the last checkpoint after
    the 6th: epoch 2, 2 of its batches), then resumed in a freshly built model, ends
    with the weights and optimizer step count of a run never stopped. Catches a resume
    that restarts the epoch or skips the wrong number of batches, or that restores the
    weights but not the optimizer's iterations (the schedule would restart)."""
    import keras
    import tensorflow as tf
    from bert_tf.training.resume import fit_resumable

    epoch_data, fresh, _ = _tiny_job()

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 7:
                raise _Killed

    whole = fresh()
    start = whole.get_weights()
    whole_history, ran = fit_resumable(whole, epoch_data, 2, str(tmp_path / "whole"), 2,
                                       verbose=0)
    assert ran == 8
    stopped = fresh()
    with pytest.raises(_Killed):
        fit_resumable(stopped, epoch_data, 2, str(tmp_path / "run"), 2, [Stop()], verbose=0)
    capsys.readouterr()
    resumed = fresh()
    history, ran = fit_resumable(resumed, epoch_data, 2, str(tmp_path / "run"), 2, verbose=0)
    assert "note: resuming at epoch 2, after 2 of its batches" in capsys.readouterr().out
    assert ran == 2 and int(resumed.optimizer.iterations.numpy()) == 8
    assert len(history["loss"]) == 2 and history["loss"][0] == whole_history["loss"][0]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(resumed.get_weights(),
                                                          whole.get_weights()))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(whole.get_weights(), start))
    report(f"quick resume (tiny classifier, stopped after step 7 of 8): max |diff| of the "
           f"weights vs never stopped {diff:.1e} (training moved them by up to {moved:.1e})")
    assert moved > 1e-3 and diff <= 1e-6
    assert float(tf.convert_to_tensor(resumed.optimizer.learning_rate)) == 0.0  # schedule's end


@pytest.mark.parametrize("stop_after", [4, 3], ids=["during-dev-evaluation", "mid-epoch"])
def test_resumed_epoch_has_the_history_of_a_run_never_stopped(tmp_path, capsys, stop_after):
    """Stopped in epoch 1 of 2 (4 batches, a checkpoint every 2) and resumed in a fresh
    model: the history (training loss and accuracy, dev metrics) and the weights equal
    those of a run never stopped.

    `during-dev-evaluation`: stopped in the dev evaluation after the epoch's 4th batch,
    whose checkpoint says "epoch 1, 4 of its batches done". Before 2026-12-07 (commit
    1691735) every rerun said "resuming at epoch 1, after 4 of its batches" and failed
    with StopIteration (it trained an empty rest of the epoch). `mid-epoch`: stopped
    after the 3rd batch (resumed after the 2nd); before 2026-12-07 the resumed epoch's
    training loss and accuracy averaged only the batches after the resume."""
    import keras
    from bert_tf.training.resume import fit_resumable

    epoch_data, fresh, dev_eval = _tiny_job()

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if stop_after == 3 and int(self.model.optimizer.iterations.numpy()) == 3:
                raise _Killed

        def on_epoch_end(self, epoch, logs=None):  # after the dev evaluation, before the save
            if stop_after == 4 and epoch == 0:
                raise _Killed

    whole = fresh()
    want, _ = fit_resumable(whole, epoch_data, 2, str(tmp_path / "whole"), 2, [dev_eval()],
                            verbose=0)
    with pytest.raises(_Killed):
        fit_resumable(fresh(), epoch_data, 2, str(tmp_path / "run"), 2, [dev_eval(), Stop()],
                      verbose=0)
    capsys.readouterr()
    resumed = fresh()
    got, ran = fit_resumable(resumed, epoch_data, 2, str(tmp_path / "run"), 2, [dev_eval()],
                             verbose=0)
    done = 4 if stop_after == 4 else 2
    assert f"note: resuming at epoch 1, after {done} of its batches" in capsys.readouterr().out
    assert ran == 8 - done and int(resumed.optimizer.iterations.numpy()) == 8
    report(f"resumed after {done} of epoch 1's 4 batches: training loss of epoch 1 "
           f"{got['loss'][0]!r} vs never stopped {want['loss'][0]!r}")
    assert sorted(want) == ["accuracy", "dev_accuracy", "dev_f1", "loss", "step_learning_rate",
                            "step_loss"]
    assert got == want
    diff = max(float(np.abs(a - b).max()) for a, b in zip(resumed.get_weights(),
                                                          whole.get_weights()))
    assert diff <= 1e-6


def test_pretrain_stopped_in_its_evaluation_resumes_with_that_epochs_end(
        tiny_model_dir, vocab_file, tmp_path, capsys):
    """`pretrain --eval` stopped during epoch 1's evaluation (its checkpoint after the
    epoch's 2nd and last batch) resumes with epoch 1's end, the evaluation and its
    TensorBoard logs included, and ends with the history and weights of a run never
    stopped. Before 2026-12-07 (commit 1691735) the rerun trained an empty rest of
    the epoch and failed. Before 2026-12-08 (commit f188456) it failed now and then
    (after other tests in the same process): the run never stopped trained on other
    batches, its order of the few records depending on how far Keras' first look at
    the data had prefetched (test_pretraining's
    test_training_batches_do_not_depend_on_earlier_iterations)."""
    import keras
    from bert_tf.data.pretraining import create_pretraining_data
    from bert_tf.training.pretrain import PretrainConfig, pretrain
    from tests.test_errors import CORPUS
    (tmp_path / "corpus.txt").write_text(CORPUS)
    records = str(tmp_path / "train.tfrecord")
    create_pretraining_data([str(tmp_path / "corpus.txt")], vocab_file, records,
                            max_seq_length=32, max_predictions=4, dupe_factor=2,
                            progress=False)
    settings = dict(init=tiny_model_dir, train=records, eval=records, steps=4,
                    steps_per_epoch=2, batch_size=4, learning_rate=1e-3, warmup_steps=1,
                    checkpoint_every=2, seed=3, quiet=True)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after the evaluation, before the save
            if epoch == 0:
                raise _Killed

    want = pretrain(PretrainConfig(out=str(tmp_path / "whole"), **settings))
    with pytest.raises(_Killed):
        pretrain(PretrainConfig(out=str(tmp_path / "run"), **settings), callbacks=[Stop()])
    capsys.readouterr()
    got = pretrain(PretrainConfig(out=str(tmp_path / "run"), **settings))
    assert "note: resuming at epoch 1, after 2 of its batches" in capsys.readouterr().out
    assert len(want["history"]["val_loss"]) == 2 and got["history"] == want["history"]
    mine = read_checkpoint(str(tmp_path / "run" / "bert_model.ckpt"))
    theirs = read_checkpoint(str(tmp_path / "whole" / "bert_model.ckpt"))
    assert max(float(np.abs(mine[k] - theirs[k]).max()) for k in theirs) <= 1e-6
    assert len(os.listdir(tmp_path / "run" / "logs" / "validation")) >= 1
