"""`bert-tf pretrain`: masked-LM + next-sentence pre-training with Keras `fit`.

The model is the encoder with BERT's two heads (`bert_tf.layers.heads`): the MLM head on
the masked positions (weights tied to the word embeddings) and the NSP head on
`pooled_output`, which is where the pooler's weights are trained. Loss: the MLM
cross-entropy averaged over the real masked positions (BERT's
`sum(w * loss) / sum(w)`) plus the NSP cross-entropy.

`--out` becomes a model dir with both heads (`cls/predictions/...`,
`cls/seq_relationship/...`), so `finetune`, `export` (the encoder's `.mlm`) and
`convert --to google` take it as it is. The same folder keeps the run's state:
`run.json`, `backup/` (resume after a kill), `logs/` (TensorBoard),
`metrics.json` (written last) and `pretraining_curves.png`.

Example:
    bert-tf pretrain --config tiny --vocab vocab.txt --train 'data/train.tfrecord*' \\
        --eval data/eval.tfrecord --out runs/bert-tiny --steps 2000 --batch-size 64
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.io.checkpoint import CKPT_NAME, read_checkpoint, read_meta, write_model_files
from bert_tf.config import BertConfig, load_config
from bert_tf.models.encoder import build_encoder, encoder_checkpoint_variables
from bert_tf.models.pretrainer import build_pretraining_model, pretraining_heads
from bert_tf.models.loading import assign
from bert_tf.data.pretraining import MaskingVocab, pretraining_dataset
from bert_tf.preprocessing.tokenizer import vocab_path
from bert_tf.training.common import RunDir, add_run_arguments, bert_optimizer, \
    fit_under_multi_worker, prepare_training


def resolve_model(args) -> tuple[BertConfig, str, dict | None, bool]:
    """(config, vocab file, initial tensors or None, do_lower_case) from --config/--init."""
    if bool(args.config) == bool(args.init):
        raise ValueError("pass exactly one of --config (a preset or CONFIG.json) and --init")
    if args.init:
        tensors = read_checkpoint(os.path.join(args.init, CKPT_NAME))
        return (load_config(args.init), args.vocab or vocab_path(args.init), tensors,
                read_meta(args.init)["do_lower_case"])
    if not args.vocab:
        raise ValueError("--config needs --vocab")
    if not os.path.exists(args.vocab):
        raise FileNotFoundError(f"--vocab {args.vocab}: no such file")
    with open(args.vocab, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    if os.path.exists(args.config):
        config = BertConfig.from_json_file(args.config)
        if config.vocab_size != vocab_size:
            raise ValueError(f"{args.config}: vocab_size {config.vocab_size}, but "
                             f"{args.vocab} has {vocab_size} tokens")
    else:
        config = BertConfig.preset(args.config, vocab_size=vocab_size)
    return config, args.vocab, None, not args.cased


def build(config: BertConfig, tensors: dict | None, seed: int) -> keras.Model:
    """The pre-training model; `tensors` (a checkpoint) initialise what they name,
    the rest (e.g. heads missing from a fine-tuning checkpoint) is drawn from `seed`."""
    keras.utils.set_random_seed(seed)
    encoder = build_encoder(config)
    model = build_pretraining_model(encoder, config)
    if tensors is not None:
        assign(encoder_checkpoint_variables(encoder), tensors, "--init")
        heads = {k: v for k, v in pretraining_heads(model).items() if k in tensors}
        assign(heads, tensors, "--init")
    return model


def model_tensors(model: keras.Model) -> dict[str, np.ndarray]:
    encoder = model.get_layer("bert_mlm").get_layer("bert_encoder")
    names = {**encoder_checkpoint_variables(encoder), **pretraining_heads(model)}
    return {k: np.asarray(keras.ops.convert_to_numpy(v)) for k, v in names.items()}


def plot_curves(history: dict, steps_per_epoch: int, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [steps_per_epoch * (i + 1) for i in range(len(history["loss"]))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key, title in zip(axes, ("loss", "mlm_accuracy", "nsp_accuracy"),
                              ("total loss", "masked-LM accuracy", "next-sentence accuracy")):
        for prefix, label in (("", "train"), ("val_", "eval")):
            if prefix + key in history:
                ax.plot(steps, history[prefix + key], marker="o", label=label)
        ax.set(xlabel="step", title=title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def majority_baseline(eval_ds) -> float:
    """Accuracy of always predicting the most frequent masked token of the eval set."""
    labels = []
    for _, y, w in eval_ds:
        labels.append(y["mlm_logits"].numpy()[w["mlm_logits"].numpy() > 0])
    labels = np.concatenate(labels)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0


def run_args(args) -> dict:
    keys = ("config", "init", "vocab", "train", "eval", "steps", "batch_size", "learning_rate",
            "warmup_steps", "optimizer", "mixed_precision", "dynamic_masking", "masked_lm_prob",
            "seed", "steps_per_epoch", "cased")
    return {k: getattr(args, k, None) for k in keys}


def pretrain(args) -> dict:
    run = RunDir(args.out, run_args(args), args.overwrite, args.strategy == "multi_worker")
    config, vocab_file, tensors, lower_case = resolve_model(args)
    if args.steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be positive")
    state = run.check()
    strategy = prepare_training(args, seed=None)  # build() seeds the model's weights

    per_epoch = min(args.steps_per_epoch, args.steps)
    epochs = -(-args.steps // per_epoch)
    vocab = MaskingVocab.from_file(vocab_file)
    backup = os.path.join(run.work_dir, "backup")
    # A resumed run continues with a fresh shuffle (the data position is not saved).
    resumed_epoch = 0
    meta_file = os.path.join(backup, "training_metadata.json")
    if state == "resume" and os.path.exists(meta_file):
        with open(meta_file) as f:
            resumed_epoch = int(json.load(f).get("epoch", 0))
    train_ds = pretraining_dataset(args.train, args.batch_size, training=True,
                                   seed=args.seed + resumed_epoch,
                                   dynamic_masking=args.dynamic_masking, vocab=vocab,
                                   masked_lm_prob=args.masked_lm_prob)
    eval_ds = None
    if args.eval:
        eval_ds = pretraining_dataset(args.eval, args.batch_size, training=False)
        # a known size keeps Keras from warning that validation "ran out of data"
        eval_ds = eval_ds.apply(tf.data.experimental.assert_cardinality(
            sum(1 for _ in eval_ds)))
    run.start(state)

    with strategy.scope():
        model = build(config, tensors, args.seed)
        model.compile(
            optimizer=bert_optimizer(args.learning_rate, per_epoch * epochs, args.warmup_steps,
                                     name=args.optimizer),
            loss={"mlm_logits": keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True, reduction="mean_with_sample_weight"),
                  "nsp_logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
            weighted_metrics={"mlm_logits": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
                              "nsp_logits": [keras.metrics.SparseCategoricalAccuracy("accuracy")]},
            jit_compile=args.jit_compile)
    fit_under_multi_worker(model, strategy)
    print(f"pre-training {config.num_hidden_layers} layers × {config.hidden_size}: "
          f"{args.steps} steps of {args.batch_size} ({epochs} × {per_epoch}) on "
          f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")
    callbacks = [
        keras.callbacks.BackupAndRestore(backup, save_freq=args.checkpoint_every,
                                         double_checkpoint=True),
        keras.callbacks.TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50),
    ]
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=per_epoch,
                        validation_data=eval_ds, callbacks=callbacks,
                        verbose=2 if args.quiet else "auto")
    wall = time.time() - start
    hist = {rename(k): [float(v) for v in vs] for k, vs in history.history.items()}
    if not run.chief:
        run.finish_worker()
        return hist
    metrics = {"steps": per_epoch * epochs, "batch_size": args.batch_size,
               "train_wall_seconds": round(wall, 1),
               "examples_per_second": round(per_epoch * len(hist.get("loss", [])) *
                                            args.batch_size / wall, 1) if wall else None,
               "history": hist}
    for key in ("loss", "mlm_accuracy", "nsp_accuracy", "mlm_loss", "nsp_loss"):
        for prefix, name in (("", "train"), ("val_", "eval")):
            if prefix + key in hist:
                metrics[f"{name}_{key}"] = hist[prefix + key][-1]
    if eval_ds is not None:
        metrics["eval_most_frequent_token_accuracy"] = majority_baseline(eval_ds)
    write_model_files(run.path, config, vocab_file, model_tensors(model),
                      {"do_lower_case": lower_case,
                       "source": f"bert-tf pretrain ({args.config or args.init})"})
    if hist.get("loss"):
        plot_curves(hist, per_epoch, run.file("pretraining_curves.png"))
    run.write_json("metrics.json", metrics)
    return metrics


def rename(key: str) -> str:
    """Keras' `mlm_logits_accuracy` -> `mlm_accuracy` (and the `val_` forms)."""
    return key.replace("mlm_logits_", "mlm_").replace("nsp_logits_", "nsp_")


def add_arguments(p) -> None:
    p.add_argument("--config", help="preset (tiny, mini, small, medium, base, large) or a "
                   "CONFIG.json, for a model drawn at random")
    p.add_argument("--init", help="model dir to start from instead of --config")
    p.add_argument("--vocab", help="vocab.txt (default with --init: the model's own)")
    p.add_argument("--cased", action="store_true", help="with --config: do not lower-case")
    p.add_argument("--train", required=True, help="TFRecord file pattern")
    p.add_argument("--eval", help="TFRecord file pattern, evaluated after every epoch")
    p.add_argument("--out", required=True, help="model dir to write (also holds the run state)")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--steps-per-epoch", type=int, default=1000,
                   help="steps between evaluations and log lines")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=1000)
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "lamb"))
    p.add_argument("--dynamic-masking", action="store_true",
                   help="draw new masks every epoch in tf.data (the records' masks are undone)")
    p.add_argument("--masked-lm-prob", type=float, default=0.15, help="for --dynamic-masking")
    p.add_argument("--seed", type=int, default=0)
    add_run_arguments(p)
