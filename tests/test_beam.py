"""Batch inference on Apache Beam (`bert-tf predict`, `bert-tf embed --runner`):
every input line once, outputs equal to the single-process paths, bad records in the
dead letters, a failed bundle retried, a failed pipeline leaving nothing behind."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli
from tests.conftest import data_path, report

beam_lib = pytest.importorskip("bert_tf.inference.beam", reason="apache-beam not installed "
                               "(make setup installs it: pip install -e '.[beam]')")

pytestmark = pytest.mark.slow

# Bad records, one of each kind, with the error each must give.
BAD_TSV = [
    ("", "1 fields, the header has 2"),
    ("\t1", "'sentence' is empty"),
    ("too\tmany\tfields", "3 fields, the header has 2"),
]


def _classifier_export(model_dir, out, pairs=False, calibrate=None):
    """An untrained classifier's serving export; its head has large weights and, with
    `calibrate` texts, a bias that splits them between the two labels (an untrained
    head gives every text one label, and a test of labels would prove little)."""
    import keras
    import bert_tf
    keras.utils.set_random_seed(3)
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(model_dir), 2, text_pairs=pairs,
                                 preprocessor=bert_tf.load_preprocessor(model_dir, seq_length=64),
                                 labels=["negative", "positive"])
    dense = clf.get_layer("classifier")
    dense.kernel.assign(np.random.default_rng(0).normal(0, 1, dense.kernel.shape))
    if calibrate:
        logits = clf.predict(calibrate, verbose=0)
        dense.bias.assign([0.0, -float(np.median(logits[:, 1] - logits[:, 0]))])
    return bert_tf.export_model(clf, str(out), seq_length=64)["serving"]


@pytest.fixture(scope="module")
def sst2_export(tiny_model_dir, tmp_path_factory):
    return _classifier_export(tiny_model_dir, tmp_path_factory.mktemp("exports") / "sst2",
                              calibrate=_sst2_dev()[1])


def _rows(pattern):
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            rows += [json.loads(line) for line in f]
    return rows


def _serve(export, texts, texts_b=None, batch=64):
    """The single-process serving path: the export's signature, in batches."""
    sig = tf.saved_model.load(export).signatures["serving_default"]
    out = {"label": [], "probabilities": []}
    for i in range(0, len(texts), batch):
        feeds = {"text": tf.constant(texts[i:i + batch])}
        if texts_b is not None:
            feeds["text_b"] = tf.constant(texts_b[i:i + batch])
        result = sig(**feeds)
        out["label"] += [x.decode() for x in result["label"].numpy()]
        out["probabilities"].append(result["probabilities"].numpy())
    out["probabilities"] = np.concatenate(out["probabilities"])
    return out


def _sst2_dev():
    path = data_path("SST-2", "dev.tsv")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    return path, [line.split("\t")[0] for line in lines if line]


def test_predict_on_two_workers_is_exact_and_keeps_bad_records(sst2_export, tmp_path, capsys):
    """SST-2 dev (872 sentences, a TSV) plus a TSV with good and bad lines, on the
    direct runner with 2 worker processes: each good line appears exactly once, with
    the serving signature's label and probabilities; each bad line is a dead letter
    with its file, line and error; the command prints the counts."""
    dev_path, sentences = _sst2_dev()
    bad_path = tmp_path / "mixed.tsv"
    good = sentences[:5]
    lines = ["sentence\tlabel"] + [f"{t}\t1" for t in good[:3]] + [b for b, _ in BAD_TSV] \
        + [f"{t}\t0" for t in good[3:]]
    bad_path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\t1\n")
    out = str(tmp_path / "out" / "preds")
    assert cli(["predict", "--export", os.path.dirname(sst2_export), dev_path,
                str(tmp_path / "mix*.tsv"), "--output", out, "--text-column", "sentence",
                "--num-workers", "2", "--batch-size", "32", "--num-shards", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {872 + 5} predictions to {out}-*-of-00002 (2 file(s))" in printed
    assert f"4 bad record(s) written to {out}.errors-*.jsonl" in printed

    rows = _rows(out + "-*-of-*.jsonl")
    assert sorted(os.path.basename(p) for p in glob.glob(out + "*")) == [
        "preds-00000-of-00002.jsonl", "preds-00001-of-00002.jsonl",
        "preds.errors-00000-of-00001.jsonl"]
    keys = [(r["file"], r["line"]) for r in rows]
    assert len(keys) == len(set(keys)) == 877, "a row lost or written twice"
    dev_rows = sorted((r for r in rows if r["file"] == dev_path), key=lambda r: r["line"])
    assert [r["line"] for r in dev_rows] == list(range(2, 874))   # line 1 is the header
    want = _serve(sst2_export, sentences)
    got = np.array([r["probabilities"] for r in dev_rows])
    diff = np.abs(got - want["probabilities"]).max()
    report(f"beam predict, 2 workers, SST-2 dev: probabilities vs the serving signature "
           f"max |diff| {diff:.1e}")
    assert diff < 1e-5
    assert [r["label"] for r in dev_rows] == want["label"]
    assert len(set(want["label"])) == 2, "the test model should not give one label to all"
    assert all(np.allclose(np.exp(r["logits"]) / np.exp(r["logits"]).sum(),
                           r["probabilities"], atol=1e-5) for r in dev_rows[:50])

    mixed = sorted((r for r in rows if r["file"].endswith("mixed.tsv")),
                   key=lambda r: r["line"])
    assert [r["line"] for r in mixed] == [2, 3, 4, 8, 9]
    np.testing.assert_allclose([r["probabilities"] for r in mixed],
                               want["probabilities"][:5], atol=1e-5)
    errors = sorted(_rows(out + ".errors-*.jsonl"), key=lambda r: r["line"])
    assert [(e["line"], e["error"]) for e in errors] == [
        (5, BAD_TSV[0][1]), (6, BAD_TSV[1][1]), (7, BAD_TSV[2][1]),
        (10, "not valid UTF-8 (byte 0: b'\\xff')")]
    assert {e["file"] for e in errors} == {str(bad_path)}
    assert errors[2]["record"] == "too\tmany\tfields"


def test_embed_on_beam_equals_embed_in_one_process(tiny_model_dir, tmp_path, capsys):
    """`bert-tf embed --runner direct --num-workers 2` on SST-2 dev sentences (a plain
    text file with an empty line and a bad byte in it) gives the vectors of the
    single-process `bert-tf embed` (1e-5), keyed by line."""
    _, sentences = _sst2_dev()
    texts = sentences[:200]
    plain = tmp_path / "dev.txt"
    plain.write_bytes("\n".join(texts[:100]).encode() + b"\n\n\xc3(\n"
                      + "\n".join(texts[100:]).encode() + b"\n")
    single = tmp_path / "single.npy"
    clean = tmp_path / "clean.txt"
    clean.write_text("\n".join(texts) + "\n")
    assert cli(["embed", "--model", tiny_model_dir, "--pooling", "mean", str(clean),
                "--output", str(single)]) == 0
    out = str(tmp_path / "vectors")
    assert cli(["embed", "--model", tiny_model_dir, "--pooling", "mean", str(plain),
                "--output", out, "--runner", "direct", "--num-workers", "2",
                "--batch-size", "16"]) == 0
    assert "2 bad record(s)" in capsys.readouterr().out
    rows = _rows(out + "-*-of-*.jsonl")
    lines = sorted(r["line"] for r in rows)
    assert lines == list(range(1, 101)) + list(range(103, 203))
    got = beam_lib.numpy_vectors(rows)
    diff = np.abs(got - np.load(single)).max()
    report(f"beam embed, 2 workers, 200 SST-2 sentences: vectors vs single-process embed "
           f"max |diff| {diff:.1e}")
    assert diff < 1e-5
    errors = sorted(_rows(out + ".errors-*.jsonl"), key=lambda r: r["line"])
    assert [(e["line"], e["error"]) for e in errors] == [
        (101, "the line is empty"), (102, "not valid UTF-8 (byte 0: b'\\xc3')")]


def test_pairs_to_parquet_and_tfrecord(tiny_model_dir, tmp_path):
    """A pair model's export over MRPC dev (JSONL with two text fields): parquet and
    TFRecord outputs read back equal the serving signature with `text_b`; a record
    without `text_b` is a dead letter."""
    import pyarrow.parquet as pq
    export = _classifier_export(tiny_model_dir, tmp_path / "mrpc", pairs=True)
    with open(data_path("MRPC", "dev.tsv"), encoding="utf-8-sig") as f:
        header, *lines = f.read().rstrip("\n").split("\n")
    fields = header.split("\t")
    records = [dict(zip(fields, line.split("\t"))) for line in lines[:60]]
    jsonl = tmp_path / "mrpc.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n"
                     + json.dumps({"#1 String": "only one text"}) + "\n[1, 2]\n")
    options = dict(text_column="#1 String", text_b_column="#2 String", batch_size=16)
    want = _serve(export, [r["#1 String"] for r in records], [r["#2 String"] for r in records])
    for fmt in ("parquet", "tfrecord"):
        result = beam_lib.predict_files(export, str(jsonl), str(tmp_path / fmt), fmt=fmt,
                                        **options)
        assert (result.rows, result.errors) == (60, 2)
        if fmt == "parquet":
            rows = [r for f in result.files for r in pq.read_table(f).to_pylist()]
        else:
            rows = []
            for raw in tf.data.TFRecordDataset(result.files):
                feature = tf.train.Example.FromString(raw.numpy()).features.feature
                rows.append({"line": feature["line"].int64_list.value[0],
                             "label": feature["label"].bytes_list.value[0].decode(),
                             "probabilities": list(feature["probabilities"].float_list.value)})
        rows.sort(key=lambda r: r["line"])
        assert [r["line"] for r in rows] == list(range(1, 61))
        assert [r["label"] for r in rows] == want["label"]
        np.testing.assert_allclose([r["probabilities"] for r in rows], want["probabilities"],
                                   atol=1e-5)
        errors = _rows(str(tmp_path / fmt) + ".errors-*.jsonl")
        assert sorted((e["line"], e["error"]) for e in errors) == [
            (61, "no '#2 String'"), (62, "not a JSON object")]
    single = beam_lib.predict_files  # the same pairs sent as single texts differ
    from bert_tf.errors import ConfigError
    with pytest.raises(ConfigError, match="pair model"):
        single(export, str(jsonl), str(tmp_path / "x"), text_column="#1 String")


class FailOnce(beam_lib.ServingExportHandler):
    """A model handler that fails once, on its second batch, after the first batch's
    rows went downstream (a worker crash in the middle of its first attempt at a
    bundle); the marker file says it happened."""

    def __init__(self, export_dir, marker, always=False):
        super().__init__(export_dir, batch_size=16)
        self.marker, self.always, self.calls = marker, always, 0

    def run_inference(self, batch, model, inference_args=None):
        if self.always:
            raise RuntimeError("injected failure")
        self.calls += 1
        if self.calls == 2:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise RuntimeError("injected failure on the first attempt")
        return super().run_inference(batch, model, inference_args)


def test_a_failed_bundle_is_retried_and_the_output_stays_exact(sst2_export, tmp_path):
    """On Beam's bundle-retrying local runner, a bundle whose inference fails once,
    half-way, is run again: every line once (none of the failed attempt's rows kept),
    the counts not doubled, the same probabilities. Stale shards of an earlier
    run with another shard count are removed when the run succeeds."""
    from apache_beam.options.pipeline_options import PipelineOptions
    _, sentences = _sst2_dev()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(sentences[:100]) + "\n")
    out = str(tmp_path / "preds")
    stale = tmp_path / "preds-00000-of-00003.jsonl"
    stale.write_text("old\n")
    marker = str(tmp_path / "failed-once")
    handler = FailOnce(sst2_export, marker)
    result = beam_lib.run_batch_inference(
        handler, beam_lib.prediction_row, [], str(texts), out, overwrite=True, num_shards=1,
        options=PipelineOptions(["--runner=BundleBasedDirectRunner"]))
    assert os.path.exists(marker), "the injected failure did not happen"
    assert not stale.exists()
    assert (result.rows, result.errors) == (100, 0), "a retried bundle counted twice"
    rows = sorted(_rows(out + "-*-of-*.jsonl"), key=lambda r: r["line"])
    assert [r["line"] for r in rows] == list(range(1, 101))
    np.testing.assert_allclose([r["probabilities"] for r in rows],
                               _serve(sst2_export, sentences[:100])["probabilities"], atol=1e-5)


def test_a_failed_pipeline_leaves_the_old_outputs_and_no_temp_files(sst2_export, tmp_path,
                                                                     monkeypatch):
    """A pipeline that fails leaves the previous run's shards as they were and removes
    its own temporary folder, and only its own: another run's temporary folder and
    another output sharing the prefix stay."""
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo\nthree\n")
    out = str(tmp_path / "preds")
    old = tmp_path / "preds-00000-of-00001.jsonl"
    old.write_text("earlier run\n")
    other_output = tmp_path / "preds-v2-00000-of-00001.jsonl"
    other_output.write_text("another output\n")
    other_run = tmp_path / f"beam-temp-preds-{'0' * 32}"
    other_run.mkdir()
    (other_run / "part").write_text("another run, writing now\n")
    removed = []
    real = beam_lib._remove_temp_dirs
    monkeypatch.setattr(beam_lib, "_remove_temp_dirs", lambda dirs: (
        removed.extend(d for d in dirs if os.path.isdir(d)), real(dirs)))
    with pytest.raises(Exception, match="injected failure"):
        beam_lib.run_batch_inference(FailOnce(sst2_export, "", always=True),
                                     beam_lib.prediction_row, [], str(texts), out,
                                     overwrite=True)
    assert removed, "the failed run made no temporary folder: this test proves nothing"
    assert old.read_text() == "earlier run\n"
    assert sorted(os.listdir(tmp_path)) == sorted([
        "preds-00000-of-00001.jsonl", "texts.txt", other_output.name, other_run.name]), \
        "temporary or partial files left behind, or another run's files removed"


def test_line_numbers_compression_and_bad_headers(tiny_model_dir, tmp_path):
    """Physical line numbers through a byte-order mark, CRLF line ends, no final newline
    and gzip; overlapping patterns read each file once; a TSV whose header is not
    UTF-8, or lacks the column, makes each of its lines a dead letter (and the
    pipeline goes on)."""
    import gzip
    from bert_tf.inference.embed import Embedder
    folder = tmp_path / "in"
    folder.mkdir()
    lines = [json.dumps({"sentence": t}) for t in ("first", "second")] + [""] + \
        [json.dumps({"sentence": "fourth"}), "[]"]
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(
        b"\xef\xbb\xbf" + "\r\n".join(lines).encode()))
    (folder / "b.tsv").write_bytes(b"\xffsentence\tlabel\nx\t1\n")
    (folder / "c.tsv").write_bytes(b"text\tlabel\nhello\t1\nworld\t0")
    out = str(tmp_path / "v")
    result = beam_lib.embed_files(tiny_model_dir, [str(folder / "*.tsv"), str(folder / "b.tsv"),
                                                   str(folder / "a.*")], out,
                                  text_column="sentence", pooling="mean")
    assert (result.rows, result.errors) == (3, 5)
    rows = sorted(_rows(out + "-*-of-*.jsonl"), key=lambda r: r["line"])
    assert [r["line"] for r in rows] == [1, 2, 4]
    want = Embedder(tiny_model_dir, "mean").embed(["first", "second", "fourth"])
    np.testing.assert_allclose(beam_lib.numpy_vectors(rows), want, atol=1e-5)
    errors = sorted((os.path.basename(e["file"]), e["line"], e["error"])
                    for e in _rows(out + ".errors-*.jsonl"))
    assert [e[:2] for e in errors] == [("a.jsonl.gz", 3), ("a.jsonl.gz", 5), ("b.tsv", 2),
                                       ("c.tsv", 2), ("c.tsv", 3)]
    assert errors[0][2].startswith("not JSON") and errors[1][2] == "not a JSON object"
    assert errors[2][2] == "line 1, the header: not valid UTF-8 (byte 0: b'\\xff')"
    assert errors[3][2] == "no column 'sentence' in the header ['text', 'label']"


def test_bad_arguments_fail_before_the_pipeline(sst2_export, tiny_model_dir, tmp_path, capsys):
    texts = tmp_path / "t.txt"
    texts.write_text("a\n")
    (tmp_path / "out-00000-of-00001.jsonl").write_text("x\n")
    encoder = tmp_path / "enc"
    import bert_tf
    encoder_export = bert_tf.export_model(bert_tf.load_encoder(tiny_model_dir), str(encoder),
                                          seq_length=16, preprocessor=bert_tf.load_preprocessor(
                                              tiny_model_dir))["serving"]
    cases = {
        "no file matches": ["predict", "--export", sst2_export, str(tmp_path / "nope*.txt"),
                            "--output", str(tmp_path / "o")],
        "1 file(s) exist": ["predict", "--export", sst2_export, str(texts), "--output",
                            str(tmp_path / "out")],
        "no 'label', 'labels' or 'predictions' output": [
            "predict", "--export", encoder_export, str(texts), "--output",
                              str(tmp_path / "o")],
        "not a SavedModel export": ["predict", "--export", str(tmp_path), str(texts),
                                    "--output", str(tmp_path / "o")],
        "need --runner": ["embed", "--model", tiny_model_dir, str(texts), "--output",
                          str(tmp_path / "v.npy"), "--num-workers", "2"],
    }
    for expected, argv in cases.items():
        assert cli(argv) == 2, expected
        assert expected in capsys.readouterr().err
    from bert_tf.cli import split_beam_args
    assert split_beam_args(["predict", "x", "--", "--project=p"]) == (["predict", "x"],
                                                                      ["--project=p"])
    assert split_beam_args(["embed", "x", "--runner", "dataflow", "--", "--region=r"]) == (
        ["embed", "x", "--runner", "dataflow"], ["--region=r"])
    for plain in (["embed", "--model", "m", "--output", "v.npy", "--", "-file.txt"],
                  ["info", "--", "dir"]):
        assert split_beam_args(plain) == (plain, []), "-- ends bert-tf's options there"
    assert sorted(os.listdir(tmp_path)) == ["enc", "out-00000-of-00001.jsonl", "t.txt"]


def test_without_beam_the_command_says_how_to_install_it(tmp_path):
    import subprocess
    import sys
    code = ("import sys; sys.modules['apache_beam'] = None\n"
            "from bert_tf.cli import main\n"
            f"sys.exit(main(['predict', '--export', 'x', 'y.txt', '--output', "
            f"{str(tmp_path / 'o')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "bert-tf predict: error: Batch inference on Apache Beam needs apache-beam, which is "
        "not installed (pip install 'bert-tf[beam]'): import of apache_beam halted; None in "
        "sys.modules")
    assert not os.listdir(tmp_path)


def test_bench_beam_runs_and_checks_its_rows(tiny_model_dir, tmp_path):
    """The benchmark's smoke test (tiny model, 200 sentences, 1 worker): both rows ran
    and the Beam row's vectors are the one-process vectors."""
    from pipelines.bench_beam import main as bench_beam
    result = bench_beam(["--model", tiny_model_dir, "--out", str(tmp_path), "--limit", "200",
                         "--workers", "1", "--data-dir", os.path.dirname(data_path("SST-2"))])
    assert result["texts"] == 200
    assert [r["system"] for r in result["rows"]] == [
        "bert-tf embed, one process", "bert-tf embed --runner direct --num-workers 1"]
    assert result["rows"][1]["max_abs_diff"] < 1e-5
    assert (tmp_path / "bench_beam.md").read_text().count("| bert-tf embed") == 2


def test_multi_label_and_regression_exports(tiny_model_dir, tmp_path):
    """`predict` over a multi-label export writes `labels` (the names over its threshold)
    and the sigmoid `probabilities`; over a regression export, `predictions`: each row
    equal to the serving signature on the same text, to JSONL, Parquet and TFRecord."""
    import keras
    import pyarrow.parquet as pq
    import bert_tf
    _, texts = _sst2_dev()
    texts = texts[:24]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(texts) + "\n")
    for problem in ("multi_label", "regression"):
        keras.utils.set_random_seed(4)
        clf = bert_tf.BertClassifier(
            bert_tf.load_encoder(tiny_model_dir), 3 if problem == "multi_label" else 2,
            problem=problem, labels=["a", "b", "c"] if problem == "multi_label" else None,
            preprocessor=bert_tf.load_preprocessor(tiny_model_dir, seq_length=32))
        dense = clf.get_layer("classifier")   # large weights: labels that differ by text
        dense.kernel.assign(np.random.default_rng(0).normal(0, 3, dense.kernel.shape))
        dense.bias.assign(-np.median(clf.predict(texts, verbose=0), axis=0))  # half over
        export = bert_tf.export_model(clf, str(tmp_path / problem), seq_length=32)["serving"]
        served = tf.saved_model.load(export).signatures["serving_default"](
            text=tf.constant(texts))
        for fmt in ("jsonl", "parquet", "tfrecord"):
            out = str(tmp_path / f"{problem}-{fmt}")
            result = beam_lib.predict_files(export, str(source), out, fmt=fmt, batch_size=8)
            assert (result.rows, result.errors) == (24, 0)
            if fmt == "jsonl":
                rows = _rows(out + "-*.jsonl")
            elif fmt == "parquet":
                rows = [r for f in result.files for r in pq.read_table(f).to_pylist()]
            else:
                rows = []
                for raw in tf.data.TFRecordDataset(result.files):
                    feature = tf.train.Example.FromString(raw.numpy()).features.feature
                    row = {"line": feature["line"].int64_list.value[0]}
                    for name in ("labels",):
                        if name in feature:
                            row[name] = [v.decode() for v in feature[name].bytes_list.value]
                    for name in ("probabilities", "predictions"):
                        if name in feature:
                            row[name] = list(feature[name].float_list.value)
                    rows.append(row)
            rows.sort(key=lambda r: r["line"])
            assert [r["line"] for r in rows] == list(range(1, 25))
            if problem == "regression":
                assert "label" not in rows[0] and "labels" not in rows[0]
                np.testing.assert_allclose([r["predictions"] for r in rows],
                                           served["predictions"].numpy(), atol=1e-5)
            else:
                want = [[x.decode() for x in row if x] for row in served["labels"].numpy()]
                assert [r["labels"] for r in rows] == want
                assert len({tuple(w) for w in want}) > 1   # the labels differ by text
                np.testing.assert_allclose([r["probabilities"] for r in rows],
                                           served["probabilities"].numpy(), atol=1e-5)


def test_beam_reads_the_lines_that_embed_reads(sst2_export, tiny_model_dir, tmp_path):
    """The file of tests/test_lines.py (two lines holding U+2028, \\x0b, ... that
    `str.splitlines` breaks at, CRLF ends) gives the same 2 rows from Beam `predict` and
    `embed` as from single-process `embed`; a binary line and a line past MAX_LINE_BYTES
    are dead letters, read without holding the long line."""
    from bert_tf.inference.embed import Embedder
    from bert_tf.io.text import MAX_LINE_BYTES
    from tests.test_lines import DATA, LINES
    source = tmp_path / "lines.txt"
    source.write_bytes(DATA + b"bin\x00ary\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    predicted = beam_lib.predict_files(sst2_export, str(source), str(tmp_path / "p"))
    embedded = beam_lib.embed_files(tiny_model_dir, str(source), str(tmp_path / "v"),
                                    pooling="mean")
    for result, name in ((predicted, "p"), (embedded, "v")):
        assert (result.rows, result.errors) == (2, 2), name
        rows = sorted(_rows(str(tmp_path / name) + "-*-of-*.jsonl"), key=lambda r: r["line"])
        assert [r["line"] for r in rows] == [1, 2], name
        errors = sorted(_rows(str(tmp_path / name) + ".errors-*.jsonl"),
                        key=lambda r: r["line"])
        assert [(e["line"], e["error"], e["record"]) for e in errors] == [
            (3, "a NUL byte (byte 3): binary data, not text (UTF-16 text? save it as UTF-8)",
             "bin\x00ary"),
            (4, f"longer than {MAX_LINE_BYTES} bytes (binary data, or no line ends?)", "")], name
    served = _serve(sst2_export, LINES)
    np.testing.assert_allclose([r["probabilities"] for r in _rows(str(tmp_path / "p-*.jsonl"))
                                if r["line"] == 1], served["probabilities"][:1], atol=1e-5)
    np.testing.assert_allclose(beam_lib.numpy_vectors(_rows(str(tmp_path / "v-*-of-*.jsonl"))),
                               Embedder(tiny_model_dir, "mean").embed(LINES), atol=1e-5)


def test_a_successful_run_removes_the_temp_folders_of_killed_runs(sst2_export, tmp_path):
    """`beam-temp-*` folders that a killed run of the same output left (SIGKILL gives
    it no chance to remove them; before 2026-12-07, commit 1691735, they stayed for
    good) are removed by the next run that succeeds; another output's stay."""
    texts = tmp_path / "texts.txt"
    texts.write_text("one\ntwo\n")
    killed = [tmp_path / f"beam-temp-preds-{'1' * 32}", tmp_path / f"beam-temp-preds.errors-"
              f"{'2' * 32}"]
    other = tmp_path / f"beam-temp-preds-v2-{'3' * 32}"
    for folder in (*killed, other):
        folder.mkdir()
        (folder / "part").write_text("a killed run's rows\n")
    result = beam_lib.predict_files(sst2_export, str(texts), str(tmp_path / "preds"))
    assert (result.rows, result.errors) == (2, 0)
    assert sorted(os.listdir(tmp_path)) == sorted([
        "texts.txt", "preds-00000-of-00001.jsonl", "preds.errors-00000-of-00001.jsonl",
        other.name])
