"""Side-by-side latency and throughput of two or more serving exports, interleaved in one
process: request i goes to every export in turn, so that the machine's drift (which moves
one process's p50 by 10-15 % against the next on these 2-CPU machines) falls on all alike.
For A/B checks of a kernel change; `bert-tf bench` makes the recorded tables.

    .venv/bin/python benchmarks/serving_ab.py /tmp/before/serving/1 /tmp/after/serving/1

Prints, per export: max |diff| and min cosine of `pooled_output` against the first
export's on 8 texts; p50/p90/p99 ms for one and eight short SST-2 dev texts (15-19 words,
about 20 tokens) a request; and end-to-end sentences/s over SST-2 dev in batches of 32.
"""
import argparse
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the serving export's tokeniser ops)

from bert_tf.data.glue import read_task
from bert_tf.errors import BertTfError


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exports", nargs="+", help="serving SavedModels (bert-tf export's serving/N)")
    parser.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--e2e-repeats", type=int, default=3)
    args = parser.parse_args()
    for d in args.exports:
        if not os.path.isfile(os.path.join(d, "saved_model.pb")):
            parser.error(f"{d}: not a SavedModel (no saved_model.pb)")
    try:
        texts = read_task("sst2", args.data_dir, "dev").texts_a
    except BertTfError as e:
        parser.error(str(e))
    serve = {d: tf.saved_model.load(d).signatures["serving_default"] for d in args.exports}
    short = [t for t in texts if 15 <= len(t.split()) <= 19]

    def pooled(d, batch):
        return serve[d](text=batch)["pooled_output"].numpy()

    ref = pooled(args.exports[0], tf.constant(short[:8]))
    for d in args.exports:
        out = pooled(d, tf.constant(short[:8]))
        cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
        print(f"{d}: max |diff| {np.abs(out - ref).max():.1e}, min cosine {cos.min():.6f}")

    for size in (1, 8):
        times = {d: [] for d in serve}
        for i in range(args.requests + 20):  # the first 20: warm-up
            batch = tf.constant([short[(i * size + j) % len(short)] for j in range(size)])
            for d in serve:
                start = time.perf_counter()
                pooled(d, batch)
                if i >= 20:
                    times[d].append(1e3 * (time.perf_counter() - start))
        for d, t in times.items():
            p50, p90, p99 = np.percentile(t, [50, 90, 99])
            print(f"short x {size}: p50 {p50:6.2f}  p90 {p90:6.2f}  p99 {p99:6.2f} ms  {d}")

    batches = [tf.constant(texts[i:i + 32]) for i in range(0, len(texts), 32)]
    rates = {d: [] for d in serve}
    for repeat in range(args.e2e_repeats + 1):  # the first: warm-up
        spent = dict.fromkeys(serve, 0.0)
        for batch in batches:
            for d in serve:
                start = time.perf_counter()
                pooled(d, batch)
                spent[d] += time.perf_counter() - start
        if repeat:
            for d in serve:
                rates[d].append(len(texts) / spent[d])
    for d, r in rates.items():
        print(f"e2e SST-2 dev, batch 32: {np.median(r):6.1f} sentences/s "
              f"({min(r):.1f}-{max(r):.1f})  {d}")


if __name__ == "__main__":
    main()
