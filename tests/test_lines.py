"""One text a line, on every path: files, pipes and stdin are split on `\\n` (and
`\\r\\n`) only, so characters that `str.splitlines` also breaks at (U+2028, `\\x0b`,
`\\x0c`, `\\x1c`-`\\x1e`, `\\x85`) stay inside their line, and the serving signature
takes a batch of texts (rank 1), nothing else."""
import io
import json
import os
import re
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli

# Two lines holding every character that `str.splitlines` splits at besides "\n":
# before 2026-12-07 (commit 1691735) `embed` wrote 9 vectors for them.
LINES = ["one\u2028two\x0bthree\x0cfour\x1cfive", "six\x1dseven\x1eeight\x85nine"]
DATA = "\r\n".join(LINES).encode() + b"\n"


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write_fifo(path, data):
    """A FIFO at `path` with a writer thread that sends `data` once a reader opens it."""
    os.mkfifo(path)

    def write():
        with open(path, "wb") as f:
            f.write(data)
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def test_embed_gives_one_vector_per_line_from_a_file_a_pipe_and_stdin(
        tiny_model_dir, tmp_path, monkeypatch):
    """The same two lines from a file, a FIFO (before 2026-12-07, commit 1691735, a
    pipe read as empty: "wrote 0 vectors") and stdin: two rows, each the line's text
    and its vector."""
    from bert_tf.inference.embed import Embedder
    want = Embedder(tiny_model_dir, "mean").embed(LINES)
    text = tmp_path / "lines.txt"
    text.write_bytes(DATA)
    fifo = str(tmp_path / "fifo")
    writer = _write_fifo(fifo, DATA)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(DATA)))
    for name, source in (("file", str(text)), ("fifo", fifo), ("stdin", "-")):
        out = tmp_path / f"{name}.jsonl"
        assert cli(["embed", "--model", tiny_model_dir, "--pooling", "mean", source,
                    "--output", str(out)]) == 0, name
        rows = _jsonl(out)
        assert [r["text"] for r in rows] == LINES, name
        np.testing.assert_allclose([r["vector"] for r in rows], want, atol=1e-5, err_msg=name)
    writer.join(5)


def test_prepare_text_and_pretraining_input_keep_the_lines(tmp_path):
    """`prepare-text` (WikiText: one sentence a line here) and create-pretraining-data's
    reader keep the two lines as two sentences of one document."""
    from bert_tf.data.pretraining import prepare_text, read_documents
    source = tmp_path / "wiki.txt"
    source.write_bytes(b" = Title = \r\n" + DATA)
    for fmt in ("auto", "wikitext"):   # auto: a CRLF title line is WikiText's too
        out = tmp_path / f"corpus-{fmt}.txt"
        assert prepare_text([str(source)], str(out), fmt) == {"documents": 1, "sentences": 2}
        assert out.read_bytes() == "\n".join(LINES).encode() + b"\n\n"
    assert read_documents([str(out), str(source)]) == [LINES, ["= Title =", *LINES]]


def test_a_long_line_is_refused_without_holding_it(tmp_path):
    """A line past MAX_LINE_BYTES is reported by number, the lines around it are read."""
    from bert_tf.io import text
    path = tmp_path / "long.txt"
    path.write_bytes(b"short\n" + b"x" * (text.MAX_LINE_BYTES + 1) + b"\nlast")
    with open(path, "rb") as f:
        assert list(text.iter_lines(f)) == [(1, b"short"), (2, None), (3, b"last")]
    with pytest.raises(text.DataError, match=f"long.txt, line 2: longer than "
                       f"{text.MAX_LINE_BYTES} bytes"):
        text.read_lines(str(path))


class _Zeros:
    """`cat /dev/zero |` as stdin: a line that never ends. Reading more than 4 MiB of
    it fails the test (before 2026-12-07, commit 04b64b1, `embed -` read it forever)."""

    def __init__(self):
        self.buffer, self.bytes_read = self, 0

    def read(self, n=-1):
        assert n > 0 and self.bytes_read + n <= 4 << 20, "read on past the line's limit"
        self.bytes_read += n
        return b"\0" * n


def test_a_line_that_never_ends_is_refused_at_the_limit(tiny_model_dir, tmp_path, monkeypatch,
                                                        capsys):
    from bert_tf.io.text import MAX_LINE_BYTES
    monkeypatch.setattr(sys, "stdin", _Zeros())
    assert cli(["embed", "--model", tiny_model_dir, "-", "--output",
                str(tmp_path / "v.npy")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bert-tf embed: error: <stdin>, line 1: longer than {MAX_LINE_BYTES} bytes "
        "(binary data, or no line ends?)")
    assert sys.stdin.bytes_read <= MAX_LINE_BYTES + (128 << 10)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pair"])
def test_the_serving_signature_takes_a_batch_of_texts_only(tiny_model_dir, tmp_path, pairs):
    """A SavedModel does not enforce its signature's `[None]` input shape: before
    2026-12-07 (commit 1691735) a `[2, 2]` `text` gave 4 rows. `text` and `text_b` of
    any rank but 1 are refused, naming the input and its shape."""
    import keras
    import bert_tf
    keras.utils.set_random_seed(3)
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2, text_pairs=pairs,
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir,
                                                                        seq_length=16),
                                 labels=["negative", "positive"])
    export = bert_tf.export_model(clf, str(tmp_path / "export"), seq_length=16)["serving"]
    serve = tf.saved_model.load(export).signatures["serving_default"]
    names = ("text", "text_b") if pairs else ("text",)
    good = {name: tf.constant([f"{name} one", f"{name} two, longer"]) for name in names}
    one_by_one = [serve(**{n: t[i:i + 1] for n, t in good.items()})["logits"][0]
                  for i in range(2)]
    np.testing.assert_allclose(serve(**good)["logits"].numpy(), one_by_one, atol=1e-5)
    for name in names:
        for bad, shape in (([["a", "b"], ["c", "d"]], "[2,2]"), ("a", "[]"),
                           ([["a"]], "[1,1]")):
            with pytest.raises(tf.errors.InvalidArgumentError,
                               match=rf"tensor {name} {re.escape(shape)} is not compatible "
                                     r"with expected shape \[\?\]"):
                serve(**{**good, name: tf.constant(bad)})


def test_the_squad_signature_takes_a_batch_of_questions_and_contexts_only(tiny_model_dir,
                                                                          tmp_path):
    """The SQuAD serving signature: `question` and `context` of any rank but 1 are
    refused, naming the input and its shape (a `[2, 2]` context gave 4 rows before
    2026-12-07, commit 1691735)."""
    import bert_tf
    model = bert_tf.BertSpanModel(bert_tf.load_encoder(tiny_model_dir),
                                  bert_tf.load_preprocessor(tiny_model_dir, seq_length=96))
    export = bert_tf.export_model(model, str(tmp_path / "export"), seq_length=96)["serving"]
    serve = tf.saved_model.load(export).signatures["serving_default"]
    good = {"question": tf.constant(["Who?", "When?"]),
            "context": tf.constant(["Ann did it.", "It was in 1901."])}
    assert serve(**good)["start_logits"].shape[0] == 2
    for name in good:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"tensor {name} \[2,2\] is not compatible"):
            serve(**{**good, name: tf.constant([["a", "b"], ["c", "d"]])})
