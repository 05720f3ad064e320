"""`bert-tf squad`: extractive question answering (SQuAD v1.1) on `sequence_output`.

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

Example:
    bert-tf squad --model saved_models/minilm --train dev-v1.1.json --train-articles 0:38 \\
        --predict dev-v1.1.json --predict-articles 38:48 --out runs/squad
"""
from __future__ import annotations

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from bert_tf.layers.heads import SpanLogits
from bert_tf.io.checkpoint import CKPT_NAME, read_checkpoint, read_meta, write_model_dir
from bert_tf.config import load_config
from bert_tf.data.glue import make_dataset
from bert_tf.models.encoder import encoder_checkpoint_variables, encoder_inputs
from bert_tf.models.loading import load_encoder, load_tokenizer
from bert_tf.data.squad import (SquadError, basic_tokenize, best_spans, check_sizes, final_text,
                                load_articles, make_features, postprocess, read_squad, split_context,
                                squad_v1_scores)
from bert_tf.preprocessing.tokenizer import vocab_path
from bert_tf.training.common import RunDir, add_run_arguments, bert_optimizer, \
    fit_under_multi_worker, prepare_training

HEAD_NAMES = ("cls/squad/output_weights", "cls/squad/output_bias")


def build_span_model(encoder: keras.Model, initializer_range: float = 0.02) -> keras.Model:
    """The three inputs -> `span_logits` `[B, 2, L]` (row 0 start, row 1 end).
    Spans use `sequence_output` only: `encoder`'s pooler is set non-trainable."""
    encoder.get_layer("pooler").trainable = False  # spans use sequence_output only
    inputs = encoder_inputs()
    sequence = encoder(inputs)["sequence_output"]
    logits = SpanLogits(initializer_range, name="span_logits")(
        sequence, inputs["input_mask"], inputs["input_type_ids"])
    return keras.Model(inputs, logits, name="bert_span")


def span_checkpoint_variables(model: keras.Model) -> dict:
    encoder = next(layer for layer in model.layers if "encoder" in layer.name)
    names = encoder_checkpoint_variables(encoder)
    head = model.get_layer("span_logits")
    names.update(zip(HEAD_NAMES, (head.kernel, head.bias)))
    return names


def span_tensors(model: keras.Model) -> dict[str, np.ndarray]:
    """Google names -> arrays; `output_weights` stored `[2, H]` as in run_squad.py."""
    out = {}
    for name, var in span_checkpoint_variables(model).items():
        value = np.asarray(keras.ops.convert_to_numpy(var))
        out[name] = value.T if name == HEAD_NAMES[0] else value
    return out


def load_span_model(model_dir: str, encoder: keras.Model | None = None) -> keras.Model:
    """The span model of a model dir written by `bert-tf squad`."""
    task = read_meta(model_dir).get("task") or {}
    if task.get("type") != "squad":
        raise ValueError(f"{model_dir} has no SQuAD head (bert_tf.json task is "
                         f"{task.get('type')!r})")
    model = build_span_model(encoder or load_encoder(model_dir))
    tensors = read_checkpoint(os.path.join(model_dir, CKPT_NAME))
    for name in HEAD_NAMES:
        if name not in tensors:
            raise ValueError(f"{model_dir}: missing tensor {name}")
    head = model.get_layer("span_logits")
    head.kernel.assign(tensors[HEAD_NAMES[0]].T)
    head.bias.assign(tensors[HEAD_NAMES[1]])
    return model


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


def evaluate_file(path: str, articles: str | None, predictions: dict) -> dict:
    scores, unanswered = squad_v1_scores([a for _, a in load_articles(path, articles)],
                                         predictions)
    if unanswered:
        print(f"note: {unanswered} questions have no prediction and score 0")
    return scores


def run_args(args) -> dict:
    keys = ("model", "train", "predict", "train_articles", "predict_articles", "max_seq_length",
            "doc_stride", "max_query_length", "n_best_size", "max_answer_length", "epochs",
            "learning_rate", "batch_size", "warmup_proportion", "seed", "mixed_precision")
    return {k: getattr(args, k, None) for k in keys}


def squad(args) -> dict:
    """Fine-tunes on `--train`, predicts `--predict`, scores it; see the module docstring."""
    run = RunDir(args.out, run_args(args), args.overwrite, args.strategy == "multi_worker")
    train, skipped = read_squad(args.train, args.train_articles, training=True)
    predict, _ = read_squad(args.predict, args.predict_articles)
    if not train:
        raise SquadError(f"{args.train}: no training question has a usable answer")
    check_sizes(args.max_seq_length, args.doc_stride, args.max_query_length)
    tokenizer = load_tokenizer(args.model)
    config = load_config(args.model)
    meta = read_meta(args.model)
    state = run.check()
    strategy = prepare_training(args, seed=args.seed)
    run.start(state)

    if skipped:
        print(f"note: skipped {len(skipped)} training questions whose answer text is not at "
              f"answer_start (as BERT does), e.g. {skipped[:3]}")
    sizes = (args.max_seq_length, args.doc_stride, args.max_query_length)
    train_features = make_features(tokenizer, train, *sizes, training=True)
    predict_features = make_features(tokenizer, predict, *sizes)
    labels = np.stack([train_features.start_positions, train_features.end_positions], axis=1)
    replicas = strategy.num_replicas_in_sync
    train_ds = make_dataset(train_features.inputs(), labels, args.batch_size, training=True,
                            seed=args.seed, min_batch=replicas)
    steps_per_epoch = sum(1 for _ in train_ds)
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    total_steps = steps_per_epoch * args.epochs
    print(f"squad: {len(train)} training questions -> {len(train_features)} windows "
          f"({int(np.sum(train_features.start_positions == 0))} without the answer); "
          f"{len(predict)} questions to predict -> {len(predict_features)} windows; "
          f"{steps_per_epoch} steps/epoch × {args.epochs} epochs on {replicas} replica(s)")

    with strategy.scope():
        model = build_span_model(load_encoder(args.model), config.initializer_range)
        model.compile(optimizer=bert_optimizer(args.learning_rate, total_steps,
                                               int(args.warmup_proportion * total_steps)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                      jit_compile=args.jit_compile)
    fit_under_multi_worker(model, strategy)
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(run.work_dir, "backup"),
                                         save_freq=args.checkpoint_every, double_checkpoint=True),
        keras.callbacks.TensorBoard(os.path.join(run.work_dir, "logs"), update_freq=50),
    ]
    model_dir = run.file("model")
    trained = run.chief and os.path.exists(os.path.join(model_dir, "bert_tf.json"))
    start = time.time()
    if trained:  # a resumed run that had finished training: predict with that model
        print(f"note: {model_dir} holds the trained model of this run; predicting with it")
        model.set_weights(load_span_model(model_dir).get_weights())
        history = keras.callbacks.History()
        with open(run.file("history.json")) as f:
            history.history = json.load(f)
    else:
        history = model.fit(train_ds, epochs=args.epochs, callbacks=callbacks,
                            verbose=2 if args.quiet else "auto")
    wall = time.time() - start
    if not run.chief:
        run.finish_worker()
        return {}
    if not trained:  # saved at once: BackupAndRestore drops its backup when fit ends
        run.write_json("history.json", {k: [float(v) for v in vs]
                                        for k, vs in history.history.items()})
        write_model_dir(
            model_dir, config, vocab_path(args.model), span_tensors(model),
            {"do_lower_case": meta["do_lower_case"],
             "source": f"squad fine-tune of {args.model}",
             "task": {"type": "squad", "max_seq_length": args.max_seq_length,
                      "max_query_length": args.max_query_length,
                      "max_answer_length": args.max_answer_length}}, overwrite=True)

    start_predict = time.time()
    starts, ends = predict_logits(model, predict_features, 2 * args.batch_size)
    predictions, nbest = postprocess(predict, predict_features, starts, ends, tokenizer.vocab,
                                     args.n_best_size, args.max_answer_length,
                                     meta["do_lower_case"])
    predict_wall = time.time() - start_predict
    scores = evaluate_file(args.predict, args.predict_articles, predictions)
    epochs_run = len(history.history.get("loss", []))
    metrics = {**scores, "train_questions": len(train), "train_windows": len(train_features),
               "skipped_training_questions": len(skipped), "predict_questions": len(predict),
               "predict_windows": len(predict_features), "epochs": args.epochs,
               "train_wall_seconds": None if trained else round(wall, 1),
               "train_windows_per_second": round(len(train_features) * epochs_run / wall, 2)
               if epochs_run and not trained else None,
               "predict_wall_seconds": round(predict_wall, 1),
               "strategy": type(strategy).__name__, "replicas": replicas,
               "history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    for name, obj in (("predictions.json", predictions), ("nbest_predictions.json", nbest)):
        run.write_json(name, obj)
    if not args.no_export:
        from bert_tf.export.savedmodel import export_all
        metrics["exports"] = export_all(model_dir, run.file("export"),
                                        seq_length=args.max_seq_length, overwrite=True)
    run.write_json("metrics.json", metrics)  # last: marks the run finished
    return metrics


# -- serving ------------------------------------------------------------------------------------

WHITESPACE = r"[ \t\r\n\x{202F}]+"  # run_squad's is_whitespace


def build_squad_serving_module(tokenizer, model: keras.Model, seq_length: int,
                               max_query_length: int, max_answer_length: int = 30):
    """`serving_default`: `question`, `context` (strings `[B]`) -> `start_logits`,
    `end_logits` `[B, L]`, and per token: `tokens` (WordPiece strings),
    `token_start` / `token_end` (the character span in `context` of the word the
    token belongs to; -1 outside the context), plus `context_truncated` `[B]` when
    the context did not fit in one window of `seq_length` tokens.
    `answer_from_outputs` turns one row into answer text."""
    if seq_length < max_query_length + 4:
        raise ValueError(f"seq_length {seq_length} leaves no room for the context after a "
                         f"question of up to {max_query_length} tokens")
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    root.model = model
    # What answer_from_outputs needs to cut answers as the model was trained to.
    root.do_lower_case = tf.Variable(tokenizer.lower_case, trainable=False)
    root.max_answer_length = tf.Variable(max_answer_length, trainable=False)
    vocab = tf.constant(tokenizer.vocab)
    cls = tokenizer.special_ids["start_of_sequence_id"]
    sep = tokenizer.special_ids["end_of_segment_id"]

    def serve(question, context):
        words, begin, _ = tf_text.regex_split_with_offsets(context, WHITESPACE)
        # Byte offsets -> character offsets (clients index Python strings): each word
        # starts at a character, found among the characters' byte offsets.
        _, char_bytes = tf.strings.unicode_decode_with_offsets(context, "UTF-8")
        char_begin = tf.searchsorted(char_bytes.to_tensor(default_value=tf.int64.max),
                                     begin.to_tensor(), out_type=tf.int32)
        char_begin = tf.RaggedTensor.from_tensor(char_begin, lengths=begin.row_lengths())
        char_begin = char_begin.flat_values
        char_end = char_begin + tf.strings.length(words.flat_values, unit="UTF8_CHAR")
        pieces = tokenizer.tokenize(words.flat_values).merge_dims(1, 2)   # [words, pieces]
        per_example = tf.math.unsorted_segment_sum(
            pieces.row_lengths(), words.value_rowids(), tf.shape(context, tf.int64)[0])
        doc = tf.RaggedTensor.from_row_lengths(pieces.flat_values, per_example)
        word_of_piece = tf.RaggedTensor.from_row_lengths(pieces.value_rowids(), per_example)
        query = tokenizer.tokenize(question).merge_dims(1, 2)[:, :max_query_length]
        room = seq_length - 3 - query.row_lengths()
        keep = tf.ragged.range(doc.row_lengths()) < tf.expand_dims(room, 1)
        doc = tf.ragged.boolean_mask(doc, keep)
        word_of_piece = tf.ragged.boolean_mask(word_of_piece, keep)
        ids, type_ids = tf_text.combine_segments([query, doc], cls, sep)
        width = tf.cast(tf.reduce_max(ids.row_lengths()), tf.int32)
        word_ids, mask = tf_text.pad_model_inputs(ids, width)
        type_ids, _ = tf_text.pad_model_inputs(type_ids, width)
        inputs = {"input_word_ids": tf.cast(word_ids, tf.int32),
                  "input_mask": tf.cast(mask, tf.int32),
                  "input_type_ids": tf.cast(type_ids, tf.int32)}
        logits = model(inputs, training=False)

        def place(values):  # per context token -> per position (width of ids), -1 elsewhere
            before = tf.ragged.range(query.row_lengths() + 2) * 0 - 1
            after = tf.ragged.range(tf.ones_like(query.row_lengths())) * 0 - 1
            row = tf.concat([before, tf.cast(values, tf.int64), after], axis=1)
            return tf.cast(row.to_tensor(default_value=-1), tf.int32)

        return {"start_logits": logits[:, 0], "end_logits": logits[:, 1],
                "tokens": tf.gather(vocab, inputs["input_word_ids"]),
                "token_start": place(tf.gather(char_begin, word_of_piece)),
                "token_end": place(tf.gather(char_end, word_of_piece)),
                "input_mask": inputs["input_mask"],
                "context_truncated": per_example > tf.maximum(room, 0)}

    root.serve = tf.function(serve, input_signature=[
        tf.TensorSpec([None], tf.string, name="question"),
        tf.TensorSpec([None], tf.string, name="context")])
    return root, {"serving_default": root.serve.get_concrete_function()}


WARMUP = {"question": ["Who wrote the play?", "When did it open?"],
          "context": ["The play was written by Anton Chekhov in 1895.",
                      "The theatre opened in 1901, six years after the play was written."]}


def answer_from_outputs(context: str, outputs: dict, row: int = 0, n_best_size: int = 20,
                        max_answer_length: int = 30, lower_case: bool = True) -> dict:
    """One row of the serving outputs -> `{"text", "score", "truncated"}`: the best
    span as `postprocess` chooses it, cut from the original context."""
    def get(key):
        value = outputs[key]
        return np.asarray(value.numpy() if hasattr(value, "numpy") else value)[row]

    start = get("token_start")
    valid = start >= 0
    spans = best_spans(get("start_logits"), get("end_logits"), valid, valid, n_best_size,
                       max_answer_length)
    truncated = bool(get("context_truncated"))
    if not spans:
        return {"text": "", "score": None, "truncated": truncated}
    sl, el, s, e = max(spans, key=lambda x: x[0] + x[1])
    words, _, char_to_word = split_context(context)
    first, last = char_to_word[start[s]], char_to_word[start[e]]
    tokens = [t.decode() if isinstance(t, bytes) else str(t) for t in get("tokens")[s:e + 1]]
    tok_text = " ".join(" ".join(tokens).replace(" ##", "").replace("##", "").strip().split())
    orig_text = " ".join(words[first:last + 1])
    text = final_text(tok_text, orig_text, basic_tokenize([orig_text], lower_case)[0])
    return {"text": text, "score": sl + el, "truncated": truncated}


def answer(export_dir: str, question: str, context: str, n_best_size: int = 20) -> dict:
    """Asks an exported SQuAD serving SavedModel: `answer(dir, "Who?", "...")["text"]`."""
    if not tf.saved_model.contains_saved_model(export_dir):
        raise SquadError(f"{export_dir}: no SavedModel here (pass export/serving/N of a "
                         "`bert-tf squad` run)")
    loaded = tf.saved_model.load(export_dir)
    serve = loaded.signatures["serving_default"]
    if "context" not in serve.structured_input_signature[1]:
        raise SquadError(f"{export_dir}: not a SQuAD export (its inputs are "
                         f"{sorted(serve.structured_input_signature[1])})")
    outputs = serve(question=tf.constant([question]), context=tf.constant([context]))
    return answer_from_outputs(context, outputs, n_best_size=n_best_size,
                               max_answer_length=int(loaded.max_answer_length.numpy()),
                               lower_case=bool(loaded.do_lower_case.numpy()))


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="pretrained model dir")
    p.add_argument("--train", required=True, help="SQuAD v1.1 JSON to train on")
    p.add_argument("--predict", required=True, help="SQuAD v1.1 JSON to predict and score")
    p.add_argument("--out", required=True, help="run dir")
    p.add_argument("--train-articles", help="A:B, the articles of --train to use")
    p.add_argument("--predict-articles", help="C:D, the articles of --predict to use")
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--n-best-size", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32, help="global batch size")
    p.add_argument("--warmup-proportion", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel exports")
    add_run_arguments(p)


def squad_eval(data_file: str, predictions_file: str, articles: str | None = None) -> dict:
    try:
        with open(predictions_file, encoding="utf-8") as f:
            predictions = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise SquadError(f"{predictions_file}: {e}") from None
    if not isinstance(predictions, dict):
        raise SquadError(f"{predictions_file}: expected a JSON object {{question id: answer}}")
    return evaluate_file(data_file, articles, predictions)
