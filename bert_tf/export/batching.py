"""TF Serving's server-side batching for a serving export, from a measurement.

`tensorflow_model_server --enable_batching --batching_parameters_file=F` merges
concurrent requests into one batch. Its parameters (`max_batch_size`,
`batch_timeout_micros`, `num_batch_threads`, `max_enqueued_batches`,
`allowed_batch_sizes`, `pad_variable_length_inputs`: BatchingParameters in
tensorflow_serving/servables/tensorflow/session_bundle_config.proto) depend on the
model and the CPU. `measure_batches` times the export's `serving_default` in process at
each batch size; `recommend` turns the times into parameters; `write_batching_parameters`
does both and writes `assets.extra/batching_parameters.txt` in the export, with the
measurements as comments.

The rule, after TF Serving's batching guide ("Batch Scheduling Parameters and Tuning",
CPU-only; tensorflow/serving, tensorflow_serving/batching/README.md):
- `num_batch_threads`: the CPU cores; `max_enqueued_batches` the same (online serving
  with bounded latency);
- `max_batch_size`: the smallest measured batch within 10 % of the best throughput
  (larger batches only add latency); `allowed_batch_sizes`: the measured sizes up to it;
- `batch_timeout_micros`: 0 when batching gains under 10 % throughput on this CPU
  (TF Serving: "0 may be the optimal value"), else one batch-of-one run's median time,
  kept within the guide's 1-10 ms: a lone request waits at most about its own cost;
- `pad_variable_length_inputs: false`: the inputs are strings `[batch]` with no other
  dimension to pad (the in-graph tokenizer pads each merged batch to its longest text).

Example:
    >>> from bert_tf.export.batching import recommend
    >>> times = {1: [0.010] * 5, 2: [0.012] * 5, 4: [0.016] * 5, 8: [0.030] * 5}
    >>> params = recommend(times, cpus=2)
    >>> params["max_batch_size"], params["allowed_batch_sizes"], params["batch_timeout_micros"]
    (4, [1, 2, 4], 10000)
"""
from __future__ import annotations

import os
import time

import numpy as np

from bert_tf.io.atomic import atomic_file

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
FILE = os.path.join("assets.extra", "batching_parameters.txt")
# Sentences of SST-2's typical length (about 20 tokens), cycled to fill each batch.
TEXTS = ["the film is a charming, funny and often moving portrait of a family in crisis",
         "a dull, overlong script that wastes a talented cast on jokes that fall flat",
         "it never quite decides what it wants to be, but the performances keep it afloat",
         "one of the year's most beautifully shot films, and one of its most forgettable"]


def measure_batches(serve, texts=None, batch_sizes=BATCH_SIZES, seconds_per_size=2.0,
                    min_runs=5) -> dict[int, list[float]]:
    """Seconds per call of `serve` (a signature taking `text`) at each batch size:
    one untimed call, then calls until `seconds_per_size` have passed (at least
    `min_runs`)."""
    import tensorflow as tf
    texts = list(texts or TEXTS)
    times = {}
    for size in batch_sizes:
        batch = tf.constant([texts[i % len(texts)] for i in range(size)])
        serve(text=batch)
        runs, start = [], time.perf_counter()
        while len(runs) < min_runs or time.perf_counter() - start < seconds_per_size:
            t = time.perf_counter()
            {k: v.numpy() for k, v in serve(text=batch).items()}
            runs.append(time.perf_counter() - t)
        times[size] = runs
    return times


def recommend(times: dict[int, list[float]], cpus: int | None = None) -> dict:
    """BatchingParameters (as a dict) from seconds per call by batch size (see the
    module docstring for the rule)."""
    cpus = cpus or os.cpu_count() or 1
    sizes = sorted(times)
    median = {b: float(np.median(times[b])) for b in sizes}
    throughput = {b: b / median[b] for b in sizes}
    best = max(throughput.values())
    max_batch = next(b for b in sizes if throughput[b] >= 0.9 * best)
    gain = best / throughput[sizes[0]]
    timeout = 0 if gain < 1.1 else int(min(max(median[sizes[0]] * 1e6, 1000), 10000))
    return {"max_batch_size": max_batch, "batch_timeout_micros": timeout,
            "max_enqueued_batches": cpus, "num_batch_threads": cpus,
            "allowed_batch_sizes": [b for b in sizes if b <= max_batch],
            "pad_variable_length_inputs": False}


def as_text_proto(params: dict, times: dict[int, list[float]] | None = None,
                  header: str = "") -> str:
    """`params` as TF Serving's text-format BatchingParameters (Int64Value fields as
    `name { value: N }`), `times` as comments."""
    lines = [f"# {line}" for line in header.splitlines()]
    for size, runs in sorted((times or {}).items()):
        ms = np.array(runs) * 1e3
        lines.append(f"# batch {size:>3}: p50 {np.percentile(ms, 50):8.2f} ms, p99 "
                     f"{np.percentile(ms, 99):8.2f} ms, {size / np.median(runs):8.1f}"
                     f" texts/s ({len(runs)} runs)")
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                 "num_batch_threads"):
        lines.append(f"{name} {{ value: {params[name]} }}")
    lines += [f"allowed_batch_sizes: {b}" for b in params["allowed_batch_sizes"]]
    lines.append(f"pad_variable_length_inputs: {str(params['pad_variable_length_inputs']).lower()}")
    return "\n".join(lines) + "\n"


def write_batching_parameters(serving_dir: str, texts=None, seconds_per_size=2.0,
                              batch_sizes=BATCH_SIZES) -> tuple[str, dict]:
    """Measures the export `serving_dir`'s `serving_default` and writes
    `assets.extra/batching_parameters.txt` there (atomically). Returns the path and
    the parameters."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the export's tokenizer ops)
    from bert_tf.hardware import cpu_flags, cpu_name
    serve = tf.saved_model.load(serving_dir).signatures["serving_default"]
    times = measure_batches(serve, texts, batch_sizes, seconds_per_size)
    params = recommend(times)
    path = os.path.join(serving_dir, FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    header = (f"TF Serving batching parameters for {os.path.abspath(serving_dir)}, from its "
              f"serving_default timed in process\n(bert_tf.export.batching; "
              f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} cores,\n"
              f"flags {' '.join(cpu_flags())}):")
    with atomic_file(path) as f:
        f.write(as_text_proto(params, times, header))
    return path, params
