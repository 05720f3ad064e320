"""SQuAD v1.1: features and post-processing against Model Garden's run_squad port
(`official.nlp.data.squad_lib`), the official metric, windows, training, serving."""
import collections
import json
import os

import numpy as np
import pytest

from bert_tf.data import squad as sd
from bert_tf.cli import main as cli
from tests.conftest import data_path, report

SIZES = dict(max_seq_length=128, doc_stride=48, max_query_length=24)  # many windows


def squad_file():
    return data_path("SQuAD1.1", "dev-v1.1.json")


@pytest.fixture(scope="module")
def first_answer_file(tmp_path_factory):
    """Articles 0-2 of the dev set with each question's first answer only (Model
    Garden's reader insists on one answer for training)."""
    with open(squad_file()) as f:
        articles = json.load(f)["data"][:3]
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = qa["answers"][:1]
    path = tmp_path_factory.mktemp("squad") / "first_answers.json"
    path.write_text(json.dumps({"data": articles, "version": "1.1"}))
    return str(path)


@pytest.fixture(scope="module")
def both(first_answer_file, tokenizer, vocab_file):
    """(our examples, features) and (Model Garden's examples, features), same input."""
    from official.nlp.data import squad_lib
    from official.nlp.tools import tokenization
    ours = sd.read_squad(first_answer_file, training=True)[0]
    features = sd.make_features(tokenizer, ours, **SIZES, training=True)
    theirs = squad_lib.read_squad_examples(first_answer_file, True, False)
    theirs_features = []
    squad_lib.convert_examples_to_features(
        theirs, tokenization.FullTokenizer(vocab_file, do_lower_case=True),
        SIZES["max_seq_length"], SIZES["doc_stride"], SIZES["max_query_length"], True,
        theirs_features.append)
    return (ours, features), (theirs, theirs_features)


def test_features_match_model_garden(both):
    (ours, f), (theirs, expected) = both
    assert len(ours) == len(theirs) and len(f) == len(expected)
    for i, e in enumerate(expected):
        assert f.input_word_ids[i].tolist() == e.input_ids, i
        assert f.input_mask[i].astype(int).tolist() == e.input_mask, i
        assert f.input_type_ids[i].tolist() == e.segment_ids, i
        context = f.token_to_word[i] >= 0
        assert {int(k): int(v) for k, v in zip(np.flatnonzero(context),
                                               f.token_to_word[i][context])} \
            == e.token_to_orig_map, i
        assert {int(k): bool(f.max_context[i][k]) for k in np.flatnonzero(context)} \
            == e.token_is_max_context, i
        assert (f.start_positions[i], f.end_positions[i], f.example_index[i]) \
            == (e.start_position, e.end_position, e.example_index), i
    windows = collections.Counter(f.example_index.tolist())
    report(f"SQuAD features: {len(f)} windows of {len(ours)} questions (articles 0-2, length "
           f"128, stride 48) identical to Model Garden's; up to {max(windows.values())} "
           f"windows a question, {int(np.sum(f.start_positions == 0))} without the answer")


def test_postprocess_matches_model_garden(both, tokenizer):
    from official.nlp.data import squad_lib
    (ours, f), (theirs, theirs_features) = both
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=(2, len(f), SIZES["max_seq_length"])).astype(np.float32)
    Result = collections.namedtuple("Result", ["unique_id", "start_logits", "end_logits"])
    results = [Result(x.unique_id, list(start[i]), list(end[i]))
               for i, x in enumerate(theirs_features)]
    expected, expected_nbest, _ = squad_lib.postprocess_output(
        theirs, theirs_features, results, 20, 30, do_lower_case=True)
    predictions, nbest = sd.postprocess(ours, f, start, end, tokenizer.vocab, 20, 30)
    assert predictions == dict(expected)
    for qid, entries in expected_nbest.items():
        assert [e["text"] for e in nbest[qid]] == [e["text"] for e in entries]
        np.testing.assert_allclose([e["probability"] for e in nbest[qid]],
                                   [e["probability"] for e in entries], atol=1e-6)


def test_oracle_logits_recover_gold_answers(tokenizer):
    examples, skipped = sd.read_squad(squad_file(), "38:41", training=True)
    f = sd.make_features(tokenizer, examples, 384, 128, 64, training=True)
    start = np.zeros(f.input_word_ids.shape, np.float32)
    end = np.zeros_like(start)
    has = f.start_positions > 0
    start[has, f.start_positions[has]] = 10.0
    end[has, f.end_positions[has]] = 10.0
    predictions, _ = sd.postprocess(examples, f, start, end, tokenizer.vocab)
    # Where the answer is a whole run of WordPieces, the original text comes back
    # exactly (up to runs of whitespace, which BERT's words join with one space);
    # otherwise (e.g. "Japan" inside "Japanese") BERT can only give the word.
    whole, exact = 0, 0
    answer_ids = sd.wordpieces(tokenizer, [e.answer_text for e in examples])
    for i, e in enumerate(examples):
        row = int(np.flatnonzero(f.example_index == i)[np.argmax(has[f.example_index == i])])
        span = f.input_word_ids[row, f.start_positions[row]:f.end_positions[row] + 1]
        if has[row] and span.tolist() == answer_ids[i].tolist():
            whole += 1
            exact += predictions[e.qas_id] == " ".join(e.answer_text.split())
    assert not skipped and exact == whole and whole >= 0.99 * len(examples)
    scores, _ = sd.squad_v1_scores(
        [a for _, a in sd.load_articles(squad_file(), "38:41")], predictions)
    assert scores["exact_match"] > 99.0
    report(f"SQuAD oracle logits (articles 38-40): {exact}/{whole} whole-WordPiece answers "
           f"recovered character for character; EM {scores['exact_match']:.2f}")


def test_long_contexts_are_windowed(tokenizer):
    words = [f"w{i}" if i % 7 else "token" for i in range(500)]
    context = " ".join(words)
    answer_at = 431
    example = sd.SquadExample("q1", "where is it?", context, *sd.split_context(context)[:2],
                              answers=[words[answer_at]])
    assert sd._set_answer(example, context.index(f" {words[answer_at]} ") + 1,
                          sd.split_context(context)[2])
    f = sd.make_features(tokenizer, [example], 64, 16, 8, training=True)
    doc_tokens = len(sd.wordpieces(tokenizer, [context])[0])
    room = 64 - 3 - len(sd.wordpieces(tokenizer, ["where is it?"])[0])
    assert len(f) == 1 + -(-(doc_tokens - room) // 16)  # the windows run_squad makes
    assert len(f) > 20 and f.input_mask.sum(1).max() == 64
    # Every context word is seen, and each token has exactly one max-context window.
    assert set(f.token_to_word[f.token_to_word >= 0].tolist()) == set(range(len(words)))
    per_token = collections.Counter()
    for row in range(len(f)):
        context_positions = np.flatnonzero(f.token_to_word[row] >= 0)
        first = 16 * row
        for k, pos in enumerate(context_positions):
            per_token[first + k] += int(f.max_context[row, pos])
    assert set(per_token.values()) == {1} and len(per_token) == doc_tokens
    # The answer is labelled in the windows that hold it, [CLS] (0) elsewhere.
    holds = [r for r in range(len(f)) if answer_at in f.token_to_word[r].tolist()]
    for r in range(len(f)):
        if r in holds:
            assert f.token_to_word[r, f.start_positions[r]] == answer_at
        else:
            assert f.start_positions[r] == f.end_positions[r] == 0


@pytest.mark.parametrize("prediction, truths, em, f1", [
    ("The Denver Broncos", ["Denver Broncos"], 1.0, 1.0),          # article dropped
    ("denver broncos!", ["Denver Broncos"], 1.0, 1.0),             # case and punctuation
    ("Broncos", ["Denver Broncos"], 0.0, 2 / 3),                   # P=1, R=1/2
    ("the Carolina Panthers team", ["Panthers", "Carolina Panthers"], 0.0, 0.8),
    ("Santa Clara", ["Levi's Stadium"], 0.0, 0.0),
    ("a an the", ["the"], 1.0, 0.0),                               # both normalise to ""
])
def test_official_metric_hand_checked(prediction, truths, em, f1):
    dataset = [{"paragraphs": [{"qas": [{"id": "x", "answers": [{"text": t} for t in truths]}]}]}]
    scores, unanswered = sd.squad_v1_scores(dataset, {"x": prediction})
    assert scores == pytest.approx({"exact_match": 100 * em, "f1": 100 * f1})
    assert unanswered == 0


def test_metric_matches_the_official_script_on_real_predictions(both):
    from official.nlp.tools import squad_evaluate_v1_1
    (ours, _), _ = both
    with open(squad_file()) as f:
        articles = json.load(f)["data"][:3]
    rng = np.random.default_rng(1)
    # Real-looking predictions: gold answers cut, widened, or another question's.
    predictions = {}
    for i, e in enumerate(ours[:-5]):
        words = e.answers[0].split() + (e.words[:2] if i % 3 == 0 else [])
        predictions[e.qas_id] = " ".join(words[:max(1, int(rng.integers(1, len(words) + 1)))]) \
            if i % 4 else ours[(i + 7) % len(ours)].answers[0]
    ours_scores, unanswered = sd.squad_v1_scores(articles, predictions)
    theirs = squad_evaluate_v1_1.evaluate(articles, predictions)
    assert unanswered == 5
    assert ours_scores["exact_match"] == pytest.approx(100 * theirs["exact_match"])
    assert ours_scores["f1"] == pytest.approx(100 * theirs["final_f1"])


def test_bad_files_name_article_and_question(tiny_model_dir, tmp_path, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"data": [{"title": "x", "paragraphs": [}')
    with pytest.raises(sd.SquadError, match=r"bad.json: not valid JSON \(line 1"):
        sd.read_squad(str(bad_json))
    data = {"data": [{"title": "Oxygen", "paragraphs": [{"context": "Oxygen is an element.",
                                                         "qas": [{"id": "q7", "answers": []}]}]}]}
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps(data))
    with pytest.raises(sd.SquadError, match=r"article 0 \('Oxygen'\), question q7: missing field "
                                            r"'question'"):
        sd.read_squad(str(missing))
    assert cli(["squad", "--model", tiny_model_dir, "--train", str(missing), "--predict",
                str(missing), "--out", str(tmp_path / "run")]) == 2
    assert "question q7: missing field 'question'" in capsys.readouterr().err
    assert cli(["squad-eval", squad_file(), str(bad_json)]) == 2
    assert "bad.json: not valid JSON (line 1, column 41: Expecting value)" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert cli(["squad", "--model", tiny_model_dir, "--train", squad_file(), "--predict",
                squad_file(), "--out", str(tmp_path / "run"), "--max-seq-length", "128",
                "--doc-stride", "100"]) == 2
    assert "--doc-stride 100 is longer than a window's context" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_shared_question_ids_are_refused_naming_both(tmp_path):
    """Predictions are keyed by question id: a second question with the same id used to
    lose its prediction (2026-12-07, commit 1691735: `squad --predict` exited 0 with one
    of two such questions dropped)."""
    def paragraph(context, qid, question):
        return {"context": context, "qas": [{"id": qid, "question": question, "answers": [
            {"text": context.split()[0], "answer_start": 0}]}]}
    data = {"data": [{"title": "Oxygen", "paragraphs": [
                          paragraph("Oxygen is an element.", "q1", "What is an element?"),
                          paragraph("Water is wet.", "q2", "What is wet?")]},
                     {"title": "Iron", "paragraphs": [
                          paragraph("Iron rusts.", "q3", "What rusts?"),
                          paragraph("Iron is a metal.", "q2", "What is a metal?")]}]}
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(data))
    for training in (False, True):
        with pytest.raises(sd.SquadError) as e:
            sd.read_squad(str(path), training=training)
        assert str(e.value) == (f"{path}: question id 'q2' is used twice, in article 0 "
                                "('Oxygen'), paragraph 1 and in article 1 ('Iron'), paragraph 1")
    # the article range decides: each range alone has unique ids
    assert [x.qas_id for x in sd.read_squad(str(path), "0:1")[0]] == ["q1", "q2"]
    assert [x.qas_id for x in sd.read_squad(str(path), "1:2")[0]] == ["q3", "q2"]


@pytest.mark.parametrize("context", ["", "  \n\t\u202f "])
def test_contexts_without_words_are_refused(tmp_path, context):
    """A context with no words has no window to answer from: an error naming it when
    the file is read, not a crash after the run claimed its folder (2026-12-07, commit
    1691735)."""
    data = {"data": [{"title": "Oxygen", "paragraphs": [
        {"context": "Oxygen is an element.", "qas": []},
        {"context": context, "qas": [{"id": "q1", "question": "What?", "answers": []}]}]}]}
    path = tmp_path / "empty.json"
    path.write_text(json.dumps(data))
    with pytest.raises(sd.SquadError) as e:
        sd.read_squad(str(path))
    assert str(e.value) == (f"{path}: article 0 ('Oxygen'), paragraph 1: the context has no "
                            "words (it is empty or only whitespace)")


def test_contexts_without_wordpieces_are_refused(tmp_path, tokenizer):
    """A context of characters BERT's tokenizer drops (a no-break space, a zero-width
    space, a control character) has words but no tokens: an error naming it, not a
    ValueError from an empty window list (2026-12-07, commit 1691735)."""
    data = {"data": [{"title": "Oxygen", "paragraphs": [
        {"context": "Oxygen is an element.", "qas": [{"id": "q1", "question": "What?",
                                                       "answers": []}]},
        {"context": "\u00a0\u200b\x07", "qas": [{"id": "q2", "question": "What?",
                                                  "answers": []}]}]}]}
    path = tmp_path / "dropped.json"
    path.write_text(json.dumps(data))
    examples, _ = sd.read_squad(str(path))
    with pytest.raises(sd.SquadError) as e:
        sd.make_features(tokenizer, examples, 64, 32, 16)
    assert str(e.value) == (f"{path}: article 0 ('Oxygen'), paragraph 1: the context has no "
                            "WordPiece tokens (only characters BERT's tokenizer drops)")


@pytest.mark.parametrize("which", ["data", "predictions"])
def test_json_nested_too_deep_is_one_error_naming_the_file(tmp_path, which):
    """Python's json module cannot parse 100,000 nested lists (RecursionError, 2026-12-07,
    commit 1691735): a SquadError naming the file instead."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data": []}) if which == "predictions" else "{}")
    data, predictions = (deep, good) if which == "data" else (good, deep)
    with pytest.raises(sd.SquadError) as e:
        sd.squad_eval(str(data), str(predictions))
    assert str(e.value) == f"{deep}: JSON nested too deeply to read"


def test_answers_not_at_answer_start_are_skipped_and_counted(tmp_path):
    qas = [{"id": "good", "question": "What is oxygen?",
            "answers": [{"text": "an element", "answer_start": 10}]},
           {"id": "moved", "question": "What is it?",
            "answers": [{"text": "an element", "answer_start": 0}]},
           {"id": "outside", "question": "What?", "answers": [{"text": "x", "answer_start": 99}]}]
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "Oxygen is an element.", "qas": qas}]}]}))
    examples, skipped = sd.read_squad(str(path), training=True)
    assert [e.qas_id for e in examples] == ["good"] and skipped == ["moved", "outside"]
    assert (examples[0].start_word, examples[0].end_word) == (2, 3)
    assert len(sd.read_squad(str(path))[0]) == 3  # predicting needs no answer positions


@pytest.mark.slow
def test_tiny_squad_run_learns_and_writes_everything(tiny_model_dir, tmp_path, capsys,
                                                    saved_models_loaded_once, monkeypatch):
    out = tmp_path / "run"
    args = ["squad", "--model", tiny_model_dir, "--train", squad_file(), "--train-articles",
            "2:3", "--predict", squad_file(), "--predict-articles", "8:9", "--out", str(out),
            "--max-seq-length", "128", "--doc-stride", "48", "--epochs", "3",
            "--batch-size", "16", "--learning-rate", "1e-3", "--quiet"]
    assert cli(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    loss = metrics["history"]["loss"]
    assert loss[-1] < loss[0] - 0.5, loss
    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert len(predictions) == metrics["predict_questions"] == 108 and set(nbest) == set(
        predictions)
    assert all(abs(sum(e["probability"] for e in v) - 1) < 1e-5 for v in nbest.values())
    assert (out / "model" / "bert_tf.json").exists() and (out / "export" / "serving" / "1").exists()
    capsys.readouterr()
    assert cli(["squad-eval", squad_file(), str(out / "predictions.json"),
                "--articles", "8:9"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(
        {"exact_match": metrics["exact_match"], "f1": metrics["f1"]})
    report(f"SQuAD tiny run (random BERT-tiny, 3 epochs of article 2): loss "
           f"{loss[0]:.2f} -> {loss[-1]:.2f}")

    # The run's serving export answers as the run predicted, through
    # `bert_tf.inference.squad.answer` and `bert-tf squad-answer`, for every question
    # whose context fits one window (serving reads one window; the run reads all);
    # `answer` loads the export each time: here it is loaded once (saved_models_loaded_once).
    from bert_tf.inference.squad import answer
    from bert_tf.preprocessing import BertTokenizer
    export = str(out / "export" / "serving" / "1")
    examples, _ = sd.read_squad(squad_file(), "8:9")
    features = sd.make_features(BertTokenizer(os.path.join(tiny_model_dir, "vocab.txt")),
                                examples, 128, 48, 64)
    one_window = [e for e, n in zip(examples, np.bincount(features.example_index)) if n == 1]
    assert len(one_window) == 16
    for e in one_window:
        got = answer(export, e.question, e.context)
        best = nbest[e.qas_id][0]
        assert (got["text"], got["truncated"]) == (predictions[e.qas_id], False), e.qas_id
        assert got["score"] == pytest.approx(best["start_logit"] + best["end_logit"], abs=1e-4)
    assert len({predictions[e.qas_id] for e in one_window}) > 1  # not one fixed span
    e = one_window[3]
    (tmp_path / "context.txt").write_text(e.context, encoding="utf-8")
    capsys.readouterr()
    assert cli(["squad-answer", "--export", export, "--question", e.question,
                "--context-file", str(tmp_path / "context.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == predictions[e.qas_id]
    long_context = " ".join(x.context for x in examples[:40])
    assert cli(["squad-answer", "--export", export, "--question", e.question,
                "--context", long_context]) == 0
    assert "only its start was read" in capsys.readouterr().err
    assert cli(args) == 2  # a finished run is not overwritten
    # Stopped after training (no metrics.json yet): the rerun predicts with the saved
    # model instead of training again, and gives the same answers. Its export (the
    # first run's, checked above, written again) is only recorded here: a second
    # export would cost half a minute and check nothing new.
    from bert_tf.training import run_dir
    exported = []
    monkeypatch.setattr(run_dir, "export_model", lambda model, base, **kwargs: exported.append(
        (type(model).__name__, base, kwargs)) or metrics["exports"])
    (out / "metrics.json").unlink()
    capsys.readouterr()
    assert cli(args) == 0
    assert "holds the trained model of this run" in capsys.readouterr().out
    assert json.loads((out / "predictions.json").read_text()) == predictions
    assert exported == [("BertSpanModel", str(out / "export"),
                         {"seq_length": 128, "overwrite": True})]


@pytest.mark.slow
def test_serving_export_answers_as_the_python_path(minilm_dir, tokenizer, tmp_path):
    """A span head on MiniLM: the serving SavedModel (question, context strings) gives
    the same tokens, logits and answers as features + model + postprocess."""
    import keras
    import tensorflow as tf
    import bert_tf
    from bert_tf.inference.squad import answer_from_outputs
    from bert_tf.training.squad import predict_logits
    keras.utils.set_random_seed(3)
    model = bert_tf.BertSpanModel(bert_tf.load_encoder(minilm_dir),
                                  bert_tf.load_preprocessor(minilm_dir, 384))
    head = model.get_layer("span_logits")  # a wide head: distinct answers
    head.kernel.assign(keras.random.truncated_normal(head.kernel.shape, stddev=0.5, seed=3))
    model_dir = model.save_model_dir(str(tmp_path / "m"))
    serving = bert_tf.export_model(bert_tf.load_model(model_dir), str(tmp_path / "export"),
                                   seq_length=384)["serving"]
    examples, _ = sd.read_squad(squad_file(), "38:39")
    examples = examples[:6]
    examples[0].context = examples[0].context.replace(" ", "\u00a0 \n", 3)  # odd whitespace
    examples[0].words, examples[0].word_starts, _ = sd.split_context(examples[0].context)
    f = sd.make_features(tokenizer, examples, 384, 128, 64)
    assert len(f) == len(examples)  # one window each
    starts, ends = predict_logits(model, f, 8)
    predictions, _ = sd.postprocess(examples, f, starts, ends, tokenizer.vocab)
    serve = tf.saved_model.load(serving).signatures["serving_default"]
    for i, e in enumerate(examples):
        out = serve(question=tf.constant([e.question]), context=tf.constant([e.context]))
        n = int(f.input_mask[i].sum())
        tokens = [t.decode() for t in out["tokens"][0].numpy()]
        assert tokens == [tokenizer.vocab[t] for t in f.input_word_ids[i, :n]]
        context = f.token_to_word[i, :n] >= 0
        np.testing.assert_allclose(out["start_logits"][0].numpy()[context],
                                   starts[i][:n][context], atol=1e-4)
        begin = out["token_start"][0].numpy()
        assert [e.word_starts[w] for w in f.token_to_word[i, :n][context]] \
            == begin[context].tolist()
        assert answer_from_outputs(e.context, out)["text"] == predictions[e.qas_id]
        assert not out["context_truncated"][0]

    # One batch of two: a short context with accents and an emoji, and one far longer
    # than a window (its first window is what serving sees, and it says so).
    short = "Zoë 🎉 met   José in Zürich\u00a0in 1999."
    long_context = " ".join(e.context for e in examples) * 3
    batch = [sd.SquadExample("a", "Who met José?", short, *sd.split_context(short)[:2], []),
             sd.SquadExample("b", examples[1].question, long_context,
                             *sd.split_context(long_context)[:2], [])]
    f = sd.make_features(tokenizer, batch, 384, 128, 64)
    out = serve(question=tf.constant([b.question for b in batch]),
                context=tf.constant([b.context for b in batch]))
    assert out["context_truncated"].numpy().tolist() == [False, True]
    starts, _ = predict_logits(model, f, 8)
    for i, b in enumerate(batch):
        row = int(np.flatnonzero(f.example_index == i)[0])  # the first window
        n = int(f.input_mask[row].sum())
        context = f.token_to_word[row, :n] >= 0
        tokens = [t.decode() for t in out["tokens"][i].numpy()[:n]]
        assert tokens == [tokenizer.vocab[t] for t in f.input_word_ids[row, :n]]
        begin, end = out["token_start"][i].numpy()[:n], out["token_end"][i].numpy()[:n]
        words = f.token_to_word[row, :n][context]
        assert [b.word_starts[w] for w in words] == begin[context].tolist()
        assert [b.context[s:t] for s, t in zip(begin[context], end[context])] \
            == [b.words[w] for w in words]  # character offsets, not bytes
        np.testing.assert_allclose(out["start_logits"][i].numpy()[:n][context],
                                   starts[row][:n][context], atol=1e-4)


@pytest.mark.slow
def test_micro_batches_train_the_same_steps(tiny_model_dir, tmp_path):
    """`squad --micro-batches 4` (each batch of 16 in 4 slices of 4, one after another)
    trains the same steps as whole batches when nothing is random (no dropout): same
    losses, same weights within float32 reordering. Catches a slice left out or counted
    twice, and a loss tracker that averages slices wrongly."""
    from bert_tf.io.checkpoint import read_checkpoint
    from tests.conftest import no_dropout_copy
    model = no_dropout_copy(tiny_model_dir, tmp_path / "model")
    runs = {}
    for n in ("1", "4"):
        out = tmp_path / f"m{n}"
        assert cli(["squad", "--model", model, "--train", squad_file(), "--train-articles",
                    "2:3", "--predict", squad_file(), "--predict-articles", "8:9", "--out",
                    str(out), "--max-seq-length", "128", "--doc-stride", "48", "--epochs", "1",
                    "--batch-size", "16", "--learning-rate", "1e-3", "--micro-batches", n,
                    "--no-export", "--quiet"]) == 0
        runs[n] = (json.loads((out / "metrics.json").read_text()),
                   read_checkpoint(str(out / "model" / "bert_model.ckpt")))
    (m1, w1), (m4, w4) = runs["1"], runs["4"]
    start = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    moved = max(np.abs(w1[k] - start[k]).max() for k in start)
    diff = max(np.abs(w1[k] - w4[k]).max() for k in w1)
    report(f"squad --micro-batches 4 vs 1 (tiny, no dropout): loss {m4['history']['loss'][0]:.6f}"
           f" vs {m1['history']['loss'][0]:.6f}, weights max |diff| {diff:.1e} "
           f"(moved {moved:.1e})")
    assert m4["history"]["loss"][0] == pytest.approx(m1["history"]["loss"][0], rel=1e-5)
    assert diff < 0.02 * moved
    assert (m4["exact_match"], m4["f1"]) == pytest.approx((m1["exact_match"], m1["f1"]), abs=1)


def test_micro_batches_refuse_xla():
    """Micro-batches sum sparse gradients whose rows grow slice by slice, which XLA
    cannot compile: `--micro-batches` with `--jit-compile` must stop with a clear error
    before training, not fail deep inside the first traced step."""
    import keras
    from bert_tf.errors import ConfigError
    from bert_tf.training.micro_batch import use_micro_batches
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse", jit_compile=True)
    with pytest.raises(ConfigError, match="XLA"):
        use_micro_batches(model, 4)
