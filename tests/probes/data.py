"""Probes: data (see tests/probes/__init__.py for the form of a case).

Pre-training records that lie about the model (ids past its vocab, positions past the
record, lengths past `max_position_embeddings`, ...), SQuAD files with empty contexts,
shared question ids or JSON nested too deep to parse, a TSV with one class: each must be
refused in one line before the run claims its folder."""
import json

DEEP = 100_000  # JSON nesting that Python's json module cannot parse (RecursionError)


# ---- pre-training records: the good file of the matrix, one record (or all) changed --------

def _records(fx, tmp, name, change, first=2, last=None):
    """`fx.records` written to `tmp/name` with `change(feature)` applied to the features of
    records `first`..`last` (`last` None: that record only; -1: to the end). The records are
    written as `create_pretraining_data` writes them: `tf.train.Example`s in a TFRecord file."""
    import tensorflow as tf
    path = str(tmp / name)
    last = first if last is None else last
    with tf.io.TFRecordWriter(path) as writer:
        for i, raw in enumerate(tf.data.TFRecordDataset(fx.records)):
            example = tf.train.Example.FromString(raw.numpy())
            if first <= i and (last == -1 or i <= last):
                change(example.features.feature)
            writer.write(example.SerializeToString())
    return path


def _set(name, index, value):
    """A change: feature `name`'s value at `index` becomes `value`."""
    def change(feature):
        kind = "float_list" if isinstance(value, float) else "int64_list"
        getattr(feature[name], kind).value[index] = value
    return change


def _as_floats(name):
    """A change: feature `name` stored as floats (its values unchanged)."""
    def change(feature):
        import tensorflow as tf
        values = list(feature[name].int64_list.value)
        feature[name].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=values)))
    return change


def _pad(length):
    """A change: the token features padded to `length` (masks and labels unchanged)."""
    def change(feature):
        for name in ("input_ids", "input_mask", "segment_ids"):
            values = feature[name].int64_list.value
            values.extend([0] * (length - len(values)))
    return change


def _pretrain(fx, tmp, train, *extra):
    return ["pretrain", "--init", fx.model, "--train", train, "--out", str(tmp / "out"),
            "--steps", "1", "--batch-size", "2", "--quiet", *extra]


def _bad_records(name, change, needles, **where):
    """A probe: pretrain on `fx.records` changed by `change`; the line names the file."""
    def build(fx, tmp):
        return _pretrain(fx, tmp, _records(fx, tmp, f"{name}.tfrecord", change, **where))
    return build, (lambda fx, tmp: str(tmp / f"{name}.tfrecord"), *needles)


def _garbage_after(garbage):
    """A build: pretrain on `fx.records` with `garbage` appended."""
    def build(fx, tmp):
        path = tmp / "garbage.tfrecord"
        with open(fx.records, "rb") as f:
            path.write_bytes(f.read() + garbage)
        return _pretrain(fx, tmp, str(path))
    return build


def _bad_eval(fx, tmp):
    bad = _records(fx, tmp, "eval.tfrecord", _set("next_sentence_labels", 0, 5))
    return _pretrain(fx, tmp, fx.records, "--eval", bad)


def _other_vocab(extra):
    """A build: pretrain --init the tiny model with a vocab of `extra` more tokens."""
    def build(fx, tmp):
        with open(fx.vocab, encoding="utf-8") as f:
            tokens = f.read().split()
        path = tmp / "vocab.txt"
        path.write_text("\n".join(tokens + [f"[unused-extra-{i}]" for i in range(extra)]) + "\n",
                        encoding="utf-8")
        return _pretrain(fx, tmp, fx.records, "--vocab", str(path), "--dynamic-masking")
    return build, (lambda fx, tmp: str(tmp / "vocab.txt"), str(30522 + extra), "30522",
                   "vocab_size")


# ---- SQuAD files --------------------------------------------------------------------------

def _squad_with(fx, tmp, name, change):
    """`fx.squad` with `change(data)` applied, written to `tmp/name`."""
    with open(fx.squad) as f:
        data = json.load(f)
    change(data)
    path = tmp / name
    path.write_text(json.dumps(data))
    return str(path)


def _context(text):
    def change(data):
        data["data"][0]["paragraphs"][0]["context"] = text
    return change


def _shared_id(data):
    """A second paragraph whose question has the id of the first paragraph's first."""
    paragraph = data["data"][0]["paragraphs"][0]
    other = json.loads(json.dumps(paragraph))
    other["qas"] = other["qas"][1:]
    other["qas"][0]["id"] = paragraph["qas"][0]["id"]
    data["data"][0]["paragraphs"].append(other)


def _squad(fx, tmp, train=None, predict=None):
    return ["squad", "--model", fx.model, "--train", train or fx.squad, "--predict",
            predict or fx.squad, "--out", str(tmp / "out"), "--max-seq-length", "64",
            "--max-query-length", "16", "--doc-stride", "32", "--no-export", "--quiet"]


def _deep_json(tmp, name="deep.json"):
    path = tmp / name
    path.write_text("[" * DEEP + "]" * DEEP)
    return str(path)


def _first_id(fx):
    with open(fx.squad) as f:
        return json.load(f)["data"][0]["paragraphs"][0]["qas"][0]["id"]


# ---- TSV ------------------------------------------------------------------------------------

def _one_class(fx, tmp):
    path = tmp / "one-class.tsv"
    path.write_text("sentence\tlabel\ngood film\t1\nfine film\t1\ngreat film\t1\n")
    return ["finetune", "--task", "tsv", "--train", str(path), "--dev", fx.tsv, "--text-column",
            "sentence", "--label-column", "label", "--model", fx.model, "--out",
            str(tmp / "out"), "--train-limit", "8", "--max-seq-length", "16", "--no-export",
            "--quiet"]


PROBES = {
    # records of the matrix's good file (length 32, 4 predictions), record 2 (or all) bad
    "data-records-later-length": _bad_records(
        "later-length", _pad(40), ("record 2", "input_ids", "40", "32"), last=-1),
    "data-records-oov-id": _bad_records(
        "oov", _set("input_ids", 1, 30522), ("record 2", "input_ids", "30522", "vocab_size")),
    "data-records-negative-id": _bad_records(
        "negative", _set("input_ids", 1, -7), ("record 2", "input_ids", "-7")),
    "data-records-position-500": _bad_records(
        "position", _set("masked_lm_positions", 0, 500),
        ("record 2", "masked_lm_positions", "500")),
    "data-records-masked-id-oov": _bad_records(
        "masked-oov", _set("masked_lm_ids", 0, 40000),
        ("record 2", "masked_lm_ids", "40000", "vocab_size")),
    "data-records-nsp-5": _bad_records(
        "nsp", _set("next_sentence_labels", 0, 5), ("record 2", "next_sentence_labels", "5")),
    "data-records-float-ids": _bad_records(
        "float", _as_floats("input_ids"), ("record 2", "input_ids", "float")),
    "data-records-nan-weight": _bad_records(
        "nan", _set("masked_lm_weights", 0, float("nan")),
        ("record 2", "masked_lm_weights", "nan")),
    "data-records-segment-5": _bad_records(
        "segment", _set("segment_ids", 3, 5), ("record 2", "segment_ids", "5",
                                               "type_vocab_size")),
    "data-records-mask-3": _bad_records(
        "mask", _set("input_mask", 3, 3), ("record 2", "input_mask", "3")),
    "data-records-length-600": _bad_records(
        "long", _pad(600), ("600", "max_position_embeddings"), first=0, last=-1),
    "data-records-garbage-after": (
        _garbage_after(b"this is not a record " * 4),
        (lambda fx, tmp: str(tmp / "garbage.tfrecord"),)),
    # fewer bytes than a record's header: TFRecordDataset reads past them in silence
    "data-records-short-garbage-after": (
        _garbage_after(b"\n\n\n\n\n"), (lambda fx, tmp: str(tmp / "garbage.tfrecord"),
                                     "5 bytes after")),
    "data-records-bad-eval": (
        _bad_eval, (lambda fx, tmp: str(tmp / "eval.tfrecord"), "record 2",
                    "next_sentence_labels")),
    # a vocab that is not the model's: dynamic masking draws ids past its embeddings
    "data-pretrain-init-larger-vocab": _other_vocab(100),
    # SQuAD
    "data-squad-predict-empty-context": (
        lambda fx, tmp: _squad(fx, tmp, predict=_squad_with(fx, tmp, "p.json", _context(""))),
        (lambda fx, tmp: str(tmp / "p.json"), "paragraph 0", "context")),
    "data-squad-predict-blank-context": (
        lambda fx, tmp: _squad(fx, tmp, predict=_squad_with(fx, tmp, "p.json",
                                                            _context(" \n\t "))),
        (lambda fx, tmp: str(tmp / "p.json"), "paragraph 0", "context")),
    "data-squad-predict-untokenizable-context": (
        lambda fx, tmp: _squad(fx, tmp, predict=_squad_with(fx, tmp, "p.json",
                                                            _context("\u00a0\u200b\x07"))),
        (lambda fx, tmp: str(tmp / "p.json"), "paragraph 0", "no WordPiece tokens")),
    "data-squad-predict-shared-id": (
        lambda fx, tmp: _squad(fx, tmp, predict=_squad_with(fx, tmp, "p.json", _shared_id)),
        (lambda fx, tmp: str(tmp / "p.json"), lambda fx, tmp: _first_id(fx), "paragraph 0",
         "paragraph 1")),
    "data-squad-train-deep-json": (
        lambda fx, tmp: _squad(fx, tmp, train=_deep_json(tmp)),
        (lambda fx, tmp: str(tmp / "deep.json"), "nested")),
    "data-squad-eval-deep-json": (
        lambda fx, tmp: ["squad-eval", _deep_json(tmp), fx.predictions],
        (lambda fx, tmp: str(tmp / "deep.json"), "nested")),
    "data-squad-eval-deep-predictions": (
        lambda fx, tmp: ["squad-eval", fx.squad, _deep_json(tmp, "deep-predictions.json")],
        (lambda fx, tmp: str(tmp / "deep-predictions.json"), "nested")),
    # TSV
    "data-tsv-one-class": (
        _one_class, (lambda fx, tmp: str(tmp / "one-class.tsv"), "'1'", "two")),
}
