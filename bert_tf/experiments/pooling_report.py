"""Which pooling strategy works best, per model and task (`bert-tf pooling-report`).

For every model × task × strategy (`bert_tf.layers.pooling.STRATEGIES`) a *probe* cell:
the encoder stays frozen and a logistic regression on the pooled vectors of the
training set is evaluated on the dev set; with `finetune=True` also a *finetune*
cell: `bert_tf.training.finetune` with that pooling head, in
`OUT/runs/<model>-<task>-<strategy>-seed<S>`, once per seed (`seeds`: `seed`, `seed + 1`, ...).
A fine-tune-only head, `pooled_output_reinit` (shown as `pooled_output (re-initialised)`),
is `pooled_output` with the pooler's dense layer drawn afresh from the cell's seed
(`finetune --reinit-pooler`): what the pooler's pre-training (NSP) is worth.
Each fine-tune cell keeps its dev predictions; over the seeds the report gives each
head's mean, standard deviation and 95 % interval, and its paired difference from
`pooled_output` (`bert_tf.experiments.stats`: the method and why). With two or more
models, each later model's head is also compared with the same head of the first
model, paired by seed the same way (the NSP against no-NSP pre-training pair).

The probe runs the encoder once per text (batches sorted by length, each padded
only to its longest), computes every parameter-free pooling from the same
outputs with the masked layers of `bert_tf.layers.pooling`, and keeps, for `attention`,
the real tokens' sequence outputs as float16 (`[tokens, H]` plus lengths).

Logistic regression (`fit_logistic`): features standardised with the training
mean and std; softmax over a dense layer from zeros; loss = mean cross-entropy +
`||W||² / (2 N)` (scikit-learn's default L2, C=1); full-batch Adam, 1000 steps,
learning rate 0.02 decaying linearly to 0. No randomness at all.
The `attention` probe (`fit_attention_probe`): tokens standardised with the
training tokens' mean and std, then `AttentionPooling` (query drawn from
`seed`) and the same dense layer and L2; mini-batch Adam on 128 examples of
similar length, for 50 epochs but at least 300 and at most 1500 steps, learning
rate 3e-3 decaying linearly to 0, batch order drawn from `seed`.

Each finished cell is `OUT/cells/<model>__<task>__<strategy>__probe.json` or
`...__finetune__seed<S>.json`;
a rerun reuses it (and refuses a cell made with other settings). At the end:
`OUT/report.md`, `OUT/report.json` and `OUT/report.png`.

Example:
    >>> config = PoolingReportConfig(
    ...     models=[model_dir], tasks=["sst2"], strategies=["mean", "cls"], data_dir=data_dir,
    ...     out="pooling", train_limit=32, dev_limit=32, max_seq_length=64, quiet=True)
    >>> report = pooling_report(config)
    tiny sst2 mean probe: dev accuracy ..., F1 ...
    tiny sst2 cls probe: dev accuracy ..., F1 ...
    wrote pooling/report.md, report.json and report.png
    >>> [(c["strategy"], c["mode"], c["dev_examples"]) for c in report["cells"]]
    [('mean', 'probe', 32), ('cls', 'probe', 32)]
    >>> print(report["command"])
    bert-tf pooling-report --model .../tiny --tasks sst2 --strategies mean,cls ...
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shlex
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.choices import POOLED_OUTPUT_REINIT
from bert_tf.data.glue import GLUE_TASKS, DataError, Examples, encode, glue_files, label_map, \
    make_dataset, read_task
from bert_tf.errors import ConfigError
from bert_tf.experiments import stats
from bert_tf.extras import optional
from bert_tf.layers.pooling import STRATEGIES, AttentionPooling, pool
from bert_tf.models import encoder_inputs, load_encoder, load_model, load_tokenizer
from bert_tf.models.loading import check_model_dir
from bert_tf.training.finetune import FinetuneConfig, finetune
from bert_tf.training.metrics import binary_f1

MODES = ("probe", "finetune")
BASELINE = "pooled_output"  # the head the others are compared with
HEADS = (*STRATEGIES, POOLED_OUTPUT_REINIT)  # what `strategies` chooses among
LOGISTIC = {"steps": 1000, "learning_rate": 0.02, "l2": "1/(2N)", "init": "zeros",
            "standardise": "train mean/std"}
ATTENTION = {"steps": "50 epochs, 300 to 1500", "batch_size": 128, "learning_rate": 3e-3,
             "l2": "1/(2N)", "standardise": "train token mean/std"}


@dataclasses.dataclass(kw_only=True)
class PoolingReportConfig:
    """What `pooling_report` compares, on what data, and where it writes.

    Attributes:
        models: model dirs (each named in the report by its folder name, which must
            differ between them).
        out: the report dir.
        tasks: GLUE tasks (`sst2`, `mrpc`).
        data_dir: folder with `SST-2/` and `MRPC/` (default `$BERT_TF_DATA`, else
            `../shared/data`).
        strategies: poolings to compare (default all of `STRATEGIES`); with
            `finetune` also `pooled_output_reinit` (fine-tune cells only).
        finetune: also fine-tune the whole model with each pooling head.
        train_limit: use the first N training examples.
        dev_limit: probe cells only: evaluate on the first N dev examples (quick
            checks; fine-tune cells always use the whole dev set).
        seed: the attention probe's query and batch order; fine-tuning's first seed.
        seeds: fine-tune cells: run each for this many seeds (`seed`, `seed + 1`, ...).
        batch_size: batch size of the frozen encoder and of fine-tuning.
        max_seq_length: longest input in tokens (longer texts are trimmed).
        epochs, learning_rate: fine-tune cells: epochs and peak learning rate.
        quiet: no progress bars.

    Repeated tasks and strategies count once; an unknown one, or a size below 1,
    raises `ValueError`.
    """
    models: list[str]
    out: str
    tasks: list[str] = dataclasses.field(default_factory=lambda: ["sst2", "mrpc"])
    data_dir: str = dataclasses.field(
        default_factory=lambda: os.environ.get("BERT_TF_DATA", "../shared/data"))
    strategies: list[str] = dataclasses.field(default_factory=lambda: list(STRATEGIES))
    finetune: bool = False
    train_limit: int | None = None
    dev_limit: int | None = None
    seed: int = 0
    seeds: int = 1
    batch_size: int = 32
    max_seq_length: int = 128
    epochs: int = 1
    learning_rate: float = 5e-5
    quiet: bool = False

    def __post_init__(self):
        self.tasks = _choices("tasks", self.tasks, tuple(GLUE_TASKS))
        self.strategies = _choices("strategies", self.strategies, HEADS)
        if POOLED_OUTPUT_REINIT in self.strategies and not self.finetune:
            raise ConfigError(f"strategies: {POOLED_OUTPUT_REINIT!r} is a fine-tune head "
                              "(pooled_output with the pooler re-initialised); set finetune")
        for name in ("train_limit", "dev_limit", "epochs", "batch_size", "max_seq_length",
                     "seeds"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, not {self.learning_rate}")
        if isinstance(self.models, str):
            raise ConfigError(f"models must be a list of model dirs, not the string "
                              f"{self.models!r}")
        self.models = list(self.models)
        if not self.models:
            raise ConfigError("models is empty; give at least one model dir")
        names = [model_name(m) for m in self.models]
        for name in names:
            if names.count(name) > 1:
                raise ConfigError(f"two model dirs are named {name!r}; the report names models "
                                  "by their folder name")
        if not self.out:
            raise ConfigError("out is empty; give the report dir")


def _choices(name: str, values, known) -> list[str]:
    """`values` as a list without repeats, each one of `known`."""
    if isinstance(values, str):
        raise ConfigError(f"{name} must be a list of names, not the string {values!r}")
    items = list(dict.fromkeys(values))
    if not items:
        raise ConfigError(f"{name} is empty; choose from {', '.join(known)}")
    for item in items:
        if item not in known:
            raise ConfigError(f"{name}: unknown {item!r}; choose from {', '.join(known)}")
    return items


def head_label(strategy: str) -> str:
    """The head's name in report.md and report.png.

    >>> head_label("pooled_output_reinit"), head_label("mean")
    ('pooled_output (re-initialised)', 'mean')
    """
    return f"{BASELINE} (re-initialised)" if strategy == POOLED_OUTPUT_REINIT else strategy


def model_name(model_dir: str) -> str:
    return os.path.basename(os.path.normpath(os.path.abspath(model_dir)))


def cell_name(model: str, task: str, strategy: str, mode: str, seed: int) -> str:
    """A probe cell has one seed (`seed`'s); a fine-tune cell's name holds its own."""
    return f"{model}__{task}__{strategy}__{mode}" + (f"__seed{seed}" if mode == "finetune"
                                                       else "")


def _limit(examples: Examples, n: int | None) -> Examples:
    if not n:
        return examples
    return Examples(examples.texts_a[:n], examples.texts_b[:n] if examples.texts_b else None,
                    examples.labels[:n], examples.source)


class Plan:
    """The checked config: models, tasks (with their data), strategies, modes."""

    def __init__(self, config: PoolingReportConfig):
        self.config = config
        self.tasks = config.tasks
        self.strategies = config.strategies
        self.modes = MODES if config.finetune else MODES[:1]
        self.seeds = [config.seed + i for i in range(config.seeds)]
        self.models = {}  # name -> absolute model dir
        for model_dir in config.models:
            check_model_dir(model_dir).check_seq_length(config.max_seq_length, "max_seq_length")
            self.models[model_name(model_dir)] = os.path.abspath(model_dir)
        self.data = {}  # task -> (train, dev, labels)
        for task in self.tasks:
            missing = [p for p in glue_files(task, config.data_dir).values()
                       if not os.path.exists(p)]
            if missing:
                raise DataError(f"{task}: looked for {', '.join(missing)} and did not find it; "
                                "set data_dir (or BERT_TF_DATA) to a folder holding the GLUE "
                                "layout")
            train = read_task(task, config.data_dir, "train")
            dev = read_task(task, config.data_dir, "dev")
            self.data[task] = (_limit(train, config.train_limit), dev, label_map(train, dev))

    def cells(self):
        """`(model, task, strategy, mode, seed)` in report order: probes with `seed`
        (but none of `pooled_output_reinit`), fine-tunes once per seed."""
        return [(m, t, s, mode, seed) for m in self.models for t in self.tasks
                for s in self.strategies for mode in self.modes
                if mode == "finetune" or s != POOLED_OUTPUT_REINIT
                for seed in (self.seeds if mode == "finetune" else [self.config.seed])]

    def settings(self, model: str, task: str, strategy: str, mode: str, seed: int) -> dict:
        """What a cell's result depends on: a stored cell is reused only if these match."""
        c = self.config
        common = {"model_dir": self.models[model], "task": task, "strategy": strategy,
                  "mode": mode, "data_dir": os.path.abspath(c.data_dir),
                  "train_limit": c.train_limit, "seed": seed, "max_seq_length": c.max_seq_length}
        if mode == "probe":
            return {**common, "dev_limit": c.dev_limit,
                    "probe": ATTENTION if strategy == "attention" else LOGISTIC}
        return {**common, "epochs": c.epochs, "learning_rate": c.learning_rate,
                "batch_size": c.batch_size}

    def cell_path(self, *cell) -> str:
        return os.path.join(self.config.out, "cells", cell_name(*cell) + ".json")

    def finished(self) -> dict:
        """The stored cells of this grid; raises if the report dir is not ours or a
        stored cell was made with other settings."""
        out = self.config.out
        if os.path.exists(out) and not os.path.isdir(out):
            raise FileExistsError(f"report dir {out} is a file")
        if os.path.isdir(out) and os.listdir(out) and not os.path.isdir(os.path.join(out, "cells")):
            raise FileExistsError(f"{out} exists and is not a pooling report; choose another "
                                  "report dir")
        done = {}
        for cell in self.cells():
            path = self.cell_path(*cell)
            if not os.path.exists(path):
                continue
            with open(path) as f:
                stored = json.load(f)
            wanted = json.loads(json.dumps(self.settings(*cell)))
            if stored.get("settings") != wanted:
                changed = sorted(k for k in set(stored.get("settings", {})) | set(wanted)
                                 if stored.get("settings", {}).get(k) != wanted.get(k))
                raise FileExistsError(f"{path} was made with other settings (differs in "
                                      f"{changed}); choose another report dir or delete that "
                                      "cell")
            done[cell] = stored
        return done


def evaluate(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict:
    """Dev accuracy, and F1 of label id 1 for two labels.

    >>> evaluate(np.array([1, 0, 1]), np.array([1, 1, 1]), 2)
    {'dev_accuracy': 0.6666666666666666, 'dev_f1': 0.8}
    """
    result = {"dev_accuracy": float(np.mean(predictions == labels))}
    if num_labels == 2:
        result["dev_f1"] = binary_f1(labels, predictions)
    return result


# ---- the frozen encoder, once per text ------------------------------------------------------

def feature_model(encoder: keras.Model, strategies) -> keras.Model:
    """Encoder inputs -> dict of every parameter-free pooling `[B, H]` in `strategies`,
    plus `sequence_output` when `attention` is among them."""
    inputs = encoder_inputs()
    outputs = encoder(inputs)
    out = {}
    for s in strategies:
        if s == "attention":
            out["sequence_output"] = outputs["sequence_output"]
        else:
            out[s] = pool(s, outputs, inputs["input_mask"], name=f"pooling_{s}")
    return keras.Model(inputs, out)


def embed(model_fn, tokenizer, examples: Examples, labels: list[str], max_seq_length: int,
          batch_size: int, progress: bool) -> dict:
    """Runs the frozen encoder once over `examples`, sorted by length (stable) so that
    each batch pads little. Everything returned is in that sorted order:
    `y` `[N]`, one float32 `[N, H]` array per pooling, and for attention `tokens`
    (float16 `[real tokens, H]`) with `lengths` `[N]`."""
    features, y, trimmed = encode(tokenizer, examples, max_seq_length, labels)
    if trimmed:
        print(f"note: {trimmed} of {len(y)} examples exceed max_seq_length "
              f"{max_seq_length} tokens and are trimmed")
    lengths = features["input_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    features = {k: v[order] for k, v in features.items()}
    y, lengths = y[order], lengths[order]
    bar = keras.utils.Progbar(len(y), unit_name="text") if progress else None
    parts: dict[str, list] = {}
    for x, _ in make_dataset(features, y, batch_size, training=False):
        out = model_fn(x)
        for key, value in out.items():
            value = value.numpy()
            if key == "sequence_output":  # real tokens only, row by row
                value = value[x["input_mask"].numpy().astype(bool)].astype(np.float16)
            parts.setdefault(key, []).append(value)
        if bar:
            bar.add(len(out[next(iter(out))]))
    result = {"y": y, **{k: np.concatenate(v) for k, v in parts.items()}}
    if "sequence_output" in result:
        result["tokens"] = result.pop("sequence_output")
        result["lengths"] = lengths.astype(np.int64)
    return result


# ---- probes ---------------------------------------------------------------------------------

def _linear_decay(learning_rate: float, steps: int):
    return keras.optimizers.schedules.PolynomialDecay(learning_rate, steps, 0.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, num_labels: int, steps: int = LOGISTIC["steps"],
                 learning_rate: float = LOGISTIC["learning_rate"]):
    """Multinomial logistic regression (settings: module docstring). Returns
    `(predict, info)`: `predict(x) -> label ids`, `info` the final loss, gradient
    norm and training accuracy.

    >>> x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]], "float32")
    >>> predict, info = fit_logistic(x, np.array([0, 1, 0, 1]), 2, steps=50)
    >>> predict(x).tolist(), info["train_accuracy"]
    ([0, 1, 0, 1], 1.0)
    """
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = tf.constant((x - mean) / std, tf.float32)
    labels = tf.constant(y, tf.int32)
    l2 = 1.0 / (2 * len(y))
    kernel = keras.Variable(np.zeros((x.shape[1], num_labels), np.float32), name="kernel")
    bias = keras.Variable(np.zeros((num_labels,), np.float32), name="bias")
    variables = [kernel, bias]
    optimizer = keras.optimizers.Adam(_linear_decay(learning_rate, steps))
    optimizer.build(variables)

    def loss_and_grads():
        with tf.GradientTape() as tape:
            logits = tf.matmul(z, kernel.value) + bias.value
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            loss += l2 * tf.reduce_sum(tf.square(kernel.value))
        return loss, tape.gradient(loss, [v.value for v in variables])

    @tf.function(autograph=False)
    def step():
        loss, grads = loss_and_grads()
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    for _ in range(steps):
        step()
    loss, grads = loss_and_grads()
    w, b = kernel.numpy(), bias.numpy()

    def predict(features: np.ndarray) -> np.ndarray:
        return np.argmax(((features - mean) / std) @ w + b, axis=1)

    info = {"train_loss": float(loss), "grad_norm": float(tf.linalg.global_norm(grads)),
            "train_accuracy": float(np.mean(predict(x) == y))}
    return predict, info


def _padded(tokens: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, idx: np.ndarray):
    """Rows `idx` of the ragged token store as float32 `[B, longest, H]` and a mask."""
    width = int(lengths[idx].max())
    x = np.zeros((len(idx), width, tokens.shape[1]), np.float32)
    mask = np.zeros((len(idx), width), np.int32)
    for row, i in enumerate(idx):
        n = lengths[i]
        x[row, :n] = tokens[offsets[i]:offsets[i] + n]
        mask[row, :n] = 1
    return x, mask


def attention_steps(n: int, batch_size: int = ATTENTION["batch_size"]) -> int:
    """50 epochs of `n` examples, at least 300 and at most 1500 steps.

    >>> attention_steps(64), attention_steps(2000), attention_steps(67349)
    (300, 800, 1500)
    """
    return min(1500, max(300, 50 * -(-n // batch_size)))


def fit_attention_probe(train: dict, num_labels: int, seed: int, steps: int | None = None,
                        batch_size: int = ATTENTION["batch_size"],
                        learning_rate: float = ATTENTION["learning_rate"]):
    """A learned attention pooling + logistic regression on frozen token vectors
    (`train` as `embed` returns it; settings: module docstring). Returns
    `(predict, info)`: `predict(store) -> label ids` for another such store."""
    tokens, lengths, y = train["tokens"], train["lengths"], train["y"]
    hidden = tokens.shape[1]
    steps = steps or attention_steps(len(y), batch_size)
    mean = tokens.astype(np.float32).mean(axis=0)
    std = tokens.astype(np.float32).std(axis=0) + 1e-6
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keras.utils.set_random_seed(seed)
    pooling = AttentionPooling(name="probe_attention")
    dense = keras.layers.Dense(num_labels, kernel_initializer="zeros", name="probe_dense")
    pooling.build((None, None, hidden))
    dense.build((None, hidden))
    variables = pooling.trainable_variables + dense.trainable_variables
    l2 = 1.0 / (2 * len(y))
    optimizer = keras.optimizers.Adam(_linear_decay(learning_rate, steps))
    optimizer.build(variables)
    spec = [tf.TensorSpec([None, None, hidden], tf.float32), tf.TensorSpec([None, None], tf.int32)]

    @tf.function(input_signature=spec, autograph=False)
    def logits_of(x, mask):
        return dense(pooling((x - mean) / std, mask))

    @tf.function(input_signature=spec + [tf.TensorSpec([None], tf.int32)], autograph=False)
    def step(x, mask, labels):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels, logits_of(x, mask)))
            loss += l2 * tf.reduce_sum(tf.square(dense.kernel.value))
        optimizer.apply_gradients(zip(tape.gradient(loss, [v.value for v in variables]),
                                      variables))
        return loss

    rng = np.random.default_rng(seed)
    batches, losses = [], []
    while len(losses) < steps:
        if not batches:  # an epoch: random order, then grouped by length (bucket of 8)
            perm = rng.permutation(len(y))
            perm = perm[np.argsort(lengths[perm] // 8, kind="stable")]
            batches = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        idx = batches.pop()
        x, mask = _padded(tokens, offsets, lengths, idx)
        losses.append(float(step(x, mask, y[idx])))

    def predict(store: dict) -> np.ndarray:
        offs = np.concatenate([[0], np.cumsum(store["lengths"])[:-1]])
        preds = []
        for i in range(0, len(store["y"]), 256):
            idx = np.arange(i, min(i + 256, len(store["y"])))
            x, mask = _padded(store["tokens"], offs, store["lengths"], idx)
            preds.append(np.argmax(logits_of(x, mask).numpy(), axis=1))
        return np.concatenate(preds)

    info = {"train_loss_last_100_steps": float(np.mean(losses[-100:])),
            "train_accuracy": float(np.mean(predict(train) == y))}
    return predict, info


# ---- cells ----------------------------------------------------------------------------------

def probe_cells(plan: Plan, model: str, task: str, strategies, encoder_fn, tokenizer,
                progress: bool) -> dict:
    """Embeds `task`'s train and dev sets once and fits a probe per strategy."""
    train_examples, dev_examples, labels = plan.data[task]
    config = plan.config
    dev_examples = _limit(dev_examples, config.dev_limit)
    stores = {}
    for split, examples in (("train", train_examples), ("dev", dev_examples)):
        if progress:
            print(f"{model} {task}: embedding {len(examples)} {split} examples")
        stores[split] = embed(encoder_fn, tokenizer, examples, labels, config.max_seq_length,
                              config.batch_size, progress)
    train, dev = stores["train"], stores["dev"]
    majority = int(np.argmax(np.bincount(train["y"], minlength=len(labels))))
    results = {}
    for strategy in strategies:
        start = time.time()
        if strategy == "attention":
            predict, info = fit_attention_probe(train, len(labels), config.seed)
            predictions = predict(dev)
        else:
            predict, info = fit_logistic(train[strategy], train["y"], len(labels))
            predictions = predict(dev[strategy])
        results[strategy] = {
            **evaluate(dev["y"], predictions, len(labels)), **info,
            "train_examples": len(train["y"]), "dev_examples": len(dev["y"]), "labels": labels,
            "majority_dev_accuracy": float(np.mean(dev["y"] == majority)),
            "fit_seconds": round(time.time() - start, 1)}
    return results


def finetune_cell(plan: Plan, model: str, task: str, strategy: str, seed: int) -> dict:
    """A `bert_tf.training.finetune` run with `strategy` as the pooling head (no exports),
    in `OUT/runs/<model>-<task>-<strategy>-seed<seed>`; a finished run's metrics are
    reused. With the run's dev predictions (`dev_predictions`).
    `pooled_output_reinit` is `pooled_output` with `reinit_pooler`."""
    c = plan.config
    run_dir = os.path.join(c.out, "runs", f"{model}-{task}-{strategy}-seed{seed}")
    reinit = strategy == POOLED_OUTPUT_REINIT
    config = FinetuneConfig(
        task=task, model=plan.models[model], data_dir=os.path.abspath(c.data_dir), out=run_dir,
        pooling=BASELINE if reinit else strategy, reinit_pooler=reinit, no_export=True,
        epochs=c.epochs, learning_rate=c.learning_rate, batch_size=c.batch_size,
        max_seq_length=c.max_seq_length, seed=seed, train_limit=c.train_limit or None,
        quiet=c.quiet)
    metrics_file = os.path.join(run_dir, "metrics.json")
    run_file = os.path.join(run_dir, "run.json")
    metrics = None
    if os.path.exists(metrics_file) and os.path.exists(run_file):
        with open(run_file) as f:
            # a run.json from before 2026-12-07 names no command
            if {"command": "finetune", **json.load(f)} == json.loads(json.dumps(
                    config.run_args())):
                with open(metrics_file) as g:
                    metrics = json.load(g)
                print(f"reused finished run {run_dir}")
    if metrics is None:
        metrics = finetune(config)
    keep = ("dev_accuracy", "dev_f1", "train_examples", "dev_examples", "train_wall_seconds",
            "train_examples_per_second", "replicas")
    predictions, labels = dev_predictions(plan, task, os.path.join(run_dir, "model"))
    return {**{k: metrics[k] for k in keep if k in metrics}, "run_dir": os.path.abspath(run_dir),
            "distribution": metrics.get("strategy"), "labels": plan.data[task][2],
            "dev_predictions": predictions.tolist(), "dev_labels": labels.tolist()}


def dev_predictions(plan: Plan, task: str, model_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The label ids a fine-tuned model dir predicts for `task`'s whole dev set, and
    the true ones, in the file's order; encoded and batched as finetune's dev
    evaluation does, so that they give the run's dev metrics."""
    classifier = load_model(model_dir)
    _, dev, labels = plan.data[task]
    x, y, _ = encode(classifier.preprocessor.tokenizer, dev, plan.config.max_seq_length, labels)
    logits = [classifier(batch, training=False).numpy()
              for batch, _ in make_dataset(x, y, plan.config.batch_size, training=False)]
    return np.argmax(np.concatenate(logits), axis=1), y


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def pooling_report(config: PoolingReportConfig, command: str | None = None) -> dict:
    """Runs (or resumes) the whole grid and writes the report; returns `report.json`'s dict.

    `command` is the report's record of how it was made (default: the equivalent
    `bert-tf pooling-report` command line, `command_line(config)`)."""
    plan = Plan(config)
    done = plan.finished()  # everything checked: from here on we write
    out = config.out
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    cells = plan.cells()
    for cell in cells:
        if cell in done:
            print(f"reused {os.path.relpath(plan.cell_path(*cell), out)}")
    progress = not config.quiet
    bar = keras.utils.Progbar(len(cells), unit_name="cell") if progress else None
    if bar and done:
        bar.add(len(done))
    for model in plan.models:
        todo = [c for c in cells if c[0] == model and c not in done]
        probes = [c for c in todo if c[3] == "probe"]
        if probes:
            strategies = list(dict.fromkeys(c[2] for c in probes))
            encoder = load_encoder(plan.models[model])
            net = feature_model(encoder, strategies)
            encoder_fn = tf.function(lambda x: net(x, training=False), reduce_retracing=True)
            tokenizer = load_tokenizer(plan.models[model])
        for task in plan.tasks:
            wanted = [c[2] for c in probes if c[1] == task]
            results = probe_cells(plan, model, task, wanted, encoder_fn, tokenizer,
                                  progress) if wanted else {}
            for strategy, result in results.items():
                cell = (model, task, strategy, "probe", config.seed)
                done[cell] = _save(plan, cell, result, bar)
        if probes:
            del encoder, net, encoder_fn
            keras.backend.clear_session()
        for cell in (c for c in todo if c[3] == "finetune"):
            done[cell] = _save(plan, cell, finetune_cell(plan, *cell[:3], cell[4]), bar)
    if bar:
        print()
    report = {"command": command or command_line(config), "machine": machine(),
              "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "models": plan.models, "tasks": plan.tasks, "strategies": plan.strategies,
              "modes": list(plan.modes), "seeds": plan.seeds, "cells": [done[c] for c in cells]}
    report["statistics"] = statistics(report)
    write_json(os.path.join(out, "report.json"), report)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown(report))
    plot(report, os.path.join(out, "report.png"))
    png = os.path.exists(os.path.join(out, "report.png"))  # not without matplotlib
    print(f"wrote {os.path.join(out, 'report.md')}, report.json"
          + (" and report.png" if png else ""))
    return report


def _save(plan: Plan, cell, result: dict, bar) -> dict:
    model, task, strategy, mode, seed = cell
    stored = {"model": model, "task": task, "strategy": strategy, "mode": mode, "seed": seed,
              **result, "settings": plan.settings(*cell)}
    write_json(plan.cell_path(*cell), stored)
    line = (f"{model} {task} {strategy} {mode}{f' seed {seed}' if mode == 'finetune' else ''}: "
            f"dev accuracy {result['dev_accuracy']:.4f}")
    if "dev_f1" in result:
        line += f", F1 {result['dev_f1']:.4f}"
    print(("\n" if bar else "") + line)
    if bar:
        bar.add(1)
    return stored


# ---- report ---------------------------------------------------------------------------------

def command_line(config: PoolingReportConfig) -> str:
    """The `bert-tf pooling-report` command that makes this config's report."""
    argv = ["pooling-report"]
    for m in config.models:
        argv += ["--model", m]
    argv += ["--tasks", ",".join(config.tasks), "--strategies", ",".join(config.strategies),
             "--data-dir", config.data_dir, "--out", config.out, "--seed", str(config.seed),
             "--batch-size", str(config.batch_size), "--max-seq-length",
             str(config.max_seq_length)]
    for name in ("train_limit", "dev_limit"):
        if getattr(config, name):
            argv += [f"--{name.replace('_', '-')}", str(getattr(config, name))]
    if config.finetune:
        argv += ["--finetune", "--seeds", str(config.seeds), "--epochs", str(config.epochs),
                 "--learning-rate", str(config.learning_rate)]
    if config.quiet:
        argv.append("--quiet")
    return shlex.join(["bert-tf", *argv])


def machine() -> str:
    return (f"{platform.platform()}, processor {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs")


def statistics(report: dict) -> list[dict]:
    """Per model × task × strategy of the fine-tune cells, over their seeds: each
    metric's `stats.seed_summary`, and, where the other side was fine-tuned with the
    same seeds, each metric's `stats.compare` (this head minus the other):
    `against_pooled_output` (all heads but `pooled_output`) with the same model's
    `pooled_output`, and `against_model` (all models but the first) with the same head
    of the first model, which it names (`{"model": name, metric: compare, ...}`)."""
    groups: dict[tuple, list] = {}
    for c in report["cells"]:
        if c["mode"] == "finetune":
            groups.setdefault((c["model"], c["task"], c["strategy"]), []).append(c)
    first = next(iter(report["models"]))
    result = []
    for (model, task, strategy), cells in groups.items():
        metrics = [m for m in stats.METRICS if m in cells[0]]
        entry = {"model": model, "task": task, "strategy": strategy,
                 "seeds": [c["seed"] for c in cells],
                 **{m: stats.seed_summary([c[m] for c in cells]) for m in metrics}}
        baseline = groups.get((model, task, BASELINE))
        if strategy != BASELINE and _has_seeds(baseline, cells):
            entry["against_" + BASELINE] = {m: stats.compare(cells, baseline, m)
                                            for m in metrics}
        reference = groups.get((first, task, strategy))
        if model != first and _has_seeds(reference, cells):
            entry["against_model"] = {"model": first, **{m: stats.compare(cells, reference, m)
                                                         for m in metrics}}
        result.append(entry)
    return result


def _has_seeds(group: list | None, cells: list) -> bool:
    """Whether `group`'s cells cover every seed of `cells` (so each has its pair)."""
    return bool(group) and {c["seed"] for c in cells} <= {c["seed"] for c in group}


def _values(report: dict) -> dict:
    """`(model, task, strategy, mode) -> cell`, a fine-tune cell's metrics being
    their mean over seeds."""
    values = {(c["model"], c["task"], c["strategy"], c["mode"]): c for c in report["cells"]
              if c["mode"] == "probe"}
    for s in report.get("statistics", []):
        values[s["model"], s["task"], s["strategy"], "finetune"] = {
            m: s[m]["mean"] for m in stats.METRICS if m in s}
    return values


def _columns(report: dict, task: str):
    """`(model, mode, metric)` columns with at least one value for `task`."""
    present = {(c["model"], c["mode"]) for c in report["cells"] if c["task"] == task}
    metrics = ["dev_accuracy"] + (["dev_f1"] if task == "mrpc" else [])
    return [(m, mode, k) for m in report["models"] for mode in report["modes"]
            if (m, mode) in present for k in metrics]


NAMES = {"dev_accuracy": "acc", "dev_f1": "F1"}


def _interval(interval) -> str:
    return "" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def seed_table(report: dict, task: str) -> list[str]:
    """The markdown lines of `task`'s fine-tune statistics over seeds (none without
    fine-tune cells)."""
    rows = [s for s in report.get("statistics", []) if s["task"] == task]
    if not rows:
        return []
    seeds = report["seeds"]
    lines = [f"### {task}: fine-tuned, {len(seeds)} seed(s) ({', '.join(map(str, seeds))})", "",
             "Mean ± standard deviation over seeds, with the 95 % t-interval of the mean. "
             f"Δ: the head minus `{BASELINE}` (same seeds, same data order), with the 95 % "
             "intervals of a paired t-test over seeds (p its two-sided p-value) and of a paired "
             "bootstrap over dev examples (10,000 resamples). Resolved: both intervals exclude "
             "zero (`bert_tf.experiments.stats`).", ""]
    for metric in [m for m in stats.METRICS if m in rows[0]]:
        name = NAMES[metric]
        lines += [f"| model | strategy | {name} mean ± sd | 95 % CI | Δ {name} | seeds 95 % CI "
                  "| p | dev-set 95 % CI | resolved |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|"]
        for s in rows:
            summary = s[metric]
            sd = "" if summary["sd"] is None else f" ± {summary['sd']:.3f}"
            row = [s["model"], head_label(s["strategy"]), f"{summary['mean']:.3f}{sd}",
                   _interval(summary["ci95"]).replace("+", "")]
            compared = s.get("against_" + BASELINE, {}).get(metric)
            if compared:
                row += _compared(compared)
            else:
                row += ["(baseline)" if s["strategy"] == BASELINE else ""] + [""] * 4
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return lines


def _compared(compared: dict) -> list[str]:
    """A `stats.compare` result as table cells: Δ, its interval over seeds, p, its
    interval over dev examples, resolved."""
    t = compared["paired_t"]
    return [f"{t['mean']:+.3f}", _interval(t["ci95"]), "" if t["p"] is None else f"{t['p']:.3f}",
            _interval(compared["dev_bootstrap"]["ci95"]),
            "**yes**" if compared["resolved"] else "no"]


def model_table(report: dict, task: str) -> list[str]:
    """The markdown lines of `task`'s fine-tuned heads of each later model against the
    same head of the first model (none with one model)."""
    rows = [s for s in report.get("statistics", []) if s["task"] == task and "against_model" in s]
    if not rows:
        return []
    first = rows[0]["against_model"]["model"]
    lines = [f"### {task}: fine-tuned, each model against {first}", "",
             f"Δ: the model minus `{first}` with the same head (same seeds, same data order), "
             "with the intervals and p as above; resolved: both intervals exclude zero.", ""]
    for metric in [m for m in stats.METRICS if m in rows[0]["against_model"]]:
        name = NAMES[metric]
        lines += [f"| model | strategy | Δ {name} | seeds 95 % CI | p | dev-set 95 % CI "
                  "| resolved |", "|---|---|---:|---:|---:|---:|---|"]
        lines += ["| " + " | ".join([s["model"], head_label(s["strategy"]),
                                     *_compared(s["against_model"][metric])]) + " |"
                  for s in rows]
        lines.append("")
    return lines


def markdown(report: dict) -> str:
    cells = _values(report)
    lines = ["# Pooling report", "", "Command:", "", "```", report["command"], "```", "",
             f"Machine: {report['machine']}  ", f"Date: {report['date']}", "",
             "probe: frozen encoder, logistic regression on the pooled vectors "
             "(`attention`: learned query + logistic regression on the frozen token vectors); "
             "finetune: the whole model fine-tuned with that pooling head (the mean over "
             "seeds). Best value per column in bold.", ""]
    if POOLED_OUTPUT_REINIT in report["strategies"]:
        lines += [f"{head_label(POOLED_OUTPUT_REINIT)}: fine-tuned with `{BASELINE}` after "
                  "drawing the pooler's dense layer afresh from the seed (`bert-tf finetune "
                  "--reinit-pooler`), so without what pre-training taught it.", ""]
    for task in report["tasks"]:
        columns = _columns(report, task)
        # from a probe cell (a report of pooled_output_reinit alone has none)
        majority = next((c["majority_dev_accuracy"] for c in report["cells"]
                         if c["task"] == task and "majority_dev_accuracy" in c), None)
        sizes = ", ".join(f"{mode}: {c['train_examples']} train / {c['dev_examples']} dev"
                          for mode in report["modes"]
                          for c in [next((x for x in report["cells"] if x["task"] == task
                                          and x["mode"] == mode), None)] if c)
        lines += [f"## {task}", "", f"Dev accuracy{' and F1' if task == 'mrpc' else ''} "
                  f"({sizes}" + ("" if majority is None else f"; majority class {majority:.3f}")
                  + ")", ""]
        lines.append("| strategy | " + " | ".join(f"{m} {mode} {NAMES[k]}"
                                                   for m, mode, k in columns) + " |")
        lines.append("|---|" + "---:|" * len(columns))
        best = {col: max((cells[col[0], task, s, col[1]].get(col[2], -1)
                          for s in report["strategies"]
                          if (col[0], task, s, col[1]) in cells), default=None)
                for col in columns}
        for s in report["strategies"]:
            row = []
            for col in columns:
                value = cells.get((col[0], task, s, col[1]), {}).get(col[2])
                text = "" if value is None else f"{value:.3f}"
                row.append(f"**{text}**" if value is not None and value == best[col] else text)
            lines.append(f"| {head_label(s)} | " + " | ".join(row) + " |")
        lines.append("")
        lines += seed_table(report, task)
        lines += model_table(report, task)
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """A grouped bar chart: a subplot per task, a group of bars per strategy, a bar
    per model × mode (fine-tune bars: the mean over seeds, with the 95 % interval as
    error bars when there are two or more); the dashed line is the majority class.
    Without matplotlib (`bert-tf[plots]`), no chart and one note."""
    figure = optional("matplotlib.figure", "plots", os.path.basename(path))
    if figure is None:
        return
    tasks, strategies = report["tasks"], report["strategies"]
    series = [(m, mode) for m in report["models"] for mode in report["modes"]]
    # A bare `Figure`: no pyplot, so no backend or global state to set.
    fig = figure.Figure(figsize=(max(6, 1.3 * len(strategies)) * len(tasks), 4))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    width = 0.8 / len(series)
    cells = _values(report)
    intervals = {(s["model"], s["task"], s["strategy"]): s["dev_accuracy"]["ci95"]
                 for s in report.get("statistics", [])}
    for ax, task in zip(axes[0], tasks):
        for i, (model, mode) in enumerate(series):
            values = np.array([cells.get((model, task, s, mode), {}).get("dev_accuracy", np.nan)
                               for s in strategies])
            errors = None
            if mode == "finetune":
                ci = [intervals.get((model, task, s)) or [np.nan, np.nan] for s in strategies]
                # [2, strategies]: below, above; as lists, because matplotlib reads a
                # one-strategy array row as a scalar (deprecated by NumPy 1.25)
                errors = np.abs(np.array(ci).T - values).tolist()
            ax.bar(np.arange(len(strategies)) + (i - (len(series) - 1) / 2) * width, values,
                   width, yerr=errors, capsize=3, label=f"{model} {mode}")
        majority = [c.get("majority_dev_accuracy") for c in report["cells"]
                    if c["task"] == task and "majority_dev_accuracy" in c]
        if majority:
            ax.axhline(majority[0], color="gray", linestyle="--", linewidth=1,
                       label="majority class")
        ax.set_xticks(np.arange(len(strategies)), [head_label(s) for s in strategies],
                      rotation=20)
        ax.set(title=task, ylabel="dev accuracy", ylim=(0, 1))
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
