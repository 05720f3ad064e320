"""Where one small request's time goes: TensorFlow's profiler over an encoder export,
summed per op type (thread time per request, calls per request).

    .venv/bin/python benchmarks/profile_ops.py saved_models/sst2-minilm/encoder/1 --tokens 20
    .venv/bin/python benchmarks/profile_ops.py saved_models/sst2-minilm/serving/1 --tokens 20

A serving export (its signature takes `text`) is fed texts of `--tokens` tokens, so the
profile includes tokenising and the signature's other outputs.

The latency figures in BENCHMARKS.md ("Performance II") quote its output: at batch 1 and
20 tokens most of the time is many small matmuls and transposes, not arithmetic.
"""
import argparse
import collections
import glob
import os
import tempfile
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the serving export's tokeniser ops)
from tensorflow.tsl.profiler.protobuf import xplane_pb2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="an encoder or serving SavedModel (bert-tf export's "
                        "encoder/N or serving/N)")
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.export, "saved_model.pb")):
        parser.error(f"{args.export}: not a SavedModel (no saved_model.pb)")
    loaded = tf.saved_model.load(args.export)
    serving = loaded.signatures.get("serving_default")
    if serving is not None and "text" in serving.structured_input_signature[1]:
        # "the" is one token: [CLS] + (tokens - 2) x "the" + [SEP]
        texts = tf.constant([" ".join(["the"] * (args.tokens - 2))] * args.batch)

        def request():
            return serving(text=texts)
    else:
        shape = (args.batch, args.tokens)
        inputs = {"input_word_ids": tf.fill(shape, 2000), "input_mask": tf.ones(shape, tf.int32),
                  "input_type_ids": tf.zeros(shape, tf.int32)}

        def request():
            return loaded(inputs)
    for _ in range(30):  # warm-up: tracing, oneDNN primitive caches
        request()
    times = []
    for _ in range(args.requests):
        start = time.perf_counter()
        request()
        times.append(time.perf_counter() - start)
    print(f"wall per request: p50 {1e3 * np.median(times):.2f} ms "
          f"(batch {args.batch}, {args.tokens} tokens)")
    logdir = tempfile.mkdtemp(prefix="profile-ops-")
    tf.profiler.experimental.start(logdir)
    for _ in range(args.requests):
        request()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    total, calls = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads: the ops
                continue
            for event in line.events:
                op = plane.event_metadata[event.metadata_id].name.split(":")[-1]
                if op in ("Process", "ExecutorDoneCallback"):
                    continue
                total[op] += event.duration_ps / 1e6 / args.requests
                calls[op] += 1 / args.requests
    print(f"ops' thread time per request: {sum(total.values()) / 1e3:.2f} ms")
    for op, us in total.most_common(args.top):
        print(f"{us:9.1f} us  {calls[op]:6.1f} calls  {op}")


if __name__ == "__main__":
    main()
