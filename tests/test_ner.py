"""Named entities end to end: `bert-tf finetune --task ner / wnut17` (run dir, metrics with
the dev set's entity scores, bad files refused before anything is written) and the
serving export's entities with code-point offsets into the text as given."""
import json
import os

import numpy as np
import pytest

import tensorflow as tf

import bert_tf
from bert_tf.cli import main as cli
from bert_tf.data.conll import read_conll
from bert_tf.models.token_classifier import split_text
from bert_tf.training.entities import entity_scores
from tests.conftest import data_path

WNUT = {"train": "wnut17train.conll", "dev": "emerging.dev.conll"}


def first_sentences(source: str, target, n: int) -> str:
    """The first `n` sentences of a CoNLL file, written to `target` as CoNLL."""
    data = read_conll(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join("".join(f"{w}\t{t}\n" for w, t in zip(words, tags))
                                for words, tags in zip(data.words[:n], data.tags[:n])),
                      encoding="utf-8")
    return str(target)


@pytest.fixture(scope="module")
def wnut_dir(tmp_path_factory):
    """A data dir whose WNUT-17/ holds the first 40 training and 60 dev sentences."""
    root = tmp_path_factory.mktemp("data")
    for split, n in (("train", 40), ("dev", 60)):
        first_sentences(data_path("WNUT-17", WNUT[split]), root / "WNUT-17" / WNUT[split], n)
    return str(root)


@pytest.fixture(scope="module")
def wnut_run(tiny_model_dir, wnut_dir, tmp_path_factory):
    """`bert-tf finetune --task wnut17` of the tiny model: 40 sentences, seq 32, 1 epoch,
    with its exports."""
    out = tmp_path_factory.mktemp("runs") / "wnut17"
    assert cli(["finetune", "--task", "wnut17", "--model", tiny_model_dir, "--data-dir",
                wnut_dir, "--out", str(out), "--max-seq-length", "32", "--batch-size", "8",
                "--epochs", "1", "--quiet"]) == 0
    return out


def test_wnut17_run_records_the_entity_scores_of_its_model(wnut_run, wnut_dir):
    """metrics.json's dev scores are `entity_scores` of the saved model's predictions on
    the dev file (not of another epoch's model, nor the token accuracy), per type too;
    the run dir holds what other tasks' runs hold."""
    assert sorted(os.listdir(wnut_run)) == ["export", "logs", "metrics.json", "model",
                                            "run.json", "training_curve.png"]
    metrics = json.loads((wnut_run / "metrics.json").read_text())
    dev = read_conll(os.path.join(wnut_dir, "WNUT-17", WNUT["dev"]))
    model = bert_tf.load_model(str(wnut_run / "model"))
    assert type(model) is bert_tf.BertTokenClassifier and model.preprocessor.seq_length == 32
    scores = entity_scores(dev.tags, model.predict(dev.words))
    assert metrics["dev_entities"] == scores
    assert (metrics["dev_precision"], metrics["dev_recall"], metrics["dev_f1"]) == \
        (scores["precision"], scores["recall"], scores["f1"])
    assert metrics["history"]["dev_f1"] == [scores["f1"]]
    assert (metrics["train_examples"], metrics["dev_examples"], metrics["steps_per_epoch"]) == \
        (40, 60, 5)
    assert scores["true_entities"] == sum(1 for tags in dev.tags for t in tags if t[0] == "B")
    run = json.loads((wnut_run / "run.json").read_text())
    assert (run["task"], run["tag_column"]) == ("wnut17", None)
    assert sorted(os.listdir(wnut_run / "export")) == ["encoder", "preprocessor", "serving"]


@pytest.mark.parametrize("train,dev,extra,message", [
    ("Anna\tB-person\n\n\nParis\tB-location\n", "Rome\tB-location\n", (),
     "train.conll, line 3: an empty sentence"),
    ("Anna\tB-person\n", "Rome\tX-location\n", (), "dev.conll, line 1: tag 'X-location' is not"),
    ("Anna\tB-person\n", "Rome\n", (), "dev.conll, line 1: no tag (column -1)"),
    ("Anna NNP B-person\n", "Rome NNP B-location\n", ("--tag-column", "1"),
     "train.conll, line 1: tag 'NNP' is not IOB2"),
    ("Anna\tB-person\n", None, (), "ner: looked for"),
])
def test_bad_conll_files_exit_2_naming_file_and_line_and_write_nothing(
        tiny_model_dir, tmp_path, capsys, train, dev, extra, message):
    paths = {}
    for split, text in (("train", train), ("dev", dev)):
        paths[split] = str(tmp_path / f"{split}.conll")
        if text is not None:
            (tmp_path / f"{split}.conll").write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    code = cli(["finetune", "--task", "ner", "--model", tiny_model_dir, "--out", str(out),
                "--train", paths["train"], "--dev", paths["dev"], *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--task", "wnut17", "--train", "x.conll"], "--train: for --task tsv"),
    (["--task", "sst2", "--tag-column", "2"], "--tag-column: for --task tsv"),
    (["--task", "ner", "--text-column", "s"], "--text-column: for --task tsv"),
    (["--task", "ner"], "task ner needs a training and a dev CoNLL file"),
])
def test_tagging_flags_belong_to_their_tasks(tiny_model_dir, tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert cli(["finetune", "--model", tiny_model_dir, "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# -- the serving export ----------------------------------------------------------------------

TEXTS = ["Zoë lives in Ōsaka, Japan 🎉 with 東京 friends.", "ÉCOLE Normale Supérieure  in PARIS",
         "", "  Anna\tKarenina  "]


def word_spans(text: str, words: list[str]) -> list[tuple[int, int]]:
    """Each word's code point span in `text`, found in order (independent of the export)."""
    spans, at = [], 0
    for word in words:
        start = text.index(word, at)
        spans.append((start, start + len(word)))
        at = start + len(word)
    return spans


def serve(signatures, name, texts):
    """`signatures` (an export folder, or a dict of signatures) -> `name`'s outputs."""
    if isinstance(signatures, str):
        signatures = tf.saved_model.load(signatures).signatures
    return {k: v.numpy() for k, v in signatures[name](text=tf.constant(texts)).items()}


@pytest.fixture(scope="module")
def hand_set_tagger(tiny_model_dir):
    """A tagger whose head gives every word-piece the same probabilities (a zero kernel,
    the bias below): every word is tagged `tag` with probability softmax(bias)[tag].
    Returns a function: the tag -> (its serving module's signatures, that probability);
    the module is the one `export_model` saves (the WNUT run's test loads a saved one)."""
    from bert_tf.models.entity_serving import entity_serving_module
    labels = ["O", "B-person", "I-person", "B-place"]
    tagger = bert_tf.BertTokenClassifier(
        bert_tf.load_encoder(tiny_model_dir), labels,
        preprocessor=bert_tf.load_preprocessor(tiny_model_dir, seq_length=16))
    dense = tagger.get_layer("token_classifier")

    def set_head(tag):
        bias = np.zeros(len(labels), "float32")
        bias[labels.index(tag)] = 2.0
        dense.kernel.assign(np.zeros(dense.kernel.shape, "float32"))
        dense.bias.assign(bias)
        _, signatures, _ = entity_serving_module(tagger.preprocessor.tokenizer,
                                                 tagger.with_skip_padding(), 16, labels)
        probability = float(np.exp(2.0) / (np.exp(2.0) + len(labels) - 1))
        return signatures, probability
    return set_head


def test_export_gives_each_word_as_an_entity_with_code_point_offsets(hand_set_tagger):
    """Every word B-person: each word is an entity whose offsets slice it out of the text
    as given (accents, capitals, emoji, CJK characters, tabs; a bug counting bytes, or
    reading the lower-cased text, gives other slices); a text of 40 pieces, past the
    14 that fit in 16 tokens, is read in windows, its every word an entity too."""
    serving, probability = hand_set_tagger("B-person")
    long_text = " ".join(f"w{i}" for i in range(20))     # 2 pieces a word: 5 windows
    texts = TEXTS + [long_text]
    out = serve(serving, "serving_default", texts)
    tags = serve(serving, "tags", texts)
    for n, text in enumerate(texts):
        expected = [w.decode() for w in split_text(tf.constant([text]))[0][0].numpy()]
        spans = word_spans(text, expected)
        seen = len(expected)
        assert out["num_entities"][n] == seen
        assert tags["num_words"][n] == len(expected)
        assert [t.decode() for t in tags["tags"][n][:len(expected)]] == ["B-person"] * seen
        got = [(int(s), int(e)) for s, e in zip(out["entity_start"][n][:seen],
                                                out["entity_end"][n][:seen])]
        assert got == spans[:seen]
        assert [t.decode() for t in out["entity_text"][n][:seen]] == \
            [text[s:e] for s, e in spans[:seen]] == expected[:seen]
        assert out["entity_type"][n][:seen].tolist() == [b"person"] * seen
        np.testing.assert_allclose(out["entity_score"][n][:seen], probability, rtol=1e-5)
        assert set(out["entity_text"][n][seen:]) <= {b""} and set(out["entity_start"][n][seen:]) \
            <= {-1}
    assert out["entity_text"][0][:4].tolist() == ["Zoë".encode(), b"lives", b"in",
                                                   "Ōsaka".encode()]
    assert (out["entity_start"][0][3], out["entity_end"][0][3]) == (13, 18)


def test_export_joins_inside_tags_into_one_entity_across_spaces(hand_set_tagger):
    """Every word I-person: one entity from the first word's start to the last word's
    end, the spaces and tabs between included, as Python slices the text."""
    serving, probability = hand_set_tagger("I-person")
    out = serve(serving, "serving_default", TEXTS)
    assert out["num_entities"].tolist() == [1, 1, 0, 1]
    for n in (0, 1, 3):
        text = TEXTS[n]
        start, end = int(out["entity_start"][n][0]), int(out["entity_end"][n][0])
        assert text[start:end] == text.strip() == out["entity_text"][n][0].decode()
    np.testing.assert_allclose(out["entity_score"][:, 0], [probability] * 2 + [0] +
                               [probability], rtol=1e-5)


def test_export_entities_equal_predict_on_wnut_dev(wnut_run, wnut_dir):
    """The fine-tuned tiny model's export on 40 WNUT dev sentences (its predictions are
    still near random: I- tags after O and after other types, single-word and longer
    entities) gives the entities that `predict` and `entities` give in Python, with
    the words' offsets in the text."""
    from bert_tf.training.entities import entities
    dev = read_conll(os.path.join(wnut_dir, "WNUT-17", WNUT["dev"]))
    texts = [" ".join(words) for words in dev.words[:40]]
    model = bert_tf.load_model(str(wnut_run / "model"))
    predicted = model.predict(texts)
    serving = str(wnut_run / "export" / "serving" / "1")
    out = serve(serving, "serving_default", texts)
    tags = serve(serving, "tags", texts)
    kinds = set()
    for n, (text, pairs) in enumerate(zip(texts, predicted)):
        words = [w for w, _ in pairs]
        spans = word_spans(text, words)
        want = [(kind, spans[s][0], spans[e - 1][1]) for kind, s, e in
                entities([t for _, t in pairs])]
        count = int(out["num_entities"][n])
        got = list(zip([t.decode() for t in out["entity_type"][n][:count]],
                       out["entity_start"][n][:count].tolist(),
                       out["entity_end"][n][:count].tolist()))
        assert got == want, n
        assert [t.decode() for t in out["entity_text"][n][:count]] == \
            [text[s:e] for _, s, e in want]
        assert [t.decode() for t in tags["tags"][n][:len(words)]] == [t for _, t in pairs]
        kinds |= {t[:2] for _, t in pairs}
    assert kinds == {"O", "B-", "I-"}
    assert sum(out["num_entities"]) > 40


def test_export_window_stride_out_of_range_or_for_another_model_exits_2(
        wnut_run, tiny_model_dir, tmp_path, capsys):
    """`bert-tf export --window-stride`: at the model's 32 tokens (30 pieces a window) 15
    would not move the windows; an encoder has no windows. One line each, nothing
    exported."""
    for model, stride, messages in (
            (str(wnut_run / "model"), "15", ("window stride 15: ", "at most 14")),
            (tiny_model_dir, "3", ("--window-stride: for token classifiers",))):
        out = tmp_path / f"export-{stride}"
        assert cli(["export", "--model", model, "--out", str(out), "--window-stride",
                    stride]) == 2
        err = capsys.readouterr().err
        assert all(m in err for m in messages) and len(err.strip().splitlines()) == 1, err
        assert not (out / "serving").exists()


# -- stopped and resumed -----------------------------------------------------------------------

class _Stopped(Exception):
    pass


@pytest.mark.slow
def test_ner_run_stopped_mid_epoch_resumes_as_a_run_never_stopped(tiny_model_dir, tmp_path,
                                                                   capsys):
    """`finetune --task ner` on 32 WNUT-17 sentences (4 steps an epoch, 2 epochs, a
    checkpoint every 2 batches) stopped by a callback raising after step 7, then run
    again into the same run dir: it resumes in epoch 2 after 2 of its batches and ends
    with the history (training loss and accuracy, dev entity precision, recall and F1
    per epoch), the last evaluation's entity counts and the model dir's weights of a
    run never stopped (a resume that redoes or skips batches, restarts the schedule or
    leaves the head's weights behind ends with other weights or history)."""
    import keras
    from bert_tf.io.checkpoint import read_checkpoint
    from bert_tf.training.finetune import FinetuneConfig, finetune
    files = {split: first_sentences(data_path("WNUT-17", WNUT[split]),
                                    tmp_path / "data" / f"{split}.conll", n)
             for split, n in (("train", 32), ("dev", 8))}
    settings = dict(task="ner", model=tiny_model_dir, train=files["train"], dev=files["dev"],
                    epochs=2, batch_size=8, max_seq_length=32, learning_rate=5e-4,
                    checkpoint_every=2, seed=5, quiet=True, no_export=True)

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 7:
                raise _Stopped

    want = finetune(FinetuneConfig(out=str(tmp_path / "whole"), **settings))
    with pytest.raises(_Stopped):
        finetune(FinetuneConfig(out=str(tmp_path / "run"), **settings), callbacks=[Stop()])
    capsys.readouterr()
    got = finetune(FinetuneConfig(out=str(tmp_path / "run"), **settings))
    printed = capsys.readouterr().out
    assert "note: resuming at epoch 2, after 2 of its batches" in printed, printed
    assert want["steps_per_epoch"] == 4 and len(want["history"]["dev_f1"]) == 2
    assert got["history"] == want["history"]
    assert got["dev_entities"] == want["dev_entities"]
    assert (got["dev_f1"], got["dev_precision"]) == (want["dev_f1"], want["dev_precision"])
    mine = read_checkpoint(str(tmp_path / "run" / "model" / "bert_model.ckpt"))
    theirs = read_checkpoint(str(tmp_path / "whole" / "model" / "bert_model.ckpt"))
    start = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    name = "bert/encoder/layer_0/attention/self/query/kernel"
    assert np.abs(theirs[name] - start[name]).max() > 1e-4          # it did train
    assert sorted(mine) == sorted(theirs) and "output_weights" in mine
    assert max(float(np.abs(mine[k] - theirs[k]).max()) for k in theirs) <= 1e-6
