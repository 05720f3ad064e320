r"""Masked-LM + next-sentence pre-training of a `BertPretrainer` with Keras `fit`.

The model is the encoder with BERT's two heads (`bert_tf.models.pretrainer`): the MLM head on
the masked positions (weights tied to the word embeddings) and the NSP head on
`pooled_output`, which is where the pooler's weights are trained. Loss: the MLM
cross-entropy averaged over the real masked positions (BERT's
`sum(w * loss) / sum(w)`) plus the NSP cross-entropy. With `micro_batches` N
(`--gradient-accumulation-steps N`) each batch is computed in N slices whose
gradients add up to the whole batch's (`bert_tf.training.micro_batch`).

With `no_nsp` (`bert-tf pretrain --no-nsp`, RoBERTa's and BERT's "No NSP" ablation): the
MLM loss alone, on the same records (their NSP labels are ignored), steps and seed, so
that two runs differ only in NSP. Nothing then trains the pooler: it is frozen at its
initialisation (drawn from `seed`, as in the NSP run; from `init` when given), the model
dir holds that untrained pooler (`bert/pooler/dense/...`) and no NSP head, and the
metrics have no `nsp_*` keys.

`out` becomes a model dir with both heads (`cls/predictions/...`,
`cls/seq_relationship/...`), so `finetune`, `export` (the encoder's `.mlm`) and
`convert --to google` take it as it is. The same folder keeps the run's state:
`run.json`, `backup/` (resume after a kill), `logs/` (TensorBoard),
`metrics.json` (written last) and `pretraining_curves.png`.

Example (a few steps of BERT-tiny on records made from a tiny text: one sentence
per line, a blank line between documents):
    >>> import os
    >>> from bert_tf.data.pretraining import create_pretraining_data
    >>> documents = "The cat sat on the mat.\nIt purred.\n\nA storm came.\nThe river rose.\n\n"
    >>> with open(f"{tmp}/corpus.txt", "w") as f:
    ...     _ = f.write(documents * 20)    # 40 documents of two sentences
    >>> create_pretraining_data([f"{tmp}/corpus.txt"], vocab_file, f"{tmp}/train.tfrecord",
    ...                         max_seq_length=32, max_predictions=5, progress=False)["instances"]
    622
    >>> metrics = pretrain(PretrainConfig(config="tiny", vocab=vocab_file,
    ...                                   train=f"{tmp}/train.tfrecord", out=f"{tmp}/bert-tiny",
    ...                                   steps=4, batch_size=8, quiet=True))
    pre-training 2 layers × 128: 4 steps of 8 (1 × 4) on 1 replica(s) (OneDeviceStrategy)
    ...
    >>> metrics["steps"], len(metrics["history"]["loss"])
    (4, 1)
    >>> sorted(os.listdir(f"{tmp}/bert-tiny"))    # a model dir (both heads) and the run's files
    ['bert_config.json', 'bert_model.ckpt.data-00000-of-00001', 'bert_model.ckpt.index',
     'bert_tf.json', 'logs', 'metrics.json', 'pretraining_curves.png', 'run.json', 'vocab.txt']
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.config import BertConfig, load_config
from bert_tf.data.pretraining import MaskingVocab, check_records, pretraining_dataset
from bert_tf.errors import ConfigError, DataError
from bert_tf.io.checkpoint import CKPT_NAME, META_NAME, check_vocab, read_checkpoint, \
    read_meta, vocab_path, write_model_files
from bert_tf.models import BertEncoder, BertPretrainer
from bert_tf.models.loading import check_model_dir
from bert_tf.optimizers import bert_optimizer
from bert_tf.preprocessing.tokenizer import load_vocab
from bert_tf.training.curves import plot_curves
from bert_tf.training.micro_batch import use_micro_batches
from bert_tf.training.progress import LongStep, StepTimer
from bert_tf.training.resume import TensorBoard, TrainingState, fit_resumable
from bert_tf.training.run_dir import RunDir
from bert_tf.training.strategy import RunOptions, check_seed, fit_under_multi_worker, \
    prepare_training


# What a run writes besides `RunDir`'s files (a model dir's files and the curves):
# `--overwrite` replaces these and no others.
OUTPUTS = ("bert_config.json", f"{CKPT_NAME}.data-00000-of-00001", f"{CKPT_NAME}.index",
           META_NAME, "vocab.txt", "pretraining_curves.png")


@dataclasses.dataclass(kw_only=True)
class PretrainConfig(RunOptions):
    """A pre-training run (plus `RunOptions`).

    Attributes:
        train: TFRecord file pattern (`create_pretraining_data`'s records).
        out: the model dir to write (it also holds the run's state).
        config: a preset (tiny, mini, small, medium, base, large) or a CONFIG.json,
            for a model drawn at random; or
        init: a model dir to start from instead (heads it lacks are drawn at random).
        vocab: vocab.txt (default with `init`: the model's own).
        cased: with `config`: do not lower-case.
        eval: TFRecord file pattern, evaluated after every epoch.
        steps, steps_per_epoch (between evaluations and log lines), batch_size
        (global), learning_rate, warmup_steps, optimizer (`adamw` or `lamb`): the recipe.
        dynamic_masking: draw new masks every epoch in tf.data (the records' masks
            are undone); masked_lm_prob is its masking rate.
        seed: seeds the initialisation and the data order.
        no_nsp: masked-LM only: no NSP head or loss, the pooler frozen (module docstring).
    """
    train: str
    out: str
    config: str | None = None
    init: str | None = None
    vocab: str | None = None
    cased: bool = False
    eval: str | None = None
    steps: int = 10_000
    steps_per_epoch: int = 1000
    batch_size: int = 128
    learning_rate: float = 1e-4
    warmup_steps: int = 1000
    optimizer: str = "adamw"
    dynamic_masking: bool = False
    masked_lm_prob: float = 0.15
    seed: int = 0
    no_nsp: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_seed(self.seed)

    def run_args(self) -> dict:
        """The settings that define a run (a resumed run must repeat them)."""
        keys = ("config", "init", "vocab", "train", "eval", "steps", "batch_size",
                "learning_rate", "warmup_steps", "optimizer", "mixed_precision",
                "dynamic_masking", "masked_lm_prob", "seed", "steps_per_epoch", "cased",
                "no_nsp")
        return {"command": "pretrain", **{k: getattr(self, k) for k in keys}}


def resolve_model(config: PretrainConfig) -> tuple[BertConfig, str, str | None, bool]:
    """(BERT config, vocab file, model dir to start from or None, do_lower_case)."""
    if bool(config.config) == bool(config.init):
        raise ConfigError("pass exactly one of config (a preset or CONFIG.json) and init")
    if config.init:
        check_model_dir(config.init)
        return (load_config(config.init), config.vocab or vocab_path(config.init), config.init,
                read_meta(config.init)["do_lower_case"])
    if not config.vocab:
        raise ConfigError(f"config {config.config} needs a vocab")
    vocab_size = len(load_vocab(config.vocab))
    if os.path.exists(config.config):
        bert_config = BertConfig.from_json_file(config.config)
        if bert_config.vocab_size != vocab_size:
            raise ConfigError(f"{config.config}: vocab_size {bert_config.vocab_size}, but "
                              f"{config.vocab} has {vocab_size} tokens")
    else:
        bert_config = BertConfig.preset(config.config, vocab_size=vocab_size)
    return bert_config, config.vocab, None, not config.cased


def build(config: BertConfig, init_dir: str | None, seed: int,
          next_sentence: bool = True) -> BertPretrainer:
    """The pre-training model; the checkpoint of `init_dir` initialises what it
    names, the rest (e.g. heads missing from a fine-tuning checkpoint) is drawn
    from `seed`. Without `next_sentence`: no NSP head, and the pooler, which
    nothing else trains, is frozen."""
    keras.utils.set_random_seed(seed)
    model = BertPretrainer(BertEncoder.from_bert_config(config), next_sentence=next_sentence)
    model.encoder.get_layer("pooler").trainable = next_sentence
    if init_dir is not None:
        prefix = os.path.join(init_dir, CKPT_NAME)
        model.assign_checkpoint(read_checkpoint(prefix), prefix,
                                optional=lambda name: name.startswith("cls/"))
    return model


# The curves' panels of per-epoch values besides the loss: train and eval accuracy.
ACCURACY_PANELS = {title: ((key, "train"), (f"val_{key}", "eval")) for key, title in
                   (("mlm_accuracy", "masked-LM accuracy"),
                    ("nsp_accuracy", "next-sentence accuracy"))}


class EvaluationLines(keras.callbacks.Callback):
    """A line when `fit`'s evaluation of the eval records starts, one when it ends
    (Keras shows no progress bar for it)."""

    def __init__(self, batches: int, newline: bool):
        super().__init__()
        self.batches, self.newline = batches, newline

    def on_test_begin(self, logs=None):
        self._step = LongStep("evaluation", f"{self.batches} batches of the eval records",
                              newline=self.newline)

    def on_test_end(self, logs=None):
        self._step.done(" - ".join(f"{rename(k)}: {v:.4f}" for k, v in (logs or {}).items()))


def majority_baseline(eval_ds) -> float:
    """Accuracy of always predicting the most frequent masked token of the eval set."""
    labels = []
    for _, y, w in eval_ds:
        labels.append(y["mlm_logits"].numpy()[w["mlm_logits"].numpy() > 0])
    labels = np.concatenate(labels)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def without_nsp(ds: tf.data.Dataset) -> tf.data.Dataset:
    """`pretraining_dataset`'s batches without the NSP labels and weights."""
    return ds.map(lambda x, y, w: (x, {"mlm_logits": y["mlm_logits"]},
                                   {"mlm_logits": w["mlm_logits"]}))


def pretrain(config: PretrainConfig, callbacks=()) -> dict:
    """Pre-trains; returns the metrics (also in `OUT/metrics.json`, written last). A
    rerun of the same config resumes a killed run where it stopped. `callbacks`: more
    Keras callbacks for `fit`."""
    run = RunDir(config.out, config.run_args(), config.overwrite, config.multi_worker, OUTPUTS)
    bert_config, vocab_file, init_dir, lower_case = resolve_model(config)
    check_vocab(vocab_file, bert_config)  # as write_model_files will, after training
    if config.steps < 1 or config.batch_size < 1:
        raise ConfigError("steps and batch_size must be positive")
    state = run.check()
    strategy = prepare_training(config, seed=None)  # build() seeds the model's weights

    per_epoch = min(config.steps_per_epoch, config.steps)
    epochs = -(-config.steps // per_epoch)
    vocab = MaskingVocab.from_file(vocab_file)
    backup = run.backup
    check_records(config.train, bert_config)

    def epoch_data(epoch: int):
        """Epoch `epoch`'s batches, the same whenever asked (seeded by the epoch)."""
        ds = pretraining_dataset(config.train, config.batch_size, training=True,
                                 seed=config.seed + epoch, dynamic_masking=config.dynamic_masking,
                                 vocab=vocab, masked_lm_prob=config.masked_lm_prob)
        if config.no_nsp:
            ds = without_nsp(ds)
        return ds.take(per_epoch).apply(tf.data.experimental.assert_cardinality(per_epoch))

    eval_ds = None
    if config.eval:
        check_records(config.eval, bert_config)
        eval_ds = pretraining_dataset(config.eval, config.batch_size, training=False)
        if config.no_nsp:
            eval_ds = without_nsp(eval_ds)
        # a known size keeps Keras from warning that validation "ran out of data"
        eval_ds = eval_ds.apply(tf.data.experimental.assert_cardinality(
            sum(1 for _ in eval_ds)))
    run.start(state)

    with strategy.scope():
        model = build(bert_config, init_dir, config.seed, next_sentence=not config.no_nsp)
        heads = ("mlm_logits",) if config.no_nsp else ("mlm_logits", "nsp_logits")
        losses = {"mlm_logits": keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, reduction="mean_with_sample_weight"),
                  "nsp_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
        model.compile(
            optimizer=bert_optimizer(config.learning_rate, per_epoch * epochs, config.warmup_steps,
                                     name=config.optimizer),
            loss={k: losses[k] for k in heads},
            weighted_metrics={k: [keras.metrics.SparseCategoricalAccuracy("accuracy")]
                              for k in heads},
            jit_compile=config.jit_compile)
    # Each slice's masked-LM loss counts by its share of the batch's masked positions.
    use_micro_batches(model, config.micro_batches)
    fit_under_multi_worker(model, strategy)
    print(f"pre-training {bert_config.num_hidden_layers} layers × {bert_config.hidden_size}"
          f"{' (masked-LM only, no NSP)' if config.no_nsp else ''}: "
          f"{config.steps} steps of {config.batch_size} ({epochs} × {per_epoch}) on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")
    timer = StepTimer()
    callbacks = [TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50), timer,
                 *callbacks]
    if eval_ds is not None:
        callbacks.append(EvaluationLines(int(eval_ds.cardinality()), newline=not config.quiet))
    start = time.time()
    try:
        history, _ = fit_resumable(model, epoch_data, epochs, backup,
                                   config.checkpoint_every, callbacks,
                                   verbose=config.verbose, validation_data=eval_ds)
    except tf.errors.DataLossError as e:  # changed since the check at the start
        files = " or ".join(p for p in (config.train, config.eval) if p)
        raise DataError(f"{files}: a record is corrupted or truncated "
                        f"({e.message.strip().splitlines()[0]})") from None
    wall = time.time() - start
    hist = {rename(k): v for k, v in history.items()}
    if config.no_nsp:  # one output, whose name Keras leaves out; its loss is the whole loss
        hist = {{"accuracy": "mlm_accuracy", "val_accuracy": "val_mlm_accuracy"}.get(k, k): v
                for k, v in hist.items()}
        hist.update({f"{p}mlm_loss": hist[f"{p}loss"] for p in ("", "val_") if f"{p}loss" in hist})
    if not run.chief:
        TrainingState(backup, model).remove()
        run.finish_worker()
        return hist
    metrics = {"steps": per_epoch * epochs, "batch_size": config.batch_size,
               "train_wall_seconds": round(wall, 1),
               # this process's steps after its first (the train function's tracing), not
               # counting the evaluations: a resumed run times only the rest
               "examples_per_second": timer.per_second(), **timer.summary(),
               "history": hist}
    for key in ("loss", "mlm_accuracy", "nsp_accuracy", "mlm_loss", "nsp_loss"):
        for prefix, name in (("", "train"), ("val_", "eval")):
            if prefix + key in hist:
                metrics[f"{name}_{key}"] = hist[prefix + key][-1]
    if eval_ds is not None:
        metrics["eval_most_frequent_token_accuracy"] = majority_baseline(eval_ds)
    write_model_files(run.path, bert_config, vocab_file, model.checkpoint_tensors(),
                      {"do_lower_case": lower_case,
                       "source": f"bert-tf pretrain ({config.config or config.init})"})
    if hist.get("loss"):
        plot_curves(hist, per_epoch, run.file("pretraining_curves.png"), ACCURACY_PANELS)
    return run.finish(metrics, TrainingState(backup, model))


def rename(key: str) -> str:
    """Keras' `mlm_logits_accuracy` -> `mlm_accuracy` (and the `val_` forms)."""
    return key.replace("mlm_logits_", "mlm_").replace("nsp_logits_", "nsp_")
