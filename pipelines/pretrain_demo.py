"""Pre-train a BERT-tiny from scratch on real text, then ask whether its NSP-trained
pooler helps SST-2.

    .venv/bin/python -m pipelines.pretrain_demo [--steps 2000] [--data-dir ../shared/data]

1. `bert-tf prepare-text`: WikiText-2 valid + test and Tiny Shakespeare -> BERT's
   input format; every 20th document is held out for evaluation.
2. `bert-tf create-pretraining-data`: training instances (dupe factor 5) and
   held-out instances (dupe factor 1), max length 128.
3. `bert-tf pretrain --config tiny`: masked-LM + NSP, from random weights.
4. `bert-tf finetune --task sst2` twice on the result: with its NSP-trained pooler,
   and with the pooler re-initialised (`--reinit-pooler`).

Every step is skipped when its output is already complete, so the command resumes.
Results go to runs/pretrain-demo/summary.json and are printed as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bert_tf(*args) -> None:
    cmd = [sys.executable, "-m", "bert_tf", *map(str, args)]
    print("$ bert-tf " + " ".join(map(str, args)), flush=True)
    if subprocess.call(cmd, cwd=ROOT) != 0:
        sys.exit(2)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"))
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "pretrain-demo"))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--dupe-factor", type=int, default=5)
    p.add_argument("--finetune-epochs", type=int, default=1)
    args = p.parse_args(argv)
    d = args.data_dir
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    vocab = os.path.join(d, "bert_vocab", "uncased", "vocab.txt")
    inputs = [os.path.join(d, "wikitext-2", "valid.txt"), os.path.join(d, "wikitext-2", "test.txt"),
              os.path.join(d, "tinyshakespeare", "input.txt")]
    missing = [x for x in inputs + [vocab] if not os.path.exists(x)]
    if missing:
        sys.exit(f"pretrain_demo: missing {', '.join(missing)}; pass --data-dir")
    timings = {}

    train_txt, eval_txt = os.path.join(out, "train.txt"), os.path.join(out, "eval.txt")
    if not os.path.exists(eval_txt):
        bert_tf("prepare-text", *inputs, "--out", train_txt, "--eval-out", eval_txt)
    for name, text, dupe, seed in (("train", train_txt, args.dupe_factor, 1),
                                   ("eval", eval_txt, 1, 2)):
        record = os.path.join(out, "data", f"{name}.tfrecord")
        if not os.path.exists(record):
            start = time.time()
            bert_tf("create-pretraining-data", "--input", text, "--vocab", vocab, "--out", record,
                    "--max-seq-length", 128, "--dupe-factor", dupe, "--seed", seed)
            timings[f"create_{name}_seconds"] = round(time.time() - start, 1)

    model = os.path.join(out, "bert-tiny")
    if not os.path.exists(os.path.join(model, "metrics.json")):
        bert_tf("pretrain", "--config", "tiny", "--vocab", vocab,
                "--train", os.path.join(out, "data", "train.tfrecord"),
                "--eval", os.path.join(out, "data", "eval.tfrecord"), "--out", model,
                "--steps", args.steps, "--steps-per-epoch", max(args.steps // 10, 1),
                "--batch-size", args.batch_size, "--learning-rate", args.learning_rate,
                "--warmup-steps", args.steps // 10, "--quiet")
    with open(os.path.join(model, "metrics.json")) as f:
        pre = json.load(f)

    results = {}
    for name, extra in (("nsp_pooler", []), ("reinit_pooler", ["--reinit-pooler"])):
        run = os.path.join(out, f"sst2-{name.replace('_', '-')}")
        if not os.path.exists(os.path.join(run, "metrics.json")):
            bert_tf("finetune", "--task", "sst2", "--model", model, "--data-dir", d, "--out", run,
                    "--epochs", args.finetune_epochs, "--learning-rate", "1e-4",
                    "--max-seq-length", 66, "--no-export", "--quiet", *extra)
        with open(os.path.join(run, "metrics.json")) as f:
            results[name] = json.load(f)

    summary = {
        "pretrain": {k: v for k, v in pre.items() if k != "history"},
        "sst2_dev_accuracy": {k: m["dev_accuracy"] for k, m in results.items()},
        "sst2_train_seconds": {k: m["train_wall_seconds"] for k, m in results.items()},
        **timings,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    s = summary["pretrain"]
    print(f"\nBERT-tiny pre-trained {s['steps']} steps × {s['batch_size']} in "
          f"{s['train_wall_seconds'] / 60:.1f} min")
    print("| metric | value |\n|---|---|")
    for key in ("eval_mlm_accuracy", "eval_most_frequent_token_accuracy", "eval_nsp_accuracy",
                "train_mlm_accuracy", "train_nsp_accuracy"):
        print(f"| held-out {key[5:]} |" if key.startswith("eval") else f"| {key} |",
              f"{s.get(key, float('nan')):.4f} |")
    for k, v in summary["sst2_dev_accuracy"].items():
        print(f"| SST-2 dev accuracy, {k.replace('_', ' ')} | {v:.4f} |")


if __name__ == "__main__":
    main()
