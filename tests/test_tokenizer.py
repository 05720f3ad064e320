"""The in-graph tokenizer gives reference BERT's ids.

References: the Rust `tokenizers` package with the tokenizer.json shipped beside
the MiniLM weights (over every sentence of the real corpora), and Model Garden's
`official.nlp.tools.tokenization.FullTokenizer`, a port of google-research/bert's
tokenization.py (Google's semantics, for Unicode edge cases and wherever the two
references disagree).
"""
import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import data_path, report

EDGE_CASES = [
    "Café naïve résumé", "x²+y³ ½ ﬁ", "中文字符 and 日本語", "a\x0bb c\x0cd e\u200bf g\u00adh",
    "tab\there\nnew\r\nline", "\u3000wide space\u00a0nbsp", "emoji 😀👍🏽 ok", "a" * 100, "a" * 101,
    "é" * 80, "ж" * 60, "ж" * 101, "ΑΣ ΟΔΟΣ İstanbul ß ǅ", "", "   ", "\x00nul\ufffd",
    "Ⅻ ① ㎏ ﬀ", "don't-stop...now!", "\u0301 combining first", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "x\u2028y\u2029z\x85w", "مرحبا עברית ไทย", "\u200d\u200c zwj", "ÀÉÎÕÜ Ǆ ǈ ﬃ", "Ⓐ ⓐ",
    "$100 & 50% @home #tag ^_^ `code` ~tilde~ {braces} |pipe|", "¿Qué? ¡Olé! «quotes» „low“",
    "naïve\u0308 double marks", "\ue000private use", "𠀀𠀁 ext-b ideographs",
    "ﾊﾝｶｸ halfwidth katakana", "ΣΊΣΥΦΟΣ", "unaffable unbelievable supercalifragilistic",
]


@pytest.fixture(scope="module")
def google(vocab_file):
    from official.nlp.tools.tokenization import FullTokenizer
    tok = FullTokenizer(vocab_file, do_lower_case=True)
    # google-research/bert's WordPiece limit is 200 characters (Model Garden's 400);
    # bert-tf follows the documented contract and HF: longer than 100 -> [UNK].
    tok.wordpiece_tokenizer.max_input_chars_per_word = 100
    return tok


@pytest.fixture(scope="module")
def hf(minilm_source):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(f"{minilm_source}/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def ids_of(tokenizer):
    fn = tf.function(lambda t: tokenizer.tokenize(t).merge_dims(-2, -1))

    def run(texts):
        out = []
        for i in range(0, len(texts), 8192):
            out += fn(tf.constant(texts[i:i + 8192])).to_list()
        return out
    return run


def _tsv_column(path, columns, skip_header=True):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[c] for row in rows[1 if skip_header else 0:] for c in columns]


def corpora():
    squad = json.load(open(data_path("SQuAD1.1", "dev-v1.1.json"), encoding="utf-8"))
    paragraphs = [p for a in squad["data"] for p in a["paragraphs"]]
    return {
        "SST-2 train+dev": _tsv_column(data_path("SST-2", "train.tsv"), [0])
        + _tsv_column(data_path("SST-2", "dev.tsv"), [0]),
        "MRPC train+dev": _tsv_column(data_path("MRPC", "train.tsv"), [3, 4])
        + _tsv_column(data_path("MRPC", "dev.tsv"), [3, 4]),
        "SQuAD dev questions": [q["question"] for p in paragraphs for q in p["qas"]],
        "SQuAD dev contexts": [p["context"] for p in paragraphs],
    }


def test_corpora_match_reference(ids_of, hf, google):
    lines = []
    for name, texts in corpora().items():
        ours = ids_of(texts)
        ref = [e.ids[1:-1] for e in hf.encode_batch(texts, add_special_tokens=True)]
        mismatches = [i for i, (a, b) in enumerate(zip(ours, ref)) if a != b]
        # Where the Rust tokenizer disagrees, Google's own semantics decide.
        not_google = [i for i in mismatches
                      if ours[i] != google.convert_tokens_to_ids(google.tokenize(texts[i]))]
        lines.append(f"tokenizer parity, {name}: {len(texts)} texts, "
                     f"{sum(map(len, ours))} ids, {len(mismatches)} mismatches vs tokenizers, "
                     f"{len(not_google)} vs Google's FullTokenizer")
        assert not not_google, [texts[i][:80] for i in not_google[:5]]
        assert not mismatches, [texts[i][:80] for i in mismatches[:5]]
    report(*lines)


def test_unicode_edge_cases_match_google(ids_of, google, hf):
    ours = ids_of(EDGE_CASES)
    expected = [google.convert_tokens_to_ids(google.tokenize(t)) for t in EDGE_CASES]
    bad = [(t, a, b) for t, a, b in zip(EDGE_CASES, ours, expected) if a != b]
    assert not bad
    hf_differs = [t for t, e in zip(EDGE_CASES, hf.encode_batch(EDGE_CASES, add_special_tokens=False))
                  if e.ids != google.convert_tokens_to_ids(google.tokenize(t))]
    report(f"tokenizer parity, Unicode edge cases: {len(EDGE_CASES)} texts, 0 mismatches vs "
           f"Google's FullTokenizer; the tokenizers package differs from Google on "
           f"{len(hf_differs)}: {hf_differs!r}")


def test_special_token_ids_come_from_vocab(tmp_path, vocab_file):
    from bert_tf.preprocessing.tokenizer import BertTokenizer
    vocab = open(vocab_file, encoding="utf-8").read().splitlines()
    shuffled = tmp_path / "vocab.txt"
    shuffled.write_text("\n".join(vocab[100:104] + vocab[:100] + vocab[104:]) + "\n",
                        encoding="utf-8")
    tok = BertTokenizer(str(shuffled))
    assert tok.special_ids == {"padding_id": 4, "start_of_sequence_id": 1,
                               "end_of_segment_id": 2, "mask_id": 3, "unknown_id": 0}
    ids = tok.preprocess(tf.constant(["hello"]), seq_length=4)["input_word_ids"].numpy()
    assert ids.tolist() == [[1, vocab.index("hello") + (4 if vocab.index("hello") < 100 else 0), 2, 4]]


def test_empty_string_gives_cls_sep(tokenizer):
    out = tokenizer.preprocess(tf.constant(["", "   "]), seq_length=5)
    assert out["input_word_ids"].numpy().tolist() == [[101, 102, 0, 0, 0]] * 2
    assert out["input_mask"].numpy().tolist() == [[1, 1, 0, 0, 0]] * 2


def test_pairs_are_packed_and_trimmed_longest_first(tokenizer, google):
    a = ["one two three four five six seven", "a b", "x y z w v u", "p q r s"]
    b = ["alpha beta", "c d e f g h i j k", "m n o p q r", "t u v w"]
    seq_length = 10
    out = tokenizer.preprocess([tf.constant(a), tf.constant(b)], seq_length=seq_length)
    for i, (ta, tb) in enumerate(zip(a, b)):
        pa, pb = google.tokenize(ta), google.tokenize(tb)
        while len(pa) + len(pb) > seq_length - 3:  # BERT's _truncate_seq_pair
            (pa if len(pa) > len(pb) else pb).pop()
        tokens = ["[CLS]"] + pa + ["[SEP]"] + pb + ["[SEP]"]
        ids = google.convert_tokens_to_ids(tokens)
        expected = ids + [0] * (seq_length - len(ids))
        assert out["input_word_ids"][i].numpy().tolist() == expected
        types = [0] * (len(pa) + 2) + [1] * (len(pb) + 1)
        assert out["input_type_ids"][i].numpy().tolist() == types + [0] * (seq_length - len(ids))
        assert out["input_mask"][i].numpy().sum() == len(ids)


def test_trim_matches_bert_loop_for_all_small_lengths():
    from bert_tf.preprocessing.tokenizer import trim_longest_first
    la, lb = [], []
    for x in range(8):
        for y in range(8):
            la.append(x)
            lb.append(y)
    a = tf.ragged.range(la)
    b = tf.ragged.range(lb)
    for m in range(0, 12):
        ka, kb = trim_longest_first([a, b], m)
        for x, y, ra, rb in zip(la, lb, ka.row_lengths().numpy(), kb.row_lengths().numpy()):
            while x + y > m:
                if x > y:
                    x -= 1
                else:
                    y -= 1
            assert (ra, rb) == (x, y)


def test_long_text_is_trimmed_and_batch_can_pad_to_longest(tokenizer):
    long_text = " ".join(["word"] * 500)
    out = tokenizer.preprocess(tf.constant([long_text, "short"]), seq_length=16)
    ids = out["input_word_ids"].numpy()
    assert ids.shape == (2, 16) and ids[0, -1] == 102 and (ids[0, 1:-1] == ids[0, 1]).all()
    assert int(tokenizer.count_trimmed(tf.constant([long_text, "short"]), 16)) == 1
    packed = tokenizer.preprocess(tf.constant(["a b c", "short"]), seq_length=16,
                                  pad_to_longest=True)
    assert packed["input_word_ids"].shape == (2, 5)


def test_invalid_utf8_is_replaced_not_crashing(tokenizer):
    good = tokenizer.preprocess(tf.constant([b"caf hello"]), seq_length=8)["input_word_ids"]
    bad = tokenizer.preprocess(tf.constant([b"caf\xc3 hello\xff\xfe"]), seq_length=8)
    assert np.array_equal(bad["input_word_ids"].numpy(), good.numpy())
