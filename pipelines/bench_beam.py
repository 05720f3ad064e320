"""Beam's cost: `bert-tf embed` in one process against `bert-tf embed --runner direct`
with 1 and 2 workers, over the same texts, side by side in one run.

Each row is the whole command in a fresh process (TensorFlow import, model load,
reading, inference, writing JSONL), timed from start to exit, so that the ratio is
what a user sees. The texts are SST-2's training sentences (67,349), one a line.

    python -m pipelines.bench_beam --model saved_models/minilm --out runs/bench-beam
    python -m pipelines.bench_beam --model M --out O --limit 2000 --workers 1   # a quick look

Writes OUT/bench_beam.json and OUT/bench_beam.md (the table, the machine, the command).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

from bert_tf.data.glue import read_task
from bert_tf.experiments.bench import machine


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bert_tf", *argv], capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bert-tf {' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
    return seconds


def read_vectors(path_or_prefix: str) -> np.ndarray:
    """Vectors in input line order, from embed's JSONL or Beam's JSONL shards."""
    if os.path.exists(path_or_prefix):
        with open(path_or_prefix) as f:
            return np.array([json.loads(line)["vector"] for line in f], np.float32)
    from bert_tf.inference.beam import numpy_vectors
    rows = []
    for path in glob.glob(path_or_prefix + "-*-of-*.jsonl"):
        with open(path) as f:
            rows += [json.loads(line) for line in f]
    return numpy_vectors(rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model dir")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    p.add_argument("--pooling", default="mean")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, help="the first N sentences only")
    p.add_argument("--workers", default="1,2", help="Beam worker counts to run")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    texts = read_task("sst2", args.data_dir, "train").texts_a[:args.limit]
    text_file = os.path.join(args.out, "texts.txt")
    with open(text_file, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    common = ["--model", args.model, "--pooling", args.pooling, "--batch-size",
              str(args.batch_size), text_file, "--overwrite"]
    rows = []
    single = os.path.join(args.out, "single.jsonl")
    seconds = run(["embed", *common, "--output", single])
    rows.append({"system": "bert-tf embed, one process", "seconds": seconds})
    reference = read_vectors(single)
    for workers in [int(w) for w in args.workers.split(",")]:
        prefix = os.path.join(args.out, f"beam{workers}")
        seconds = run(["embed", *common, "--output", prefix, "--runner", "direct",
                       "--num-workers", str(workers)])
        vectors = read_vectors(prefix)
        rows.append({"system": f"bert-tf embed --runner direct --num-workers {workers}",
                     "seconds": seconds, "max_abs_diff": float(np.abs(vectors - reference).max())})
    for row in rows:
        row["sentences_per_s"] = len(texts) / row["seconds"]
        row["vs_one_process"] = rows[0]["seconds"] / row["seconds"]
    report = {"texts": len(texts), "model": args.model, "pooling": args.pooling,
              "batch_size": args.batch_size, "machine": machine(), "rows": rows,
              "command": "python -m pipelines.bench_beam " + " ".join(argv or sys.argv[1:])}
    with open(os.path.join(args.out, "bench_beam.json"), "w") as f:
        json.dump(report, f, indent=1)
    m = report["machine"]
    lines = [f"`{report['command']}`", "",
             f"{len(texts)} SST-2 training sentences, {args.model}, pooling {args.pooling}, "
             f"batch {args.batch_size}. Machine: {m['cpu']} (flags: {m['cpu_flags']}), "
             f"{m['cpu_count']} CPUs; TensorFlow {m['tensorflow']}.", "",
             "| system | wall s | sentences/s | vs one process | max abs diff |",
             "|---|---|---|---|---|"]
    for row in rows:
        diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else ""
        lines.append(f"| {row['system']} | {row['seconds']:.1f} | {row['sentences_per_s']:.1f} "
                     f"| {row['vs_one_process']:.2f} | {diff} |")
    with open(os.path.join(args.out, "bench_beam.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
