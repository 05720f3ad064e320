"""Batch inference on Apache Beam: a serving export (`predict_files`) or a model dir's
sentence vectors (`embed_files`) over text files, on any Beam runner: the local one
(`direct`), Dataflow, Flink or Spark, with no change to the pipeline.

Inputs are files or glob patterns on any file system Beam reads (local, `gs://`,
`s3://`, `hdfs://`): plain text (one text a line), or TSV (with a header row) / JSONL
when a `text_column` is given. Every output row names its input's file and 1-based
physical line (a TSV header is line 1). Bad records (invalid UTF-8, an empty text, a
missing column, a line that is not JSON) never stop the pipeline: they go to the dead
letters `OUTPUT.errors-SSSSS-of-NNNNN.jsonl` with their file, line and what is wrong.
Outputs are Beam's sharded files `OUTPUT-SSSSS-of-NNNNN.{jsonl,parquet,tfrecord}`,
written to temporary files and renamed when the pipeline succeeds.

Inference runs through Beam's `RunInference` with the model handlers below: one model
load per worker process, batches of `batch_size`, each padded to its longest text.

`predict_files` does the same with a classifier's serving export (rows of label,
probabilities and logits). Example (needs `pip install 'bert-tf[beam]'`): SST-2's
dev sentences (a TSV with a header row) through a model dir, mean-pooled:

    >>> result = embed_files(model_dir, [f"{data_dir}/SST-2/dev.tsv"], f"{tmp}/vectors",
    ...                      pooling="mean", text_column="sentence", num_shards=2)
    >>> result.rows, result.errors, [os.path.basename(f) for f in result.files]
    (872, 0, ['vectors-00000-of-00002.jsonl', 'vectors-00001-of-00002.jsonl'])
    >>> row = json.loads(open(result.files[0]).readline())
    >>> sorted(row), len(row["vector"])
    (['file', 'line', 'vector'], 128)
"""
from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import re
import shutil
import time

# Beam warns at import that gs:// needs apache-beam[gcp]; a gs:// path then fails with
# a clear "No filesystem found" error, so the warning is noise for local runs.
logging.getLogger("apache_beam.io.filesystems").setLevel(logging.ERROR)

from bert_tf.extras import require  # noqa: E402

require("apache_beam", "beam", "Batch inference on Apache Beam")  # one line when missing
import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
from apache_beam.io import fileio  # noqa: E402
from apache_beam.io.filesystem import CompressionTypes  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.metrics import Metrics, MetricsFilter  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, \
    PredictionResult, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from bert_tf.choices import HEAD_OUTPUTS  # noqa: E402
from bert_tf.errors import ConfigError, DataError, OutputError  # noqa: E402
from bert_tf.io.atomic import check_parent_writable  # noqa: E402
from bert_tf.io.text import LineError, check_readable_kind, decode_line, \
    iter_lines  # noqa: E402

# --runner NAME -> Beam's runner. `direct` is the portable FnApiRunner (what Beam's
# DirectRunner falls back to offline; it runs --num-workers processes).
RUNNERS = {"direct": "FnApiRunner", "prism": "PrismRunner", "dataflow": "DataflowRunner",
           "flink": "FlinkRunner", "spark": "SparkRunner"}
FORMATS = ("jsonl", "parquet", "tfrecord")
# What `predict` writes per record, by the classifier's problem (its export's outputs).
PROBLEM_OUTPUTS = HEAD_OUTPUTS
PREDICT_OUTPUTS = HEAD_OUTPUTS["single_label"]
COUNTERS = "bert_tf"
GLOB_CHARS = ("*", "?", "[")   # what Beam's FileSystems.match expands


@dataclasses.dataclass
class BatchResult:
    """What a pipeline wrote: row and dead-letter counts, and the output files."""
    rows: int
    errors: int
    trimmed: int
    files: list[str]
    error_files: list[str]


# ---------------------------------------------------------------- reading records

def record_format(path: str, text_column: str | None) -> str:
    """`text` without a column; with one, `jsonl` for .jsonl/.json files, else `tsv`."""
    if text_column is None:
        return "text"
    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        path = os.path.splitext(path)[0]   # x.jsonl.gz, x.tsv.bz2, ...
    return "jsonl" if path.lower().endswith((".jsonl", ".json")) else "tsv"


class _RecordError(ValueError):
    pass


class ReadRecords(beam.DoFn):
    """A matched file -> `((file, line), text)` or `((file, line), (text, text_b))`
    for each good record, and `{"file", "line", "error", "record"}` on the `errors`
    output for each bad one. Lines are split as everywhere in bert-tf
    (`bert_tf.io.text.iter_lines`: on `\\n` only, at most `MAX_LINE_BYTES` of a line
    held), so line numbers are the file's physical lines."""

    def __init__(self, text_column: str | None = None, text_b_column: str | None = None):
        self.text_column = text_column
        self.text_b_column = text_b_column
        self.records = Metrics.counter(COUNTERS, "records")
        self.bad = Metrics.counter(COUNTERS, "errors")

    def process(self, readable_file):
        path = readable_file.metadata.path
        kind = record_format(path, self.text_column)
        header = None
        with readable_file.open() as f:   # compressed files (.gz) too
            for number, raw in iter_lines(f):
                try:
                    if kind == "tsv" and number == 1:
                        header = self._header(raw)   # a list, or what is wrong with it
                        continue
                    value = self._parse(kind, _decode(raw), header)
                except _RecordError as e:
                    self.bad.inc()
                    yield beam.pvalue.TaggedOutput("errors", {
                        "file": path, "line": number, "error": str(e),
                        "record": "" if raw is None else raw.decode("utf-8",
                                                                    "backslashreplace")})
                    continue
                self.records.inc()
                yield (path, number), value

    def _header(self, raw: bytes) -> list[str] | str:
        try:
            header = _decode(raw).split("\t")
        except _RecordError as e:
            return f"line 1, the header: {e}"
        for column in (self.text_column, self.text_b_column):
            if column is not None and column not in header:
                return f"no column {column!r} in the header {header}"
        return header

    def _parse(self, kind: str, line: str, header):
        if kind == "text":
            return _text(line, "the line")
        if kind == "tsv":
            if isinstance(header, str):   # every line of a file with a bad header
                raise _RecordError(header)
            fields = line.split("\t")
            if len(fields) != len(header):
                raise _RecordError(f"{len(fields)} fields, the header has {len(header)}")
            get = dict(zip(header, fields)).get
        else:
            try:
                record = json.loads(line)
            except ValueError as e:
                raise _RecordError(f"not JSON: {e}") from None
            if not isinstance(record, dict):
                raise _RecordError("not a JSON object")
            get = record.get
        texts = []
        for column in (self.text_column, self.text_b_column):
            if column is None:
                continue
            value = get(column)
            if value is None:
                raise _RecordError(f"no {column!r}")
            if not isinstance(value, str):
                raise _RecordError(f"{column!r} is not a string")
            texts.append(_text(value, repr(column)))
        return texts[0] if len(texts) == 1 else tuple(texts)


def _decode(raw: bytes | None) -> str:
    try:
        return decode_line(raw)
    except LineError as e:
        raise _RecordError(str(e)) from None


def _text(value: str, what: str) -> str:
    if not value.strip():
        raise _RecordError(f"{what} is empty")
    return value


def read_records(pipeline, patterns: list[str], text_column=None, text_b_column=None):
    """Glob patterns -> (records, errors) PCollections (see `ReadRecords`). Each matched
    file is read once (patterns may overlap); records are reshuffled so that the
    workers share the files' lines."""
    files = sorted(set(match_inputs(patterns)))
    out = (pipeline
           | "Files" >> beam.Create(files)
           | "Match" >> fileio.MatchAll()
           | "Open" >> fileio.ReadMatches()
           | "Read" >> beam.ParDo(ReadRecords(text_column, text_b_column)).with_outputs(
               "errors", main="records"))
    return out.records | "Spread" >> beam.Reshuffle(), out.errors


def match_inputs(patterns: list[str]) -> list[str]:
    """The files the patterns match; a pattern that matches nothing, a folder or a
    device (`/dev/zero`: a line that never ends) is a `DataError`."""
    files = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        if not result.metadata_list:
            raise DataError(f"{pattern}: no file matches")
        for m in result.metadata_list:
            if "://" not in m.path:
                if os.path.isdir(m.path):
                    raise DataError(f"{m.path}: is a folder (give files or a glob: "
                                    f"{os.path.join(m.path, '*.txt')})")
                check_readable_kind(m.path)
            files.append(m.path)
    return files


def check_inputs_and_outputs(patterns, output: str, overwrite: bool) -> list[str]:
    """Before anything runs: the inputs exist, `output` is a usable prefix, and its
    existing shards (returned) are replaced only with `overwrite`."""
    match_inputs([patterns] if isinstance(patterns, str) else list(patterns))
    check_output_prefix(output)
    old = output_files(output) + output_files(output + ".errors", "jsonl")
    if old and not overwrite:
        raise OutputError(f"output {output}: {len(old)} file(s) exist ({old[0]}, ...): pass "
                          "--overwrite (overwrite=True) to replace them")
    return old


def check_output_prefix(output: str) -> None:
    """`output` names files (`OUTPUT-SSSSS-of-NNNNN...`), not a folder, and has no glob
    characters (Beam finds its temporary and output files by pattern: `bp-[x]*` would
    match none of them); a local one must be writable (its nearest existing folder)."""
    found = [c for c in GLOB_CHARS if c in output]
    if found:
        raise OutputError(f"output {output}: {' '.join(found)} would be read as glob "
                          "characters (Beam finds its files by pattern): choose a prefix "
                          f"without {', '.join(GLOB_CHARS)}")
    if "://" in output:
        return
    if os.path.isdir(output) or output.endswith(os.sep):
        raise OutputError(f"output {output}: is a folder; --output is a prefix for the "
                          f"output files, e.g. {os.path.join(output, 'preds')}")
    check_parent_writable(output)


# ---------------------------------------------------------------- model handlers

class ServingExportHandler(ModelHandler):
    """Beam model handler for a bert-tf serving export: batches of texts (or
    `(text, text_b)` pairs) -> `{"label", "probabilities", "logits"}` per text, through
    the export's `serving_default` signature (what TF Serving runs).

    Beam's own `TFModelHandlerTensor` loads models with `tf.keras.models.load_model`,
    which Keras 3 refuses for a SavedModel, and feeds tensors, not strings; this
    handler loads the SavedModel with `tf.saved_model.load`, once per worker process.
    """

    def __init__(self, export_dir: str, batch_size: int = 64, outputs=PREDICT_OUTPUTS):
        super().__init__()
        self.export_dir = export_dir
        self.batch_size = batch_size
        self.outputs = tuple(outputs)

    def load_model(self):
        import tensorflow as tf
        return tf.saved_model.load(self.export_dir)

    def run_inference(self, batch, model, inference_args=None):
        import tensorflow as tf
        serve = model.signatures["serving_default"]
        if isinstance(batch[0], tuple):
            out = serve(text=tf.constant([a for a, _ in batch]),
                        text_b=tf.constant([b for _, b in batch]))
        else:
            out = serve(text=tf.constant(list(batch)))
        arrays = {name: out[name].numpy() for name in self.outputs}
        return [PredictionResult(x, {k: v[i] for k, v in arrays.items()})
                for i, x in enumerate(batch)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}


class EmbedderHandler(ModelHandler):
    """Beam model handler for sentence vectors: a model dir and a pooling strategy
    (`bert_tf.inference.embed.Embedder`, the same code as single-process `embed`)."""

    def __init__(self, model_dir: str, pooling: str = "pooled_output",
                 max_seq_length: int = 128, batch_size: int = 64, normalize: bool = False):
        super().__init__()
        self.model_dir = model_dir
        self.pooling = pooling
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.trimmed = Metrics.counter(COUNTERS, "trimmed")

    def load_model(self):
        from bert_tf.inference.embed import Embedder
        return Embedder(self.model_dir, self.pooling, self.max_seq_length, self.batch_size,
                        self.normalize)

    def run_inference(self, batch, model, inference_args=None):
        vectors, trimmed = model.embed_batch(list(batch))
        self.trimmed.inc(trimmed)
        return [PredictionResult(x, {"vector": v}) for x, v in zip(batch, vectors)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self.batch_size, "max_batch_size": self.batch_size}


def serving_export_dir(path: str) -> str:
    """An export version dir (holding saved_model.pb), or a base of numbered versions
    (TF Serving's layout: the highest version is used)."""
    if FileSystems.exists(FileSystems.join(path, "saved_model.pb")):
        return path
    versions = []
    for m in FileSystems.match([FileSystems.join(path, "*", "saved_model.pb")])[0].metadata_list:
        name = os.path.basename(os.path.dirname(m.path))
        if name.isdigit():
            versions.append(int(name))
    if not versions:
        raise ConfigError(f"{path}: not a SavedModel export (no saved_model.pb here or in a "
                          "numbered version folder)")
    return FileSystems.join(path, str(max(versions)))


def export_signature(export_dir: str) -> tuple[set[str], set[str]]:
    """The input and output names of an export's `serving_default` signature, read from
    saved_model.pb without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2
    message = saved_model_pb2.SavedModel()
    with FileSystems.open(FileSystems.join(export_dir, "saved_model.pb")) as f:
        message.ParseFromString(f.read())
    signatures = message.meta_graphs[0].signature_def
    if "serving_default" not in signatures:
        raise ConfigError(f"{export_dir}: the export has no serving_default signature")
    signature = signatures["serving_default"]
    return set(signature.inputs), set(signature.outputs)


# ---------------------------------------------------------------- writing rows

def _floats(values) -> list[float]:
    return [round(float(x), 7) for x in values]


def _decoded(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def prediction_row(keyed) -> dict:
    """One record's row: `label` (a string), `labels` (the multi-label names over the
    threshold), and float lists (`probabilities`, `logits`, `predictions`)."""
    (path, line), result = keyed
    row = {"file": path, "line": line}
    for name, value in result.inference.items():
        if name == "label":
            row[name] = _decoded(value)
        elif name == "labels":
            row[name] = [_decoded(v) for v in value if len(v)]
        else:
            row[name] = _floats(value)
    return row


def vector_row(keyed) -> dict:
    (path, line), result = keyed
    return {"file": path, "line": line, "vector": _floats(result.inference["vector"])}


def _parquet_schema(columns: list[str]):
    import pyarrow as pa
    floats = pa.list_(pa.float32())
    types = {"file": pa.string(), "line": pa.int64(), "label": pa.string(),
             "labels": pa.list_(pa.string()), "probabilities": floats, "logits": floats,
             "predictions": floats, "vector": floats}
    return pa.schema([(name, types[name]) for name in columns])


def _example(row: dict) -> bytes:
    import tensorflow as tf
    feature = {}
    for name, value in row.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif name == "labels":
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() for v in value]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_rows(rows, output: str, fmt: str, columns: list[str], num_shards: int = 0):
    """Rows (dicts) -> Beam's sharded files `output-SSSSS-of-NNNNN.<fmt>`."""
    if fmt == "jsonl":
        return (rows | "Json" >> beam.Map(json.dumps)
                | "Write" >> beam.io.WriteToText(output, file_name_suffix=".jsonl",
                                                 num_shards=num_shards))
    if fmt == "parquet":
        return rows | "Write" >> beam.io.WriteToParquet(
            output, _parquet_schema(columns), file_name_suffix=".parquet", num_shards=num_shards)
    if fmt == "tfrecord":
        return (rows | "Example" >> beam.Map(_example)
                | "Write" >> beam.io.WriteToTFRecord(output, file_name_suffix=".tfrecord",
                                                     num_shards=num_shards))
    raise ConfigError(f"format {fmt!r}: choose one of {FORMATS}")


# ---------------------------------------------------------------- running

def pipeline_options(runner: str = "direct", num_workers: int = 1,
                     beam_args=()) -> PipelineOptions:
    """Beam options for `--runner NAME --num-workers N`, then the user's own Beam
    options (`beam_args`, which win)."""
    if runner not in RUNNERS:
        raise ConfigError(f"runner {runner!r}: choose one of {tuple(RUNNERS)}")
    args = [f"--runner={RUNNERS[runner]}"]
    if runner in ("direct", "prism"):
        mode = "multi_processing" if num_workers > 1 else "in_memory"
        args += [f"--direct_num_workers={num_workers}", f"--direct_running_mode={mode}",
                 "--default_sdk_harness_log_level=WARNING"]
    elif runner == "dataflow":
        args += [f"--num_workers={num_workers}"]
    else:
        args += [f"--parallelism={num_workers}"]
    return PipelineOptions(args + list(beam_args))


def output_files(output: str, fmt: str | None = None) -> list[str]:
    """The sharded files `output-SSSSS-of-NNNNN.<fmt>` (any of FORMATS without `fmt`)
    that exist now; `output-v2-...` and other outputs sharing the prefix are not ours."""
    suffixes = "|".join(re.escape(f) for f in ([fmt] if fmt else FORMATS))
    name = re.compile(re.escape(os.path.basename(output))
                      + rf"-\d{{5,}}-of-\d{{5,}}\.({suffixes})$")
    matched = FileSystems.match([f"{output}-*-of-*"])[0].metadata_list
    return sorted(m.path for m in matched if name.match(os.path.basename(m.path)))


def run_batch_inference(handler: ModelHandler, row_fn, columns: list[str], patterns,
                        output: str, *, fmt: str = "jsonl", text_column=None,
                        text_b_column=None, runner: str = "direct", num_workers: int = 1,
                        num_shards: int = 0, beam_args=(), overwrite: bool = False,
                        options: PipelineOptions | None = None) -> BatchResult:
    """Reads records, runs `handler` over them with `RunInference` and writes
    `row_fn(((file, line), PredictionResult))` rows to `output`, the bad records to
    `output + ".errors"`. Old shards of `output` are replaced only when the pipeline
    succeeds; a failed pipeline leaves no files under the final names (and its
    temporary files are removed). A run that succeeds also removes the temporary
    folders of `output` that were there when it started: those of runs that were
    killed (SIGKILL leaves them), or of a run writing the same output now, whose
    shards this run has replaced anyway."""
    if fmt not in FORMATS:
        raise ConfigError(f"format {fmt!r}: choose one of {FORMATS}")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    old = check_inputs_and_outputs(patterns, output, overwrite)
    errors_output = output + ".errors"
    options = options or pipeline_options(runner, num_workers, beam_args)
    start = time.time()
    before = temp_dirs(output)
    try:
        pipeline = beam.Pipeline(options=options)
        records, errors = read_records(pipeline, patterns, text_column, text_b_column)
        rows = (records
                | "Infer" >> RunInference(KeyedModelHandler(handler))
                | "Row" >> beam.Map(row_fn)
                | "Count" >> beam.Map(_count, Metrics.counter(COUNTERS, "rows")))
        write_rows(rows, output, fmt, columns, num_shards)
        (errors | "ErrorJson" >> beam.Map(json.dumps)
         | "WriteErrors" >> beam.io.WriteToText(errors_output, file_name_suffix=".jsonl"))
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException:
        # Beam leaves a failed run's temporary files; remove this run's (not another
        # run's that is writing the same output now: those existed before).
        _remove_temp_dirs(temp_dirs(output) - before)
        raise
    _remove_stale(old, start)
    _remove_temp_dirs(before)
    counts = _counters(result)
    return BatchResult(rows=counts.get("rows", 0), errors=counts.get("errors", 0),
                       trimmed=counts.get("trimmed", 0), files=output_files(output, fmt),
                       error_files=output_files(errors_output, "jsonl"))


def _count(row, counter):
    counter.inc()
    return row


def _counters(result) -> dict[str, int]:
    counts = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + int(value)
    return counts


def temp_dirs(output: str) -> set[str]:
    """Beam's sink folders for `output` and its dead letters: `beam-temp-<name>-<uuid1
    hex>` beside them (each run makes its own and removes it when it succeeds)."""
    folder, name = os.path.split(output)
    found = set()
    for prefix in (f"beam-temp-{name}-", f"beam-temp-{name}.errors-"):
        pattern = re.compile(re.escape(prefix) + "[0-9a-f]{32}$")
        base = FileSystems.join(folder or ".", prefix + "*")
        paths = [m.path for m in FileSystems.match([base + "/*"])[0].metadata_list]
        paths = {os.path.dirname(p) for p in paths}
        if "://" not in base:   # an empty local folder has no files to match
            paths |= {p for p in glob.glob(base) if os.path.isdir(p)}
        found |= {p for p in paths if pattern.match(os.path.basename(p))}
    return found


def _remove_temp_dirs(dirs) -> None:
    for path in dirs:
        files = FileSystems.match([FileSystems.join(path, "*")])[0].metadata_list
        if files:
            FileSystems.delete([m.path for m in files])
        if "://" not in path:
            shutil.rmtree(path, ignore_errors=True)


def _remove_stale(old: list[str], start: float) -> None:
    """Deletes the previous run's shards that this run did not rewrite (a different
    shard count leaves `-of-OLD` files behind)."""
    stale = []
    for path in old:
        found = FileSystems.match([path])[0].metadata_list
        if found and found[0].last_updated_in_seconds < start:
            stale.append(path)
    if stale:
        FileSystems.delete(stale)


def predict_files(export: str, patterns, output: str, *, batch_size: int = 64,
                  **options) -> BatchResult:
    """A classifier's serving export (a version dir or a base of versions) over text
    files: one row `{"file", "line", "label", "probabilities", "logits"}` per record
    (`labels` in place of `label` for a multi-label model; `predictions` alone for
    regression: `PROBLEM_OUTPUTS`).
    A pair model's export needs `text_column` and `text_b_column`. `options`: those of
    `run_batch_inference` (fmt, text_column, runner, num_workers, ...)."""
    check_inputs_and_outputs(patterns, output, options.get("overwrite", False))
    export_dir = serving_export_dir(export)
    inputs, outputs = export_signature(export_dir)
    kinds = [names for names in PROBLEM_OUTPUTS.values() if set(names) <= set(outputs)]
    if not kinds:
        raise ConfigError(f"{export_dir}: the export has no 'label', 'labels' or 'predictions' "
                          "output: predict needs a fine-tuned classifier's serving export "
                          "(embed gives vectors)")
    columns = kinds[0]
    if "text_b" in inputs and not options.get("text_b_column"):
        raise ConfigError(f"{export_dir}: a pair model: give --text-column and --text-b-column")
    if "text_b" not in inputs and options.get("text_b_column"):
        raise ConfigError(f"{export_dir}: a single-text model: --text-b-column has no use here")
    handler = ServingExportHandler(export_dir, batch_size, columns)
    return run_batch_inference(handler, prediction_row, ["file", "line", *columns],
                               patterns, output, **options)


def embed_files(model_dir: str, patterns, output: str, *, pooling: str = "pooled_output",
                max_seq_length: int = 128, batch_size: int = 64, normalize: bool = False,
                **options) -> BatchResult:
    """Sentence vectors of text files: one row `{"file", "line", "vector"}` per record,
    equal to `Embedder(model_dir, pooling, normalize=normalize).embed(texts)`."""
    from bert_tf.inference.embed import EMBED_POOLINGS
    from bert_tf.models.loading import check_model_dir
    if pooling not in EMBED_POOLINGS:
        raise ConfigError(f"pooling {pooling!r}: choose one of {EMBED_POOLINGS}")
    if options.get("text_b_column"):
        raise ConfigError("embed encodes one text a record: --text-b-column has no use here")
    check_inputs_and_outputs(patterns, output, options.get("overwrite", False))
    check_model_dir(model_dir).check_seq_length(max_seq_length, "max_seq_length")
    handler = EmbedderHandler(model_dir, pooling, max_seq_length, batch_size, normalize)
    return run_batch_inference(handler, vector_row, ["file", "line", "vector"], patterns,
                               output, **options)


def numpy_vectors(rows: list[dict]) -> np.ndarray:
    """Rows read back from an embed output -> `[N, H]` float32, in (file, line) order."""
    rows = sorted(rows, key=lambda r: (r["file"], r["line"]))
    return np.array([r["vector"] for r in rows], np.float32)
