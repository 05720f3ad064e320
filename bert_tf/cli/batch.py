"""`bert-tf predict` and `bert-tf embed --runner`: batch inference on Apache Beam
(`bert_tf.inference.beam`, imported when one runs: without Apache Beam it stops with one
line saying how to install it). Options after `--` go to Beam unchanged."""
from __future__ import annotations

from bert_tf.cli.types import non_negative_int, positive_int

RUNNER_NAMES = ("direct", "prism", "dataflow", "flink", "spark")
FORMAT_NAMES = ("jsonl", "parquet", "tfrecord")


def add_beam_arguments(p, runner_default) -> None:
    p.add_argument("--runner", choices=RUNNER_NAMES, default=runner_default,
                   help="Beam runner: direct (local processes), prism, dataflow, flink, spark"
                   + ("" if runner_default else "; without it, one process and no Beam"))
    p.add_argument("--num-workers", type=positive_int, default=1,
                   help="worker processes (direct), Dataflow workers, Flink/Spark parallelism")
    p.add_argument("--format", choices=FORMAT_NAMES,
                   help="output shards OUTPUT-SSSSS-of-NNNNN.FORMAT (default jsonl)")
    p.add_argument("--num-shards", type=non_negative_int, default=0,
                   help="output shards (default 0: the runner decides)")
    p.add_argument("--text-column", help="TSV (header row) or JSONL inputs: the text's column")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def beam_options(args) -> dict:
    return dict(fmt=args.format or "jsonl", text_column=args.text_column,
                text_b_column=getattr(args, "text_b_column", None), runner=args.runner,
                num_workers=args.num_workers, num_shards=args.num_shards,
                beam_args=args.beam_args, overwrite=args.overwrite)


def print_result(result, output: str, what: str, max_seq_length: int | None = None) -> None:
    shards = f"{output}-*-of-{len(result.files):05d}" if result.files else output
    print(f"wrote {result.rows} {what} to {shards} ({len(result.files)} file(s))")
    print(f"{result.errors} bad record(s)" + (f" written to {output}.errors-*.jsonl"
                                              if result.errors else ""))
    if result.trimmed:
        print(f"note: {result.trimmed} texts were longer than --max-seq-length "
              f"{max_seq_length} tokens and were trimmed")


def _predict(args):
    from bert_tf.inference import beam
    result = beam.predict_files(args.export, args.inputs, args.output,
                                batch_size=args.batch_size, **beam_options(args))
    print_result(result, args.output, "predictions")


def embed_with_beam(args):
    from bert_tf.inference import beam
    result = beam.embed_files(args.model, args.input, args.output, pooling=args.pooling,
                              max_seq_length=args.max_seq_length, batch_size=args.batch_size,
                              normalize=args.normalize, **beam_options(args))
    print_result(result, args.output, "vectors", args.max_seq_length)


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="a classifier's serving export over text files, on "
                       "Apache Beam")
    p.add_argument("--export", required=True,
                   help="serving export: a version dir, or a base of numbered versions")
    p.add_argument("inputs", nargs="+", help="files or glob patterns (local, gs://, s3://, ...)")
    p.add_argument("--output", required=True, help="output prefix: writes "
                   "OUTPUT-SSSSS-of-NNNNN.FORMAT and OUTPUT.errors-*.jsonl")
    p.add_argument("--batch-size", type=positive_int, default=64, help="texts per batch")
    add_beam_arguments(p, "direct")
    p.add_argument("--text-b-column", help="pair models: the second text's column")
    p.set_defaults(func=_predict)
