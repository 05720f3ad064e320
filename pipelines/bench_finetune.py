"""Fine-tuning throughput, bert-tf vs HF transformers, side by side in one run.

    .venv/bin/python -m pipelines.bench_finetune --hf-python /tmp/refenv/bin/python

bert-tf: the same classifier, optimizer and bucketed tf.data pipeline as `bert-tf
finetune`, timed over the first `--examples` SST-2 training examples after a warm-up
pass. The HF loop (benchmarks/hf_finetune.py) runs right after, in its own environment.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bert_tf_throughput(data_dir: str, examples: int, batch_size: int, max_length: int) -> float:
    import keras
    from bert_tf.models.classifier import build_classifier
    from bert_tf.data.glue import Examples, encode, make_dataset, read_task
    from bert_tf.models.loading import load_encoder, load_tokenizer
    from bert_tf.training.common import bert_optimizer
    from pipelines.minilm import ensure_minilm

    model_dir = ensure_minilm()
    train = read_task("sst2", data_dir, "train")
    train = Examples(train.texts_a[:examples], None, train.labels[:examples], train.source)
    x, y, _ = encode(load_tokenizer(model_dir), train, max_length, ["0", "1"])
    ds = make_dataset(x, y, batch_size, training=True)
    model, _ = build_classifier(load_encoder(model_dir), 2)
    model.compile(bert_optimizer(5e-5, 10_000, 100),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    model.fit(ds, verbose=0)  # warm-up: traces every batch shape once
    start = time.time()
    model.fit(ds, verbose=0)
    return len(train) / (time.time() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    p.add_argument("--examples", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=66)
    p.add_argument("--hf-python", help="python of an environment with torch + transformers")
    args = p.parse_args(argv)
    ours = bert_tf_throughput(args.data_dir, args.examples, args.batch_size, args.max_length)
    rows = [("bert-tf (Keras fit, bucketed batches)", round(ours, 1))]
    if args.hf_python:
        out = subprocess.run([args.hf_python, os.path.join(ROOT, "benchmarks", "hf_finetune.py"),
                              "--data-dir", args.data_dir, "--examples", str(args.examples),
                              "--batch-size", str(args.batch_size), "--max-length",
                              str(args.max_length)], capture_output=True, text=True, check=True)
        hf = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((hf["peer"], hf["examples_per_second"]))
    print(f"SST-2 fine-tuning throughput, first {args.examples} training examples, batch "
          f"{args.batch_size}, max length {args.max_length}; {platform.processor() or 'CPU'}, "
          f"{os.cpu_count()} cores")
    print("| trainer | examples/s | bert-tf ÷ it |\n|---|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} | {ours / value:.2f} |")


if __name__ == "__main__":
    main()
