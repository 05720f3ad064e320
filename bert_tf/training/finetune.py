"""`bert-tf finetune`: sequence classification with Keras `fit` under `tf.distribute`.

Flow: TSV -> `Examples` -> in-graph tokenisation (`bert_tf.data.encode`) ->
bucketed `tf.data` batches -> encoder -> pooling -> dropout -> dense -> loss.
The run dir receives the fine-tuned model dir, metrics, TensorBoard logs, a
training-curve PNG and the three SavedModel exports.
"""
from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.io.checkpoint import read_meta, write_model_dir
from bert_tf.models.classifier import build_classifier, classifier_tensors
from bert_tf.config import load_config
from bert_tf.data.glue import DataError, Examples, encode, glue_files, label_map, make_dataset, \
    read_task, read_tsv
from bert_tf.models.loading import load_encoder, load_tokenizer
from bert_tf.preprocessing.tokenizer import vocab_path
from bert_tf.training.common import RunDir, add_run_arguments, bert_optimizer, \
    fit_under_multi_worker, prepare_training


def load_examples(args) -> tuple[Examples, Examples]:
    if args.task in ("sst2", "mrpc"):
        files = glue_files(args.task, args.data_dir)
        missing = [p for p in files.values() if not os.path.exists(p)]
        if missing:
            raise DataError(
                f"{args.task}: looked for {', '.join(missing)} and did not find it; pass "
                "--data-dir (or set BERT_TF_DATA) to a folder holding the GLUE layout "
                f"({os.path.basename(os.path.dirname(missing[0]))}/train.tsv and dev.tsv)")
        return read_task(args.task, args.data_dir, "train"), read_task(args.task, args.data_dir,
                                                                       "dev")
    if not (args.train and args.dev and args.text_column and args.label_column):
        raise DataError("--task tsv needs --train, --dev, --text-column and --label-column")
    return (read_tsv(args.train, args.text_column, args.text_b_column, args.label_column),
            read_tsv(args.dev, args.text_column, args.text_b_column, args.label_column))


def binary_f1(labels, predictions, positive=1) -> float:
    tp = int(np.sum((predictions == positive) & (labels == positive)))
    fp = int(np.sum((predictions == positive) & (labels != positive)))
    fn = int(np.sum((predictions != positive) & (labels == positive)))
    return 2 * tp / max(2 * tp + fp + fn, 1)


class DevEvaluation(keras.callbacks.Callback):
    """Dev accuracy (and F1 for two classes) after every epoch, into `logs`."""

    def __init__(self, dataset, labels: np.ndarray, num_labels: int):
        super().__init__()
        self.dataset = dataset
        self.labels = labels
        self.num_labels = num_labels
        self._logits = None

    def evaluate(self) -> dict:
        # Plain calls, not `predict`: outside the distribution strategy, a last batch
        # smaller than the replica count needs no special care.
        if self._logits is None:
            @tf.function(reduce_retracing=True, autograph=False)
            def logits(x):
                return self.model(x, training=False)
            self._logits = logits
        pred = np.concatenate([np.argmax(self._logits(x).numpy(), axis=-1)
                               for x, _ in self.dataset])
        result = {"dev_accuracy": float(np.mean(pred == self.labels))}
        if self.num_labels == 2:
            result["dev_f1"] = binary_f1(self.labels, pred)
        return result

    def on_epoch_end(self, epoch, logs=None):
        result = self.evaluate()
        if logs is not None:
            logs.update(result)
        print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))


def plot_curves(history: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history["loss"]) + 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.plot(epochs, history["loss"], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key in ("dev_accuracy", "dev_f1"):
        if key in history:
            ax2.plot(epochs, history[key], marker="o", label=key)
    ax2.set(xlabel="epoch", ylabel="dev metric", title="dev")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reinit_pooler(encoder: keras.Model, stddev: float, seed: int) -> None:
    """Draws the pooler's dense layer afresh (truncated normal, zero bias), as if it
    had never been trained by next-sentence prediction."""
    dense = encoder.get_layer("pooler").dense
    dense.kernel.assign(keras.initializers.TruncatedNormal(stddev=stddev, seed=seed)(
        dense.kernel.shape))
    dense.bias.assign(np.zeros(dense.bias.shape, "float32"))


def run_args(args) -> dict:
    """The arguments that define a run (a resumed run must repeat them)."""
    keys = ("task", "model", "data_dir", "train", "dev", "text_column", "text_b_column",
            "label_column", "epochs", "learning_rate", "batch_size", "max_seq_length",
            "warmup_proportion", "train_limit", "seed", "pooling", "mixed_precision",
            "reinit_pooler")
    return {k: getattr(args, k, None) for k in keys}


def finetune(args) -> dict:
    # Everything is checked before anything is written.
    run = RunDir(args.out, run_args(args), args.overwrite, args.strategy == "multi_worker")
    train, dev = load_examples(args)
    labels = label_map(train, dev)
    if args.train_limit:
        train = Examples(train.texts_a[:args.train_limit],
                         train.texts_b[:args.train_limit] if train.texts_b else None,
                         train.labels[:args.train_limit], train.source)
    state = run.check()
    strategy = prepare_training(args, seed=args.seed)
    run.start(state)

    tokenizer = load_tokenizer(args.model)
    x_train, y_train, trimmed_train = encode(tokenizer, train, args.max_seq_length, labels)
    x_dev, y_dev, trimmed_dev = encode(tokenizer, dev, args.max_seq_length, labels)
    for name, n, total in (("train", trimmed_train, len(train)), ("dev", trimmed_dev, len(dev))):
        if n:
            print(f"note: {n} of {total} {name} examples exceed --max-seq-length "
                  f"{args.max_seq_length} tokens and are trimmed")
    replicas = strategy.num_replicas_in_sync
    if replicas > 1:
        print(f"note: with {replicas} replicas, a length bucket's last batch of fewer than "
              f"{replicas} examples is skipped each epoch (at most {replicas - 1} per bucket)")
    train_ds = make_dataset(x_train, y_train, args.batch_size, training=True, seed=args.seed,
                            min_batch=replicas)
    dev_ds = make_dataset(x_dev, y_dev, args.batch_size, training=False)
    # Bucket sizes depend on lengths only, so every epoch has the same batches count;
    # stating it gives the progress bar its total.
    steps_per_epoch = sum(1 for _ in train_ds)
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    total_steps = steps_per_epoch * args.epochs
    print(f"{args.task}: {len(train)} training examples, {len(dev)} dev, labels {labels}; "
          f"{steps_per_epoch} steps/epoch × {args.epochs} epochs on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")

    with strategy.scope():
        # Length-bucketed batches still hold some padding; the dense layers skip it
        # (dynamic shapes: not under XLA or on TPU).
        encoder = load_encoder(args.model, skip_padding=not args.jit_compile and not isinstance(
            strategy, tf.distribute.TPUStrategy))
        if args.reinit_pooler:
            reinit_pooler(encoder, load_config(args.model).initializer_range, args.seed)
        train_model, _ = build_classifier(encoder, len(labels), args.pooling,
                                          dropout=load_config(args.model).hidden_dropout_prob)
        optimizer = bert_optimizer(args.learning_rate, total_steps,
                                   int(args.warmup_proportion * total_steps))
        train_model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            # XLA recompiles for every batch shape; on CPU it measured slower here.
            jit_compile=args.jit_compile)
    fit_under_multi_worker(train_model, strategy)

    dev_eval = DevEvaluation(dev_ds, y_dev, len(labels))
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(run.work_dir, "backup"),
                                         save_freq=args.checkpoint_every, double_checkpoint=True),
        dev_eval,
        keras.callbacks.TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50),
    ]
    start = time.time()
    history = train_model.fit(train_ds, epochs=args.epochs, callbacks=callbacks,
                              verbose=2 if args.quiet else "auto")
    wall = time.time() - start
    final = dev_eval.evaluate()
    if not run.chief:
        run.finish_worker()
        return final

    epochs_run = len(history.history.get("loss", []))
    metrics = {**final, "task": args.task, "train_examples": len(train),
               "dev_examples": len(dev), "epochs": args.epochs,
               "train_wall_seconds": round(wall, 1),
               "train_examples_per_second": round(len(train) * epochs_run / wall, 1)
               if epochs_run else None,
               "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    meta = read_meta(args.model)
    model_dir = write_model_dir(
        run.file("model"), load_config(args.model), vocab_path(args.model),
        classifier_tensors(train_model),
        {"do_lower_case": meta["do_lower_case"], "source": f"finetune of {args.model}",
         "task": {"type": "classification", "name": args.task, "labels": labels,
                  "pooling": args.pooling, "pair": train.texts_b is not None,
                  "max_seq_length": args.max_seq_length}}, overwrite=True)
    if epochs_run:
        plot_curves(metrics["history"], run.file("training_curve.png"))
    if not args.no_export:
        from bert_tf.export.savedmodel import export_all
        metrics["exports"] = export_all(model_dir, run.file("export"),
                                        seq_length=args.max_seq_length, overwrite=True)
    run.write_json("metrics.json", metrics)  # last: marks the run finished
    return metrics


def add_arguments(p) -> None:
    from bert_tf.layers.pooling import STRATEGIES as POOLINGS
    p.add_argument("--task", required=True, choices=("sst2", "mrpc", "tsv"))
    p.add_argument("--model", required=True, help="pretrained model dir")
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"),
                   help="folder with SST-2/ and MRPC/ (default $BERT_TF_DATA or ../shared/data)")
    p.add_argument("--out", required=True, help="run dir")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--learning-rate", type=float, default=1e-4,
                   help="peak learning rate (default from the sweep in BENCHMARKS.md)")
    p.add_argument("--batch-size", type=int, default=32, help="global batch size")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--warmup-proportion", type=float, default=0.1)
    p.add_argument("--train-limit", type=int, help="use the first N training examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pooling", default="pooled_output", choices=POOLINGS)
    p.add_argument("--reinit-pooler", action="store_true",
                   help="re-initialise the pooler's dense layer (drop its NSP-trained weights)")
    p.add_argument("--train", help="--task tsv: training TSV (with a header row)")
    p.add_argument("--dev", help="--task tsv: dev TSV")
    p.add_argument("--text-column", help="--task tsv: column of the text")
    p.add_argument("--text-b-column", help="--task tsv: column of the second text (pairs)")
    p.add_argument("--label-column", help="--task tsv: column of the label (read as strings)")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel exports")
    add_run_arguments(p)
