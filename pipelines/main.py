"""`make run`, the main job: fine-tune the bundled all-MiniLM-L6-v2 on SST-2, print dev
accuracy, export to saved_models/sst2-minilm/{encoder,preprocessor,serving}/N,
send example sentences through the exported serving SavedModel, and print how to serve it
with TF Serving (as `bert-tf export` does).

    python -m pipelines.main [--data-dir DIR] [--epochs 1] [--train-limit N]

A finished run in runs/sst2-minilm is reused (delete it, or pass --overwrite, to
train again); an interrupted one resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow start-up lines

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

    import tensorflow as tf

    import bert_tf
    from bert_tf import export
    from bert_tf.data.glue import DataError, glue_files, read_task
    from bert_tf.export.batching import write_batching_parameters
    from bert_tf.training.finetune import FinetuneConfig, finetune
    from pipelines.minilm import ensure_minilm

    missing = [p for p in glue_files("sst2", args.data_dir).values() if not os.path.exists(p)]
    if missing:
        sys.exit(f"make run: SST-2 not found: looked for {' and '.join(missing)}. Download GLUE's "
                 "SST-2 (train.tsv, dev.tsv) into DIR/SST-2/ and run `make run DATA=DIR` "
                 "(or set BERT_TF_DATA=DIR).")
    model_dir = ensure_minilm()
    metrics_file = os.path.join(args.run_dir, "metrics.json")
    try:
        if args.overwrite or not os.path.exists(metrics_file):
            finetune(FinetuneConfig(task="sst2", model=model_dir, data_dir=args.data_dir,
                                    out=args.run_dir, epochs=args.epochs,
                                    train_limit=args.train_limit, no_export=True,
                                    overwrite=args.overwrite))
        else:
            print(f"reusing the finished run in {args.run_dir} (pass --overwrite to train again)")
        with open(metrics_file) as f:
            metrics = json.load(f)
        print(f"\nSST-2 dev accuracy: {metrics['dev_accuracy']:.4f} "
              f"({metrics['train_examples']} training examples, "
              f"{metrics['train_examples_per_second']} examples/s, "
              f"{metrics['train_wall_seconds']} s)")
        targets = bert_tf.export_model(bert_tf.load_model(os.path.join(args.run_dir, "model")),
                                       args.export_base)
    except (DataError, ValueError, OSError) as e:
        sys.exit(f"make run: error: {e}")
    for name, path in targets.items():
        print(f"{name:<13} {path}")
    path = targets["serving"]
    signatures = tf.saved_model.load(path).signatures
    texts = tf.constant(EXAMPLES)
    out = signatures["serving_default"](text=texts)
    print(f"\nthrough the exported serving SavedModel {path}:")
    for i, text in enumerate(EXAMPLES):
        label = out["label"][i].numpy().decode()
        print(f"  label {label} (p={float(tf.reduce_max(out['probabilities'][i])):.3f})  {text}")
    print(f"  its embed signature: pooled_output "
          f"{tuple(signatures['embed'](text=texts)['pooled_output'].shape)}")
    # TF Serving's batching parameters from timings on this CPU, on SST-2 dev sentences.
    dev = read_task("sst2", args.data_dir, "dev").texts_a[:64]
    batching, params = write_batching_parameters(path, texts=dev)
    print(f"\nbatching parameters for this CPU: {batching}\n  max_batch_size "
          f"{params['max_batch_size']}, batch_timeout_micros {params['batch_timeout_micros']}, "
          f"num_batch_threads {params['num_batch_threads']}\n")
    print(export.serving_instructions(args.export_base, "sst2", path))


if __name__ == "__main__":
    main()
