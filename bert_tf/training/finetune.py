"""Fine-tuning a `BertClassifier` with Keras `fit` under `tf.distribute`.

Flow: TSV -> `Examples` -> in-graph tokenisation (`bert_tf.data.glue.encode`) ->
bucketed `tf.data` batches -> encoder -> pooling -> dropout -> dense -> loss.
The run dir receives the fine-tuned model dir, metrics, TensorBoard logs, a
training-curve PNG and the three SavedModel exports. Named entities (`ner`, `wnut17`)
train a `BertTokenClassifier` on CoNLL files the same way (`finetune_tagger`,
`bert_tf.training.tagging`), scored by entity-level precision, recall and F1.

Example (a tiny run: 64 SST-2 examples; `model_dir` is a model dir such as
"saved_models/minilm", `data_dir` the folder holding `SST-2/`):
    >>> import os
    >>> metrics = finetune(FinetuneConfig(task="sst2", model=model_dir, data_dir=data_dir,
    ...                                   out=f"{tmp}/sst2", train_limit=64, max_seq_length=64,
    ...                                   no_export=True, quiet=True))
    sst2 recipe: 1 epoch(s) at learning rate 0.0001 (epochs and learning_rate from ...
    sst2: 64 training examples, 872 dev, labels ['0', '1']; ...
    >>> metrics["train_examples"], metrics["dev_examples"], len(metrics["history"]["loss"])
    (64, 872, 1)
    >>> metrics["dev_accuracy"] == metrics["history"]["dev_accuracy"][-1]   # the last epoch's
    True
    >>> len(metrics["history"]["step_loss"]) == metrics["steps_per_epoch"]   # and every step's
    True
    >>> sorted(os.listdir(f"{tmp}/sst2"))     # without no_export: export/ too
    ['logs', 'metrics.json', 'model', 'run.json', 'training_curve.png']
"""
from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.choices import DEFAULT_LORA_TARGETS, LORA_TARGETS, TASKS
from bert_tf.data.glue import DataError, Examples, encode, glue_files, label_map, make_dataset, \
    read_task, read_tsv, training_epochs
from bert_tf.errors import ConfigError
from bert_tf.layers import STRATEGIES as POOLINGS
from bert_tf.data.conll import tag_names
from bert_tf.models import BertClassifier, BertTokenClassifier, load_encoder, load_preprocessor
from bert_tf.models.classifier import PROBLEMS
from bert_tf.models.loading import check_model_dir
from bert_tf.optimizers import bert_optimizer
from bert_tf.training.metrics import PLOTTED, dev_metrics
from bert_tf.training.curves import plot_curves
from bert_tf.training.entities import entity_scores
from bert_tf.training.micro_batch import use_micro_batches
from bert_tf.training.progress import LongStep, StepTimer
from bert_tf.training.resume import TensorBoard, TrainingState, fit_resumable
from bert_tf.training.run_dir import RunDir
from bert_tf.training.strategy import RunOptions, check_seed, fit_under_multi_worker, \
    prepare_training
from bert_tf.training.tagging import ENTITY_METRICS, DevEntities, limit, read_tagged, \
    tagging_epochs

# What a run writes besides `RunDir`'s files: `--overwrite` replaces these and no others.
OUTPUTS = ("model", "training_curve.png")

# The settings of `task="tsv"` only (the GLUE tasks read their files from `data_dir`);
# `ner` takes `train`, `dev` and `tag_column` (CoNLL files), `wnut17` only `tag_column`.
TSV_FIELDS = ("train", "dev", "text_column", "text_b_column", "label_column")
TAGGING_TASKS = ("ner", "wnut17")
TASK_FIELDS = {"tsv": TSV_FIELDS, "ner": ("train", "dev", "tag_column"),
               "wnut17": ("tag_column",)}

# Each task's recipe when `epochs` / `learning_rate` are not given. SST-2 and MRPC: the
# recipes measured for all-MiniLM-L6-v2 over three seeds (docs/benchmarks.md: 2026-12-01,
# commits e6a950d and dea8dc0; MRPC at 5e-5 beat 1e-4 by
# 1.1 points of mean accuracy); any other TSV task: BERT's paper (3 epochs; 5e-5 is the
# largest rate of the paper's grid, and the small models here train best at large rates).
TASK_DEFAULTS = {
    "sst2": {"epochs": 1, "learning_rate": 1e-4},
    "mrpc": {"epochs": 5, "learning_rate": 5e-5},
    "tsv": {"epochs": 3, "learning_rate": 5e-5},
    # Named entities: BERT's paper's recipe as for TSV, not yet swept on WNUT-17.
    "ner": {"epochs": 3, "learning_rate": 5e-5},
    "wnut17": {"epochs": 3, "learning_rate": 5e-5},
}


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig(RunOptions):
    """What `finetune` trains, on what, and where it writes (plus `RunOptions`).

    Attributes:
        task: `sst2` or `mrpc` (GLUE, read from `data_dir`), `tsv` (`train`, `dev`
            and the column names), or named entities (a `BertTokenClassifier`):
            `ner` (CoNLL files `train` and `dev`) or `wnut17` (WNUT-17 from `data_dir`).
        model: the pretrained model dir.
        out: the run dir.
        data_dir: folder with `SST-2/` and `MRPC/` (default `$BERT_TF_DATA`, else
            `../shared/data`).
        epochs, learning_rate: `None` (the default) takes the task's recipe from
            `TASK_DEFAULTS`; `defaults_used` then names the fields filled in.
        batch_size (global), max_seq_length,
        warmup_proportion: BERT's recipe (AdamW, linear warm-up and decay).
        train_limit: use only the first N training examples.
        seed: seeds the head's initialisation, dropout and the data order.
        pooling: the head's pooling (`bert_tf.layers.pooling.STRATEGIES`).
        reinit_pooler: draw the pooler's dense layer afresh (drop its NSP training).
        train, dev, text_column, text_b_column, label_column: `task="tsv"` files
            (with a header row) and columns; `text_b_column` makes it a pair task.
        problem: `single_label` (one label per row), `multi_label` (the label column
            is a comma-separated list of labels, maybe empty) or `regression` (the
            label column is a number, or comma-separated numbers); `tsv` only.
        threshold: `multi_label`: the probability over which a label is predicted.
        tag_column: `ner`, `wnut17`: the CoNLL files' tag column (from 0, the word;
            below 0 from the end; default the last).
        lora_rank: train LoRA adapters of this rank on the encoder (and the head)
            instead of every weight (`bert_tf.models.lora`); the model dir and the
            exports hold the merged kernels.
        lora_targets: with `lora_rank`, the dense layers to adapt
            (`bert_tf.choices.LORA_TARGETS`; default `DEFAULT_LORA_TARGETS`).
        no_export: skip the SavedModel exports.
    """
    task: str
    model: str
    out: str
    data_dir: str = dataclasses.field(
        default_factory=lambda: os.environ.get("BERT_TF_DATA", "../shared/data"))
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 32
    max_seq_length: int = 128
    warmup_proportion: float = 0.1
    train_limit: int | None = None
    seed: int = 0
    pooling: str = "pooled_output"
    reinit_pooler: bool = False
    train: str | None = None
    dev: str | None = None
    text_column: str | None = None
    text_b_column: str | None = None
    label_column: str | None = None
    problem: str = "single_label"
    threshold: float = 0.5
    tag_column: int | None = None
    lora_rank: int | None = None
    lora_targets: tuple[str, ...] | None = None
    no_export: bool = False
    defaults_used: tuple = dataclasses.field(init=False, default=())

    def __post_init__(self):
        super().__post_init__()
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r}: choose one of {TASKS}")
        fields = TASK_FIELDS.get(self.task, ())
        others = [f"--{k.replace('_', '-')}" for k in TSV_FIELDS + ("tag_column",)
                  if getattr(self, k) is not None and k not in fields]
        if others:
            raise ConfigError(f"{', '.join(others)}: for --task tsv (the user's own TSV "
                              "files) or ner (CoNLL files; --tag-column with wnut17 too); "
                              f"--task {self.task} reads its files from the data dir "
                              "(--data-dir)")
        check_seed(self.seed)
        self.defaults_used = tuple(k for k in ("epochs", "learning_rate")
                                   if getattr(self, k) is None)
        for key in self.defaults_used:
            setattr(self, key, TASK_DEFAULTS[self.task][key])
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling {self.pooling!r}: choose one of {POOLINGS}")
        if self.problem not in PROBLEMS:
            raise ConfigError(f"problem {self.problem!r}: choose one of {PROBLEMS}")
        if self.problem != "single_label" and self.task != "tsv":
            raise ConfigError(f"--problem {self.problem} needs --task tsv ({self.task} is "
                              "single_label)")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold {self.threshold}: a probability strictly between 0 "
                              "and 1")
        if self.lora_targets is not None and not self.lora_rank:
            raise ConfigError("--lora-targets needs --lora-rank (without it every weight "
                              "trains)")
        if self.lora_rank:
            self.lora_targets = tuple(self.lora_targets or DEFAULT_LORA_TARGETS)
            unknown = [t for t in self.lora_targets if t not in LORA_TARGETS]
            if unknown:
                raise ConfigError(f"LoRA targets {unknown}: choose among {LORA_TARGETS}")

    def run_args(self) -> dict:
        """The settings that define a run (a resumed run must repeat them)."""
        keys = ("task", "model", "data_dir", "train", "dev", "text_column", "text_b_column",
                "label_column", "epochs", "learning_rate", "batch_size", "max_seq_length",
                "warmup_proportion", "train_limit", "seed", "pooling", "mixed_precision",
                "reinit_pooler", "problem", "threshold")
        if self.task in TAGGING_TASKS:  # so the runs of other tasks keep their run.json
            keys += ("tag_column",)
        args = {"command": "finetune", **{k: getattr(self, k) for k in keys}}
        if self.lora_rank:  # (only then, so that other runs keep their run.json)
            args.update(lora_rank=self.lora_rank, lora_targets=list(self.lora_targets))
        return args


def load_examples(config: FinetuneConfig) -> tuple[Examples, Examples]:
    """The training and dev examples of `config.task`."""
    if config.task in ("sst2", "mrpc"):
        files = glue_files(config.task, config.data_dir)
        missing = [p for p in files.values() if not os.path.exists(p)]
        if missing:
            raise DataError(
                f"{config.task}: looked for {', '.join(missing)} and did not find it; set "
                "the data dir (--data-dir or BERT_TF_DATA) to a folder holding the GLUE layout "
                f"({os.path.basename(os.path.dirname(missing[0]))}/train.tsv and dev.tsv)")
        return (read_task(config.task, config.data_dir, "train"),
                read_task(config.task, config.data_dir, "dev"))
    if not (config.train and config.dev and config.text_column and config.label_column):
        raise DataError("task tsv needs train, dev, text_column and label_column "
                        "(--train, --dev, --text-column, --label-column)")
    columns = (config.text_column, config.text_b_column, config.label_column)
    empty = config.problem == "multi_label"
    return (read_tsv(config.train, *columns, empty_labels=empty),
            read_tsv(config.dev, *columns, empty_labels=empty))


class DevEvaluation(keras.callbacks.Callback):
    """The dev metrics of the model's problem (`bert_tf.training.metrics.dev_metrics`:
    accuracy and F1 for two classes; micro/macro F1 and exact match; Pearson and
    Spearman) after every epoch, into `logs`.

    It says when it starts (`dev evaluation: 872 examples in 28 batches ...`) and
    when it ends (`dev evaluation: 3.1 s - dev_accuracy: 0.8865 - dev_f1: 0.8901`);
    between the two lines, a progress bar if `progress_bar` (the run's own is on:
    not `quiet`)."""

    def __init__(self, dataset, labels: np.ndarray, problem: str = "single_label",
                 threshold: float = 0.5, progress_bar: bool = False):
        super().__init__()
        self.dataset = dataset
        self.labels = labels
        self.problem = problem
        self.threshold = threshold
        self.progress_bar = progress_bar
        self._logits = None

    def evaluate(self) -> dict:
        # Plain calls, not `predict`: outside the distribution strategy, a last batch
        # smaller than the replica count needs no special care.
        if self._logits is None:
            @tf.function(reduce_retracing=True, autograph=False)
            def logits(x):
                return self.model(x, training=False)
            self._logits = logits
        batches = int(self.dataset.cardinality())
        # after the training's progress bar, which ends its line only after the epoch's end
        step = LongStep("dev evaluation", f"{len(self.labels)} examples in {batches} batches",
                        newline=self.progress_bar)
        bar = keras.utils.Progbar(batches, unit_name="batch") if self.progress_bar else None
        outputs = []
        for x, _ in self.dataset:
            outputs.append(self._logits(x).numpy())
            if bar:
                bar.add(1)
        result = dev_metrics(self.problem, np.concatenate(outputs), self.labels, self.threshold)
        step.done(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result

    def on_epoch_end(self, epoch, logs=None):
        result = self.evaluate()
        if logs is not None:
            logs.update(result)


def with_lora(encoder: keras.Model, config: FinetuneConfig) -> keras.Model:
    """`encoder`, with LoRA of `config.lora_rank` on `config.lora_targets` if set."""
    if config.lora_rank:
        encoder.enable_lora(config.lora_rank, config.lora_targets)
    return encoder


def reinit_pooler(encoder: keras.Model, stddev: float, seed: int) -> None:
    """Draws the pooler's dense layer afresh (truncated normal, zero bias), as if it
    had never been trained by next-sentence prediction."""
    dense = encoder.get_layer("pooler").dense
    dense.kernel.assign(keras.initializers.TruncatedNormal(stddev=stddev, seed=seed)(
        dense.kernel.shape))
    dense.bias.assign(np.zeros(dense.bias.shape, "float32"))


def finetune(config: FinetuneConfig, callbacks=()) -> dict:
    """Fine-tunes `config.model` on `config.task`; returns the run's metrics (also in
    `OUT/metrics.json`, written last). A rerun of the same config resumes an
    interrupted run where it stopped (`RunDir`, `fit_resumable`). `callbacks`: more
    Keras callbacks for `fit`."""
    # Everything is checked before anything is written.
    run = RunDir(config.out, config.run_args(), config.overwrite, config.multi_worker, OUTPUTS)
    bert_config = check_model_dir(config.model)
    bert_config.check_seq_length(config.max_seq_length, "max_seq_length")
    if config.task in TAGGING_TASKS:
        return finetune_tagger(config, run, bert_config, callbacks)
    train, dev = load_examples(config)
    labels = label_map(train, dev, config.problem)
    if config.train_limit:
        n = config.train_limit
        train = Examples(train.texts_a[:n], train.texts_b[:n] if train.texts_b else None,
                         train.labels[:n], train.source)
    strategy = start_run(config, run)

    preprocessor = load_preprocessor(config.model, config.max_seq_length)
    x_train, y_train, trimmed_train = encode(preprocessor.tokenizer, train,
                                             config.max_seq_length, labels,
                                             problem=config.problem)
    x_dev, y_dev, trimmed_dev = encode(preprocessor.tokenizer, dev, config.max_seq_length, labels,
                                       problem=config.problem)
    for name, n, total in (("train", trimmed_train, len(train)), ("dev", trimmed_dev, len(dev))):
        if n:
            print(f"note: {n} of {total} {name} examples exceed max_seq_length "
                  f"{config.max_seq_length} tokens and are trimmed")
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        print(f"note: with {replicas} replicas, a length bucket's last batch of fewer than "
              f"{replicas} examples is skipped each epoch (at most {replicas - 1} per bucket)")
    dev_ds = make_dataset(x_dev, y_dev, config.batch_size, training=False)
    steps_per_epoch, epoch_data = training_epochs(x_train, y_train, config.batch_size,
                                                  config.seed, min_batch=replicas)
    total_steps = steps_per_epoch * config.epochs
    what = {"single_label": "labels", "multi_label": "multi-label labels",
            "regression": "regression of"}[config.problem]
    print(f"{config.task}: {len(train)} training examples, {len(dev)} dev, {what} {labels}; "
          f"{steps_per_epoch} steps/epoch × {config.epochs} epochs on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")

    with strategy.scope():
        # Length-bucketed batches still hold some padding; the dense layers skip it
        # (dynamic shapes: not under XLA or on TPU).
        encoder = load_encoder(config.model, skip_padding=not config.jit_compile and not isinstance(
            strategy, tf.distribute.TPUStrategy))
        if config.reinit_pooler:
            reinit_pooler(encoder, bert_config.initializer_range, config.seed)
        model = BertClassifier(with_lora(encoder, config), len(labels), config.pooling,
                               dropout=bert_config.hidden_dropout_prob, preprocessor=preprocessor,
                               labels=labels, text_pairs=train.texts_b is not None,
                               problem=config.problem, threshold=config.threshold)
        model.compile(
            optimizer=bert_optimizer(config.learning_rate, total_steps,
                                     int(config.warmup_proportion * total_steps)),
            # XLA recompiles for every batch shape; on CPU it measured slower here.
            jit_compile=config.jit_compile)
    use_micro_batches(model, config.micro_batches)
    fit_under_multi_worker(model, strategy)

    dev_eval = DevEvaluation(dev_ds, y_dev, config.problem, config.threshold,
                             progress_bar=not config.quiet)
    return fit_and_finish(config, run, model, strategy, epoch_data, steps_per_epoch,
                          [dev_eval, *callbacks], {"train": len(train), "dev": len(dev)},
                          PLOTTED[config.problem])


def fit_and_finish(config: FinetuneConfig, run: RunDir, model: keras.Model, strategy,
                   epoch_data, steps_per_epoch: int, callbacks: list, sizes: dict,
                   plotted: tuple, dev_details=None) -> dict:
    """What every task's run does once its model and data are ready: `fit_resumable`
    with `callbacks` (the dev evaluation first) and TensorBoard, then on the chief the
    metrics (`sizes`: the training and dev examples; the last epoch's `dev_*`; more
    from `dev_details()` when given), the model dir, the curves (`plotted`: the dev
    metrics' panel) and the exports (`RunDir.finish`)."""
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    lora = model.encoder.lora_settings()
    if lora is not None:
        total = model.count_params()
        print(f"LoRA rank {lora['rank']} on {', '.join(lora['targets'])}: {trainable:,} "
              f"trainable parameters (adapters and head) of {total:,} "
              f"({100 * trainable / total:.2f}%)")
    timer = StepTimer()
    callbacks = [callbacks[0], TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50),
                 timer, *callbacks[1:]]
    backup = run.backup
    start = time.time()
    history, _ = fit_resumable(model, epoch_data, config.epochs, backup,
                               config.checkpoint_every, callbacks, verbose=config.verbose)
    wall = time.time() - start
    # the last epoch's dev evaluation (also when a resumed run had no epoch left to train)
    final = {k: v[-1] for k, v in history.items() if k.startswith("dev_")}
    if not run.chief:
        TrainingState(backup, model).remove()
        run.finish_worker()
        return final

    metrics = {**final, "task": config.task, "train_examples": sizes["train"],
               "dev_examples": sizes["dev"], "epochs": config.epochs,
               "steps_per_epoch": steps_per_epoch,
               "train_wall_seconds": round(wall, 1),
               # this process's steps after its first (the train function's tracing), not
               # counting the dev evaluations: a resumed run times only the rest
               "train_examples_per_second": timer.per_second(), **timer.summary(),
               "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
               "trainable_parameters": trainable, **({"lora": lora} if lora else {}),
               "history": history}
    if dev_details is not None:
        metrics.update(dev_details())
    model_dir = model.save_model_dir(
        run.file("model"), meta={"source": f"finetune of {config.model}",
                                 "task": {"name": config.task}}, overwrite=True)
    if history.get("loss"):
        plot_curves(history, steps_per_epoch, run.file("training_curve.png"),
                    {"dev": tuple((k, k) for k in plotted)})
    return run.finish(metrics, TrainingState(backup, model),
                      None if config.no_export else model_dir, config.max_seq_length)


def start_run(config: FinetuneConfig, run: RunDir) -> tf.distribute.Strategy:
    """Starts the run dir (after its checks), seeds and sets up the strategy, and says
    which parts of the recipe came from the task's defaults."""
    state = run.check()
    strategy = prepare_training(config, seed=config.seed)
    run.start(state)
    if config.defaults_used:
        print(f"{config.task} recipe: {config.epochs} epoch(s) at learning rate "
              f"{config.learning_rate:g} ({' and '.join(config.defaults_used)} from the "
              f"task's defaults; --epochs / --learning-rate override)")
    return strategy


def finetune_tagger(config: FinetuneConfig, run: RunDir, bert_config, callbacks=()) -> dict:
    """`finetune` for the tagging tasks (`ner`, `wnut17`): a `BertTokenClassifier` on
    CoNLL files (`bert_tf.training.tagging`), scored by the dev set's entity-level
    precision, recall and F1 (`dev_precision`, `dev_recall`, `dev_f1` per epoch; the
    last evaluation's counts and per-type scores in `dev_entities`)."""
    train, dev = read_tagged(config.task, config.data_dir, config.train, config.dev,
                             config.tag_column)
    labels = tag_names(train, dev)
    train = limit(train, config.train_limit)
    strategy = start_run(config, run)
    preprocessor = load_preprocessor(config.model, config.max_seq_length)
    with strategy.scope():
        model = BertTokenClassifier(with_lora(load_encoder(config.model), config), labels,
                                    dropout=bert_config.hidden_dropout_prob,
                                    preprocessor=preprocessor)
        steps_per_epoch, epoch_data = tagging_epochs(model, train, config.batch_size,
                                                     config.seed)
        total_steps = steps_per_epoch * config.epochs
        model.compile(
            optimizer=bert_optimizer(config.learning_rate, total_steps,
                                     int(config.warmup_proportion * total_steps)),
            jit_compile=config.jit_compile)
    use_micro_batches(model, config.micro_batches)
    fit_under_multi_worker(model, strategy)
    print(f"{config.task}: {len(train)} training sentences, {len(dev)} dev, tags {labels}; "
          f"{steps_per_epoch} steps/epoch × {config.epochs} epochs on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")
    dev_eval = DevEntities(dev, config.batch_size, newline=not config.quiet)
    return fit_and_finish(
        config, run, model, strategy, epoch_data, steps_per_epoch, [dev_eval, *callbacks],
        {"train": len(train), "dev": len(dev)}, ENTITY_METRICS,
        # the last epoch's scores (evaluated again only when a resumed run trained none)
        dev_details=lambda: {"dev_entities": dev_eval.scores or entity_scores(
            dev.tags, model.predict(dev.words, batch_size=config.batch_size))})
