"""Token classification (NER): CoNLL files read as WNUT-17's own counts say, bad files as
one line naming file and line; each word's tag on its first word-piece, the other pieces
out of the loss; `BertTokenClassifier` serialises like the other task models; entity-level
scores equal `seqeval`'s on real predictions."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.data.conll import read_conll, tag_names
from bert_tf.errors import ConfigError, DataError
from bert_tf.models.token_classifier import IGNORE, encode_words, place_tags
from bert_tf.training.entities import entities, entity_scores
from tests.conftest import data_path, report
from tests.harness import run_checkpoint_test, run_serialization_test

seqeval_metrics = pytest.importorskip("seqeval.metrics")
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402


def wnut(split):
    name = {"train": "wnut17train.conll", "dev": "emerging.dev.conll"}[split]
    return read_conll(data_path("WNUT-17", name))


# -- CoNLL files -----------------------------------------------------------------------------

@pytest.mark.parametrize("split,sentences,tokens,n_entities", [
    ("train", 3394, 62730, 1975), ("dev", 1009, 15733, 836)])
def test_reads_wnut17_as_its_source_counts(split, sentences, tokens, n_entities):
    """The counts of WNUT-17's SOURCE.txt: the training file's lone-tab lines end
    sentences as blank lines do (read as words, they would merge 2,394 pairs of
    sentences); entities by our reader and by seqeval's."""
    data = wnut(split)
    assert len(data) == sentences
    assert sum(map(len, data.words)) == tokens
    assert [len(w) for w in data.words] == [len(t) for t in data.tags]
    assert sum(len(entities(tags)) for tags in data.tags) == n_entities
    assert len(get_entities([list(t) for t in data.tags])) == n_entities
    if split == "train":
        assert data.words[0][14:17] == ["Empire", "State", "Building"]
        assert data.tags[0][14:17] == ["B-location", "I-location", "I-location"]
        assert data.words[1][:2] == ["From", "Green"]   # after the first lone tab


def test_conll_columns_docstart_and_file_end(tmp_path):
    """CoNLL-2003's layout: space-separated columns, the tag chosen by column, the
    -DOCSTART- sentence dropped, blank lines at the end of the file ignored."""
    path = tmp_path / "eng.conll"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
                    "\nPeter NNP B-NP B-PER\r\n\n\n \n")
    data = read_conll(str(path))
    assert data.words == [["EU", "rejects"], ["Peter"]]
    assert data.tags == [["B-ORG", "O"], ["B-PER"]]
    chunks = read_conll(str(path), tag_column=2)
    assert chunks.tags == [["B-NP", "B-VP"], ["B-NP"]]
    assert read_conll(str(path), tag_column=1, scheme=None).tags == [["NNP", "VBZ"], ["NNP"]]
    assert tag_names(data) == ["O", "B-ORG", "B-PER"]


@pytest.mark.parametrize("text,line,message", [
    ("EU\tB-ORG\nrejects\n", 2, "no tag"),
    ("EU\tB-ORG\nrejects\t\n", 2, "no tag"),
    ("EU\tS-ORG\n", 1, "'S-ORG' is not IOB2"),
    ("EU\tORG\n", 1, "'ORG' is not IOB2"),
    ("EU\tB-ORG\n\n\nPeter\tB-PER\n", 3, "empty sentence"),
    ("\nEU\tB-ORG\n", 1, "empty sentence"),
    ("EU\tB-ORG\n\t\n  \nPeter\tB-PER\n", 3, "empty sentence"),
])
def test_bad_conll_files_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.conll"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_conll(str(path))
    assert str(caught.value).startswith(f"{path}, line {line}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_conll_file_without_sentences(tmp_path):
    path = tmp_path / "empty.conll"
    path.write_text("\n\n")
    with pytest.raises(DataError, match=f"^{path}: no sentences$"):
        read_conll(str(path))


# -- entity scores -----------------------------------------------------------------------------

HAND_CASES = [
    # I- after O starts an entity (conlleval's lenient reading), and so does a type switch
    ([["O", "I-per", "I-per", "O"]], [["O", "B-per", "I-per", "O"]]),
    ([["B-per", "I-loc", "I-loc"]], [["B-per", "B-loc", "I-loc"]]),
    # an entity at the sentence end; sentences do not join
    ([["O", "B-org"], ["I-org", "O"]], [["O", "B-org"], ["B-org", "O"]]),
    # B after B: two entities; a shorter prediction is wrong, not half right
    ([["B-per", "B-per", "I-per"]], [["B-per", "I-per", "I-per"]]),
    # nothing predicted, nothing true (seqeval's zero_division: 0)
    ([["B-per", "O"]], [["O", "O"]]),
    ([["O", "O"]], [["O", "B-creative-work"]]),
]


@pytest.mark.parametrize("true,predicted", HAND_CASES)
def test_entity_scores_match_seqeval_on_hand_cases(true, predicted):
    _assert_as_seqeval(true, predicted)


def test_entities_of_hand_cases():
    assert entities(["O", "I-per", "I-per", "O"]) == [("per", 1, 3)]
    assert entities(["B-per", "I-loc", "I-loc"]) == [("per", 0, 1), ("loc", 1, 3)]
    assert entities(["B-per", "B-per", "I-per"]) == [("per", 0, 1), ("per", 1, 3)]
    assert entities(["O", "B-creative-work"]) == [("creative-work", 1, 2)]


def _assert_as_seqeval(true, predicted):
    import warnings
    ours = entity_scores(true, predicted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # seqeval warns when it divides by 0
        for key, fn in (("precision", seqeval_metrics.precision_score),
                        ("recall", seqeval_metrics.recall_score),
                        ("f1", seqeval_metrics.f1_score)):
            assert ours[key] == pytest.approx(fn(true, predicted), abs=1e-12), key
        per_type = seqeval_metrics.classification_report(true, predicted, output_dict=True)
    for kind, scores in ours["by_type"].items():
        if kind in per_type:
            assert scores["f1"] == pytest.approx(per_type[kind]["f1-score"], abs=1e-12)
            assert scores["true_entities"] == per_type[kind]["support"]
    return ours


# -- word-pieces ---------------------------------------------------------------------------------

def test_each_word_is_labelled_at_its_first_piece(tokenizer):
    """unaffable -> una ##ffa ##ble: its tag goes to "una" only; [CLS], [SEP], the
    other pieces and the padding are IGNORE; words past seq_length and words without a
    piece get no position (-1), padding words -2."""
    words = tf.ragged.constant([["Hello", "unaffable", "world", "!"], ["\u200b", "hi"],
                                ["a", "b", "c", "d", "e", "f", "g"]])
    inputs, positions = encode_words(tokenizer, words, seq_length=8)
    ids = inputs["input_word_ids"].numpy()
    assert [tokenizer.vocab[i] for i in ids[0]] == \
        ["[CLS]", "hello", "una", "##ffa", "##ble", "world", "!", "[SEP]"]
    assert positions.numpy().tolist() == [[1, 2, 5, 6, -2, -2, -2], [-1, 1, -2, -2, -2, -2, -2],
                                          [1, 2, 3, 4, 5, 6, -1]]
    tags = tf.ragged.constant([[1, 2, 0, 3], [4, 5], [1, 1, 1, 1, 1, 1, 2]])
    labels = place_tags(tags, positions, 8).numpy()
    x = IGNORE
    assert labels.tolist() == [[x, 1, 2, x, x, 0, 3, x], [x, 5, x, x, x, x, x, x],
                               [x, 1, 1, 1, 1, 1, 1, x]]


@pytest.fixture(scope="module")
def tiny_tagger(tiny_model_dir):
    keras.utils.set_random_seed(3)
    train = wnut("train")
    return (bert_tf.BertTokenClassifier(
        bert_tf.load_encoder(tiny_model_dir), tag_names(train),
        preprocessor=bert_tf.load_preprocessor(tiny_model_dir, seq_length=32)), train)


def test_loss_and_accuracy_count_first_pieces_only(tiny_tagger):
    """A batch's loss is the mean cross-entropy over the words' first pieces, and
    `evaluate`'s accuracy the share of words whose first piece has the right tag over
    all batches, as computed here from the logits (a loss over every piece, or padding
    counted, differs). Keras' loss over several batches is the mean of the batches'
    losses weighted by their sentences, so the loss is checked on one batch."""
    tagger, train = tiny_tagger
    tagger.compile()
    words, tags = train.words[:12], train.tags[:12]
    one_batch = tagger.evaluate(words, tags, batch_size=12, verbose=0, return_dict=True)
    batches = tagger.evaluate(words, tags, batch_size=5, verbose=0, return_dict=True)
    losses, right = [], []
    for inputs, labels in tagger._text_dataset(tagger._texts(words), tags, None, 12):
        logits = tagger(inputs, training=False).numpy()
        labels = labels.numpy()
        at = labels != IGNORE
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_p, np.maximum(labels, 0)[..., None], -1)[..., 0]
        losses += list(-picked[at])
        right += list((logits.argmax(-1) == labels)[at])
    assert one_batch["loss"] == pytest.approx(np.mean(losses), rel=1e-5)
    assert batches["accuracy"] == pytest.approx(np.mean(right), rel=1e-6)
    assert one_batch["accuracy"] == pytest.approx(np.mean(right), rel=1e-6)


def test_serialises_and_loads_as_the_other_task_models(tiny_tagger, tmp_path):
    tagger, train = tiny_tagger
    inputs, _ = next(iter(tagger._text_dataset(tagger._texts(train.words[:3]), None, None, 3)))
    call = lambda m: m(inputs)  # noqa: E731
    reloaded = run_serialization_test(tagger, call, tmp_path)
    assert reloaded.labels == tagger.labels
    assert reloaded.preprocessor.get_config() == tagger.preprocessor.get_config()
    from_dir = run_checkpoint_test(tagger, call, tmp_path, tagger.preprocessor)
    assert from_dir.labels == tagger.labels
    assert from_dir.preprocessor.seq_length == 32
    assert sorted(set(tagger.checkpoint_variables()) - set(tagger.encoder.checkpoint_variables())) \
        == ["output_bias", "output_weights"]
    loaded = bert_tf.load_model(str(tmp_path / f"{tagger.name}-dir"))
    assert type(loaded) is bert_tf.BertTokenClassifier and loaded.labels == tagger.labels
    np.testing.assert_allclose(loaded(inputs), tagger(inputs), atol=1e-6)
    assert not {id(v) for v in tagger.encoder.get_layer("pooler").weights} & \
        {id(v) for v in tagger.trainable_variables}


def test_fit_and_predict_words_and_text_with_seqeval_scores(tiny_tagger):
    """Five steps on 40 WNUT sentences (a model still near random, its entities wrong
    and many of them opened by an I- tag): `predict` on words gives a tag per word, the
    argmax at each first piece (of sentences that fit in 32 tokens); raw text gives (word, tag)
    pairs, the words split as BERT splits them; the entity scores of these imperfect
    predictions are seqeval's."""
    tagger, train = tiny_tagger
    tagger.compile()
    tagger.fit(train.words[:40], train.tags[:40], epochs=1, batch_size=8, verbose=0)
    dev = wnut("dev")
    words, tags = dev.words[:60], dev.tags[:60]
    predicted = tagger.predict(words, batch_size=16)
    assert [len(p) for p in predicted] == [len(w) for w in words]
    inputs, positions = encode_words(tagger.preprocessor.tokenizer,
                                     tagger._texts(words[:5])[0], 32)
    logits = tagger(inputs, training=False).numpy()
    for n in range(5):
        want = [tagger.labels[logits[n, p].argmax()] if p >= 0 else "O"
                for p in positions[n].numpy()[:len(words[n])]]
        assert predicted[n] == want
    scores = _assert_as_seqeval(tags, predicted)
    report(f"tiny model, 40 WNUT sentences, 1 epoch: dev[:60] entity P/R/F1 "
           f"{scores['precision']:.3f}/{scores['recall']:.3f}/{scores['f1']:.3f}, "
           f"{scores['predicted_entities']} predicted, {scores['true_entities']} true")
    assert scores["predicted_entities"] > 0
    assert any(a == "O" and b.startswith("I-") for p in predicted for a, b in zip(p, p[1:]))
    pairs = tagger.predict(["Anna lives in Paris, France."])
    assert [w for w, _ in pairs[0]] == ["Anna", "lives", "in", "Paris", ",", "France", "."]
    assert pairs[0] == list(zip([w for w, _ in pairs[0]], tagger.predict(
        [["Anna", "lives", "in", "Paris", ",", "France", "."]])[0]))


# -- long texts in windows ---------------------------------------------------------------------

MARKERS = {"anna": "B-person", "karenina": "I-person", "paris": "B-place"}
FILLERS = "the a of in and to was he she it on at by with from city river old new long day".split()


@pytest.fixture(scope="module")
def marker_tagger(tiny_model_dir):
    """A tagger (seq_length 16: windows of 14 pieces, the default stride 3, so windows
    8 pieces apart) whose head reads the markers' tags off the tiny encoder's
    sequence output: for each marker the mean output at that word minus the mean
    output of all words, thresholded half way between the marker's lowest score and
    the other words' highest on 200 random sentences. Every `anna` is B-person,
    `karenina` (2 pieces) I-person, `paris` B-place, everything else O, and each
    probability depends on the word's context (so a word read in another window
    gets another probability)."""
    labels = ["O", "B-person", "I-person", "B-place"]
    tagger = bert_tf.BertTokenClassifier(
        bert_tf.load_encoder(tiny_model_dir), labels,
        preprocessor=bert_tf.load_preprocessor(tiny_model_dir, seq_length=16))
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(FILLERS, 12)) for _ in range(200)]
    for n, words in enumerate(sentences):
        words[rng.integers(12)] = list(MARKERS)[n % 3]
    inputs, positions = encode_words(tagger.preprocessor.tokenizer, tf.ragged.constant(sentences),
                                     16)
    output = tagger.encoder(inputs)["sequence_output"].numpy()
    at = np.take_along_axis(output, positions.numpy()[..., None], 1).reshape(-1, output.shape[-1])
    word = np.array([w for words in sentences for w in words])
    mean = at.mean(0)
    kernel = np.zeros((output.shape[-1], len(labels)), "float32")
    bias = np.zeros(len(labels), "float32")
    for marker, tag in MARKERS.items():
        direction = at[word == marker].mean(0) - mean
        score = (at - mean) @ direction
        threshold = (score[word == marker].min() + score[word != marker].max()) / 2
        assert score[word == marker].min() > score[word != marker].max(), marker
        kernel[:, labels.index(tag)] = 0.2 * direction
        bias[labels.index(tag)] = -0.2 * (threshold + mean @ direction)
    dense = tagger.get_layer("token_classifier")
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    return tagger


def windows_by_hand(tagger, words: list[str], stride=None) -> tuple[list[str], list[float]]:
    """Each word's tag and its probability, reading the text's word-pieces in windows
    as documented, one model call per window: windows of `content` pieces starting
    every `content - 2 * stride` pieces, the last one ending with the text; a word
    from the first window that holds its first piece `stride` pieces from both edges
    (an edge at the text's start or end excepted). `stride` None: a quarter window."""
    tokenizer = tagger.preprocessor.tokenizer
    seq_length = tagger.preprocessor.seq_length
    content = seq_length - 2
    stride = stride or max(content // 4, 1)
    pieces = [tokenizer.tokenize(tf.constant([w])).merge_dims(1, 2)[0].numpy().tolist()
              for w in words]
    ids = [i for p in pieces for i in p]
    firsts = np.cumsum([0] + [len(p) for p in pieces])[:-1]
    starts = list(range(0, len(ids) - content, content - 2 * stride)) + \
        [max(len(ids) - content, 0)]
    cls, sep = (tokenizer.special_ids[k] for k in ("start_of_sequence_id", "end_of_segment_id"))
    probs = []
    for start in starts:
        row = [cls] + ids[start:start + content] + [sep]
        mask = [1] * len(row) + [0] * (seq_length - len(row))
        inputs = {"input_word_ids": np.array([row + [0] * (seq_length - len(row))], "int32"),
                  "input_mask": np.array([mask], "int32"),
                  "input_type_ids": np.zeros([1, seq_length], "int32")}
        probs.append(tf.nn.softmax(tagger(inputs, training=False)[0]).numpy())
    tags, scores = [], []
    for p, n in zip(firsts, map(len, pieces)):
        if not n:
            tags.append("O")
            scores.append(0.0)
            continue
        w = next(w for w, start in enumerate(starts)
                 if (p - start >= stride or start == 0)
                 and (start + content - 1 - p >= stride or start + content >= len(ids)))
        at = probs[w][1 + p - starts[w]]
        tags.append(tagger.labels[at.argmax()])
        scores.append(float(at.max()))
    return tags, scores


def test_long_texts_run_in_windows_in_predict_and_export(marker_tagger):
    """A text of 37 pieces at seq_length 16 is 4 windows (starts 0, 8, 16 and 23, the
    last moved back to end with the text): `anna karenina` straddles the first window's
    end (pieces 13 | 14-15), another straddles the edge between the parts read from
    windows 2 and 3 (pieces 18 | 19-20, so its B- and I- tags come from different
    windows), `paris` stands past the first window and as the text's last word.
    `predict` (words and raw text), the serving export's entities and tags, and the
    windows run by hand give the same tags, probabilities and code point offsets
    (a text cut at 16 tokens loses all but the first entity's B-; a word read in
    another window or at another column has another probability); a short text and
    an empty one in the same batch are read as before."""
    from tests.test_ner import serve, word_spans
    filler = iter(FILLERS * 3)
    layout = {13: "anna", 14: "karenina", 18: "anna", 19: "karenina", 25: "paris", 36: "paris"}
    long_words, p = [], 0
    while p < 37:
        long_words.append(layout.get(p) or next(filler))
        p += 2 if long_words[-1] == "karenina" else 1
    texts = [" ".join(long_words), "Anna  Karenina of PARIS!", ""]
    words = [t.replace("!", " !").split() for t in texts]
    tokenizer = marker_tagger.preprocessor.tokenizer
    assert len(tokenizer.tokenize(tf.constant(texts[:1])).flat_values) == 37

    by_hand = [windows_by_hand(marker_tagger, w) for w in words]
    want_entities = [[("person", 13, 15), ("person", 17, 19), ("place", 23, 24),
                      ("place", 34, 35)], [("person", 0, 2), ("place", 3, 4)], []]
    for (tags, _), w, want in zip(by_hand, words, want_entities):
        assert [t for t, word in zip(tags, w) if word.lower() not in MARKERS] == \
            ["O"] * sum(word.lower() not in MARKERS for word in w)
        assert entities(tags) == want
    assert [p for p, _ in enumerate(long_words) if long_words[p] in MARKERS] == \
        [13, 14, 17, 18, 23, 34]

    assert marker_tagger.predict(words) == [tags for tags, _ in by_hand]
    assert marker_tagger.predict(texts) == [list(zip(w, tags)) for w, (tags, _) in
                                            zip(words, by_hand)]
    _, signatures, _ = marker_tagger.serving_module(tokenizer, 16)
    out = serve(signatures, "serving_default", texts)
    tags_out = serve(signatures, "tags", texts)
    for n, (text, w, (tags, scores)) in enumerate(zip(texts, words, by_hand)):
        spans = word_spans(text, w)
        assert [t.decode() for t in tags_out["tags"][n][:len(w)]] == tags
        np.testing.assert_allclose(tags_out["tag_score"][n][:len(w)], scores, rtol=1e-5)
        found = entities(tags)
        count = int(out["num_entities"][n])
        assert count == len(found)
        assert list(zip([t.decode() for t in out["entity_type"][n][:count]],
                        out["entity_start"][n][:count].tolist(),
                        out["entity_end"][n][:count].tolist())) == \
            [(kind, spans[s][0], spans[e - 1][1]) for kind, s, e in found]
        assert [t.decode() for t in out["entity_text"][n][:count]] == \
            [text[spans[s][0]:spans[e - 1][1]] for _, s, e in found]
        np.testing.assert_allclose(out["entity_score"][n][:count],
                                   [np.mean(scores[s:e]) for _, s, e in found], rtol=1e-5)
    assert out["entity_text"][0][:4].tolist() == [b"anna karenina", b"anna karenina",
                                                  b"paris", b"paris"]
    # Another stride: 2 pieces of context, windows 10 apart (starts 0, 10, 20, 23).
    marker_tagger.window_stride = 2
    try:
        want = windows_by_hand(marker_tagger, words[0], stride=2)
        assert marker_tagger.predict(words[:1]) == [want[0]] and want != by_hand[0]
    finally:
        marker_tagger.window_stride = None


@pytest.mark.parametrize("stride", [0, -1, 7, 14, 2.5])
def test_window_stride_out_of_range_is_a_clear_error(tiny_model_dir, stride):
    """At seq_length 16 a window holds 14 pieces: a stride of 6 keeps windows 2 apart,
    7 and more would not move them; 0 or less reads tokens at a window's edge. `predict`
    and the serving module refuse it before reading anything."""
    tagger = bert_tf.BertTokenClassifier(
        bert_tf.load_encoder(tiny_model_dir), ["O", "B-x"], window_stride=stride,
        preprocessor=bert_tf.load_preprocessor(tiny_model_dir, seq_length=16))
    with pytest.raises(ConfigError, match=rf"^window stride {stride}: .*at most 6$"):
        tagger.predict([["anna"]])
    with pytest.raises(ConfigError, match=rf"^window stride {stride}: .*at most 6$"):
        tagger.serving_module(tagger.preprocessor.tokenizer, 16)
