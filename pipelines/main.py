"""`make run`, the main job: fine-tune the bundled all-MiniLM-L6-v2 on SST-2, print dev
accuracy, export to saved_models/sst2-minilm/{encoder,preprocessor,serving}/N, and
send example sentences through the exported serving SavedModel.

    python -m pipelines.main [--data-dir DIR] [--epochs 1] [--train-limit N]

A finished run in runs/sst2-minilm is reused (delete it, or pass --overwrite, to
train again); an interrupted one resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["a gripping, beautifully acted film that never lets up",
            "the plot is thin and the jokes fall flat",
            "an honest, quietly moving portrait of a family"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int)
    parser.add_argument("--run-dir", default=os.path.join(ROOT, "runs", "sst2-minilm"))
    parser.add_argument("--export-base", default=os.path.join(ROOT, "saved_models", "sst2-minilm"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    from bert_tf.cli import main as bert_tf
    from bert_tf.data.glue import glue_files
    from pipelines.minilm import ensure_minilm

    missing = [p for p in glue_files("sst2", args.data_dir).values() if not os.path.exists(p)]
    if missing:
        sys.exit(f"make run: SST-2 not found: looked for {' and '.join(missing)}. Download GLUE's "
                 "SST-2 (train.tsv, dev.tsv) into DIR/SST-2/ and run `make run DATA=DIR` "
                 "(or set BERT_TF_DATA=DIR).")
    model_dir = ensure_minilm()
    metrics_file = os.path.join(args.run_dir, "metrics.json")
    if args.overwrite or not os.path.exists(metrics_file):
        cmd = ["finetune", "--task", "sst2", "--model", model_dir, "--data-dir", args.data_dir,
               "--out", args.run_dir, "--epochs", str(args.epochs), "--no-export"]
        if args.train_limit:
            cmd += ["--train-limit", str(args.train_limit)]
        if args.overwrite:
            cmd.append("--overwrite")
        if bert_tf(cmd) != 0:
            sys.exit(2)
    else:
        print(f"reusing the finished run in {args.run_dir} (pass --overwrite to train again)")
    with open(metrics_file) as f:
        metrics = json.load(f)
    print(f"\nSST-2 dev accuracy: {metrics['dev_accuracy']:.4f} "
          f"({metrics['train_examples']} training examples, "
          f"{metrics['train_examples_per_second']} examples/s, "
          f"{metrics['train_wall_seconds']} s)")

    if bert_tf(["export", "--model", os.path.join(args.run_dir, "model"),
                "--out", args.export_base]) != 0:
        sys.exit(2)
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the ops the serving export uses)
    versions = sorted(int(v) for v in os.listdir(os.path.join(args.export_base, "serving"))
                      if v.isdigit())
    path = os.path.join(args.export_base, "serving", str(versions[-1]))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    out = serve(text=tf.constant(EXAMPLES))
    print(f"\nthrough the exported serving SavedModel {path}:")
    for i, text in enumerate(EXAMPLES):
        label = out["label"][i].numpy().decode()
        print(f"  label {label} (p={float(tf.reduce_max(out['probabilities'][i])):.3f})  {text}")
    print(f"  pooled_output shape: {tuple(out['pooled_output'].shape)}")


if __name__ == "__main__":
    main()
