"""Peer worker of `bert-tf bench`: Hugging Face transformers (PyTorch) and tokenizers.

    /tmp/refenv/bin/python benchmarks/hf_bert.py BENCH_DIR/work/<job>.json

Runs in its own environment, never bert-tf's (benchmarks/requirements-hf.txt). The
job's model is the HF copy of the bert-tf model dir that the bench writes
(`config.json`, `model.safetensors`, `vocab.txt`), so the weights are the same.

- encoder: `BertModel` (SDPA attention) on the fixed batch, in `torch.inference_mode`.
- e2e: `BertTokenizerFast` + `BertModel`, each batch padded to its longest text.
- train: `BertForSequenceClassification`, AdamW (weight decay 0.01, eps 1e-6), gradient
  clipping at 1.0, an optimizer step per batch; the examples in file order, each batch
  padded to its longest (as `DataCollatorWithPadding` does).
- latency: `BertTokenizerFast` + `BertModel` per request (padded to its longest).
- tokenize: `tokenizers.BertWordPieceTokenizer` on the same vocab.txt, `encode_batch`
  without special tokens, in chunks of the job's `chunk`.
Job `precision` `bfloat16` (the `hf-bf16` peer): forward passes under
`torch.autocast(device, torch.bfloat16)`, outputs returned as float32.
Uses a CUDA GPU when PyTorch sees one. Prints one JSON line (benchmarks/common.py).
"""
import contextlib
import json

import numpy as np

from common import emit, latency, load_job, timed


def torch_setup():
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    detail = (f"PyTorch {torch.__version__}, {device}"
              + (f", {torch.get_num_threads()} threads" if device == "cpu" else ""))
    return torch, device, sync, detail


def inference(job, torch, device):
    """`torch.inference_mode`, under bfloat16 autocast for job precision bfloat16."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if job.get("precision") == "bfloat16":
        stack.enter_context(torch.autocast(device, dtype=torch.bfloat16))
    return stack


def numpy32(t):
    return t.float().cpu().numpy()


def autocast_detail(job) -> str:
    return ", bfloat16 autocast" if job.get("precision") == "bfloat16" else ""


def encoder_case(job):
    import transformers
    torch, device, sync, detail = torch_setup()
    model = transformers.BertModel.from_pretrained(job["model"], attn_implementation="sdpa")
    model.to(device).eval()
    inputs = {k: torch.from_numpy(v).long().to(device) for k, v in np.load(job["data"]).items()}
    inputs = {"input_ids": inputs["input_word_ids"], "attention_mask": inputs["input_mask"],
              "token_type_ids": inputs["input_type_ids"]}

    def run():
        with inference(job, torch, device):
            out = model(**inputs)
            return {"sequence_output": numpy32(out.last_hidden_state),
                    "pooled_output": numpy32(out.pooler_output)}
    times, outputs = timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    emit(f"transformers {transformers.__version__} BertModel, SDPA{autocast_detail(job)} "
         f"({detail})", times)


def e2e_case(job):
    import transformers
    torch, device, sync, detail = torch_setup()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(job["model"])
    model = transformers.BertModel.from_pretrained(job["model"], attn_implementation="sdpa")
    model.to(device).eval()
    with open(job["data"]) as f:
        texts = json.load(f)
    batches = [texts[i:i + job["batch_size"]] for i in range(0, len(texts), job["batch_size"])]

    def run():
        pooled, tokens = [], 0
        with inference(job, torch, device):
            for batch in batches:
                enc = tokenizer(batch, padding="longest", truncation=True,
                                max_length=job["seq_length"], return_tensors="pt").to(device)
                pooled.append(numpy32(model(**enc).pooler_output))
                tokens += enc["input_ids"].numel()
        return np.concatenate(pooled), tokens
    times, (pooled, tokens) = timed(run, job["repeats"])
    np.savez(job["outputs"], pooled_output=pooled)
    emit(f"transformers {transformers.__version__} BertTokenizerFast + BertModel, SDPA"
         f"{autocast_detail(job)}, padded to each batch's longest ({detail})", times,
         tokens_per_run=tokens)


def latency_case(job):
    import transformers
    torch, device, sync, detail = torch_setup()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(job["model"])
    model = transformers.BertModel.from_pretrained(job["model"], attn_implementation="sdpa")
    model.to(device).eval()

    def request(texts):
        with inference(job, torch, device):
            enc = tokenizer(texts, padding="longest", truncation=True,
                            max_length=job["seq_length"], return_tensors="pt").to(device)
            return numpy32(model(**enc).pooler_output)
    emit(f"transformers {transformers.__version__} BertTokenizerFast + BertModel, SDPA"
         f"{autocast_detail(job)}, a call per request ({detail})", [],
         latency_s=latency(job, request))


def train_case(job):
    import transformers
    torch, device, sync, detail = torch_setup()
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification.from_pretrained(
        job["model"], num_labels=2, attn_implementation="sdpa")
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=job["learning_rate"],
                                  weight_decay=0.01, eps=1e-6)
    data = dict(np.load(job["data"]))
    batches = []
    for i in range(0, len(data["labels"]), job["batch_size"]):
        rows = slice(i, i + job["batch_size"])
        width = int(data["input_mask"][rows].sum(axis=1).max())
        batches.append({name: torch.from_numpy(data[key][rows, :width]).long().to(device)
                        for name, key in (("input_ids", "input_word_ids"),
                                          ("attention_mask", "input_mask"),
                                          ("token_type_ids", "input_type_ids"))})
        batches[-1]["labels"] = torch.from_numpy(data["labels"][rows]).long().to(device)

    def run():
        for batch in batches:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        sync()
    times, _ = timed(run, job["repeats"])
    emit(f"transformers {transformers.__version__} BertForSequenceClassification, PyTorch "
         f"training loop, padded to each batch's longest ({detail})", times,
         tokens_per_run=sum(b["input_ids"].numel() for b in batches))


def tokenize_case(job):
    import tokenizers
    with open(f"{job['model']}/tokenizer_config.json") as f:
        lower_case = json.load(f)["do_lower_case"]
    tokenizer = tokenizers.BertWordPieceTokenizer(f"{job['model']}/vocab.txt",
                                                  lowercase=lower_case)
    with open(job["data"]) as f:
        texts = json.load(f)
    chunks = [texts[i:i + job["chunk"]] for i in range(0, len(texts), job["chunk"])]

    def run():
        return [e.ids for chunk in chunks
                for e in tokenizer.encode_batch(chunk, add_special_tokens=False)]
    times, ids = timed(run, job["repeats"])
    np.savez(job["outputs"], ids=np.array([i for row in ids for i in row], np.int32),
             lengths=np.array([len(row) for row in ids], np.int32))
    emit(f"tokenizers {tokenizers.__version__} BertWordPieceTokenizer.encode_batch", times)


if __name__ == "__main__":
    job = load_job()
    {"encoder": encoder_case, "e2e": e2e_case, "latency": latency_case, "train": train_case,
     "tokenize": tokenize_case}[job["case"]](job)
