"""Fine-tuning a `BertSpanModel` for extractive question answering (SQuAD v1.1).

The span head is BERT's (`run_squad.py`): a dense layer from each token's final
hidden state to two logits, start and end (`cls/squad/output_weights` `[2, H]`,
`cls/squad/output_bias` `[2]`), with the loss the mean of the start and end
cross-entropies. The question and padding are masked out of the softmax; [CLS]
stays, as the target of windows that do not contain the answer.

Flow: SQuAD JSON -> `squad_data.read_squad` -> windowed features -> Keras `fit`
(bucketed by length) -> logits for every window of the prediction file ->
`squad_data.postprocess` -> `predictions.json`, `nbest_predictions.json` ->
the official v1.1 metric. The run dir also gets the fine-tuned model dir,
`metrics.json`, TensorBoard logs and the exports (`export/serving` takes
`question` and `context` strings).

Example (a tiny run: train on one short article, predict another; a real run
trains `saved_models/minilm` on articles "0:38" and predicts "38:48"):
    >>> import os
    >>> dev_file = os.path.join(data_dir, "SQuAD1.1", "dev-v1.1.json")
    >>> metrics = squad(SquadConfig(model=model_dir, train=dev_file, train_articles="2:3",
    ...                             predict=dev_file, predict_articles="29:30",
    ...                             max_seq_length=128, doc_stride=48, epochs=1,
    ...                             no_export=True, quiet=True, out=f"{tmp}/squad"))
    squad: 112 training questions -> 237 windows (89 without the answer); 98 questions ...
    >>> metrics["train_questions"], metrics["predict_questions"], 0 <= metrics["f1"] <= 100
    (112, 98, True)
    >>> sorted(os.listdir(f"{tmp}/squad"))     # without no_export: export/ too
    ['history.json', 'logs', 'metrics.json', 'model', 'nbest_predictions.json',
     'predictions.json', 'run.json']
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from bert_tf.choices import SQUAD_MICRO_BATCHES
from bert_tf.data.glue import make_dataset, training_epochs
from bert_tf.data.squad import SquadError, check_sizes, evaluate_file, make_features, \
    postprocess, read_squad
from bert_tf.models import BertSpanModel, load_encoder, load_preprocessor
from bert_tf.models.loading import check_model_dir
from bert_tf.optimizers import bert_optimizer
from bert_tf.training.micro_batch import use_micro_batches
from bert_tf.training.progress import LongStep, StepTimer
from bert_tf.training.resume import TensorBoard, TrainingState, fit_resumable
from bert_tf.training.run_dir import RunDir
from bert_tf.training.strategy import RunOptions, check_seed, fit_under_multi_worker, \
    prepare_training


# What a run writes besides `RunDir`'s files: `--overwrite` replaces these and no others.
OUTPUTS = ("model", "history.json", "predictions.json", "nbest_predictions.json")


@dataclasses.dataclass(kw_only=True)
class SquadConfig(RunOptions):
    """A SQuAD run (plus `RunOptions`).

    Attributes:
        model: the pretrained model dir.
        train, predict: SQuAD v1.1 JSON files to train on and to predict and score.
        out: the run dir.
        train_articles, predict_articles: `A:B`, the articles of each file to use.
        max_seq_length, doc_stride, max_query_length: windows, as run_squad.py.
        n_best_size, max_answer_length: post-processing, as run_squad.py.
        epochs, learning_rate, batch_size (global), warmup_proportion, seed: the recipe.
        no_export: skip the SavedModel exports.
        micro_batches: 16 here (`RunOptions` has 1): at length 384 a whole batch of 32
            holds ≈ 6 GB of activations; 16 slices of 2 keep the whole run under 3 GB
            (BENCHMARKS.md, "SQuAD memory").
    """
    model: str
    train: str
    predict: str
    out: str
    train_articles: str | None = None
    predict_articles: str | None = None
    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    epochs: int = 2
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_proportion: float = 0.1
    seed: int = 0
    no_export: bool = False
    micro_batches: int = SQUAD_MICRO_BATCHES

    def __post_init__(self):
        super().__post_init__()
        check_seed(self.seed)

    def run_args(self) -> dict:
        """The settings that define a run (a resumed run must repeat them)."""
        keys = ("model", "train", "predict", "train_articles", "predict_articles",
                "max_seq_length", "doc_stride", "max_query_length", "n_best_size",
                "max_answer_length", "epochs", "learning_rate", "batch_size",
                "warmup_proportion", "seed", "mixed_precision")
        return {"command": "squad", **{k: getattr(self, k) for k in keys}}


def predict_logits(model: keras.Model, features, batch_size: int):
    """Start and end logits of every window, in order: lists of `[width]` arrays
    (each batch is padded only to its longest window)."""
    ds = make_dataset(features.inputs(), np.zeros(len(features), np.int32), batch_size,
                      training=False)

    @tf.function(reduce_retracing=True, autograph=False)
    def logits(x):
        return model(x, training=False)

    starts, ends = [], []
    for x, _ in ds:
        out = logits(x).numpy()
        starts += list(out[:, 0])
        ends += list(out[:, 1])
    return starts, ends


def squad(config: SquadConfig, callbacks=()) -> dict:
    """Fine-tunes on `config.train`, predicts `config.predict` and scores it; returns the
    metrics (also in `OUT/metrics.json`, written last). A rerun of the same config
    resumes a killed run where it stopped. `callbacks`: more Keras callbacks for `fit`.
    See the module docstring."""
    run = RunDir(config.out, config.run_args(), config.overwrite, config.multi_worker, OUTPUTS)
    train, skipped = read_squad(config.train, config.train_articles, training=True)
    predict, _ = read_squad(config.predict, config.predict_articles)
    if not train:
        raise SquadError(f"{config.train}: no training question has a usable answer")
    check_model_dir(config.model).check_seq_length(config.max_seq_length, "max_seq_length")
    check_sizes(config.max_seq_length, config.doc_stride, config.max_query_length)
    preprocessor = load_preprocessor(config.model, config.max_seq_length)
    tokenizer = preprocessor.tokenizer
    state = run.check()
    strategy = prepare_training(config, seed=config.seed)
    sizes = (config.max_seq_length, config.doc_stride, config.max_query_length)
    train_features = make_features(tokenizer, train, *sizes, training=True)
    predict_features = make_features(tokenizer, predict, *sizes)  # checks the contexts too
    run.start(state)

    if skipped:
        print(f"note: skipped {len(skipped)} training questions whose answer text is not at "
              f"answer_start (as BERT does), e.g. {skipped[:3]}")
    labels = np.stack([train_features.start_positions, train_features.end_positions], axis=1)
    replicas = strategy.num_replicas_in_sync
    steps_per_epoch, epoch_data = training_epochs(train_features.inputs(), labels,
                                                  config.batch_size, config.seed,
                                                  min_batch=replicas)
    total_steps = steps_per_epoch * config.epochs
    print(f"squad: {len(train)} training questions -> {len(train_features)} windows "
          f"({int(np.sum(train_features.start_positions == 0))} without the answer); "
          f"{len(predict)} questions to predict -> {len(predict_features)} windows; "
          f"{steps_per_epoch} steps/epoch × {config.epochs} epochs on {replicas} replica(s)")

    with strategy.scope():
        model = BertSpanModel(load_encoder(config.model), preprocessor, config.max_query_length,
                              config.max_answer_length)
        model.compile(optimizer=bert_optimizer(config.learning_rate, total_steps,
                                               int(config.warmup_proportion * total_steps)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=config.jit_compile)
    use_micro_batches(model, config.micro_batches)
    fit_under_multi_worker(model, strategy)
    timer = StepTimer()
    callbacks = [TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50), timer,
                 *callbacks]
    backup = run.backup
    model_dir = run.file("model")
    trained = run.chief and os.path.exists(os.path.join(model_dir, "bert_tf.json"))
    start = time.time()
    if trained:  # a resumed run that had finished training: predict with that model
        print(f"note: {model_dir} holds the trained model of this run; predicting with it")
        model.set_weights(BertSpanModel.from_model_dir(model_dir).get_weights())
        with open(run.file("history.json")) as f:
            history = json.load(f)
    else:
        history, _ = fit_resumable(model, epoch_data, config.epochs, backup,
                                   config.checkpoint_every, callbacks, verbose=config.verbose)
    wall = time.time() - start
    if not run.chief:
        TrainingState(backup, model).remove()
        run.finish_worker()
        return {}
    if not trained:  # the trained model, and its history, before predicting
        run.write_json("history.json", history)
        model.save_model_dir(model_dir, meta={"source": f"squad fine-tune of {config.model}"},
                             overwrite=True)

    step = LongStep("prediction", f"{len(predict)} questions in {len(predict_features)} "
                    f"windows of {config.predict}")
    # predicting keeps no activations for a backward pass: twice the training slice
    starts, ends = predict_logits(model, predict_features,
                                  max(1, 2 * config.batch_size // config.micro_batches))
    predictions, nbest = postprocess(predict, predict_features, starts, ends, tokenizer.vocab,
                                     config.n_best_size, config.max_answer_length,
                                     tokenizer.lower_case)
    predict_wall = step.done()
    scores, unanswered = evaluate_file(config.predict, config.predict_articles, predictions)
    if unanswered:
        print(f"note: {unanswered} questions have no prediction and score 0")
    metrics = {**scores, "train_questions": len(train), "train_windows": len(train_features),
               "skipped_training_questions": len(skipped), "predict_questions": len(predict),
               "predict_windows": len(predict_features), "epochs": config.epochs,
               "train_wall_seconds": None if trained else round(wall, 1),
               # this process's steps after its first (the train function's tracing): a
               # resumed run times only the rest
               "train_windows_per_second": timer.per_second(2), **timer.summary(),
               "predict_wall_seconds": round(predict_wall, 1),
               "strategy": type(strategy).__name__, "replicas": replicas,
               "history": history}
    for name, obj in (("predictions.json", predictions), ("nbest_predictions.json", nbest)):
        run.write_json(name, obj)
    return run.finish(metrics, TrainingState(backup, model),
                      None if config.no_export else model_dir, config.max_seq_length)
