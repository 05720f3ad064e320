"""Peer worker of `bert-tf bench`: sentence-transformers on its fast CPU backends.

    /tmp/stenv/bin/python benchmarks/st_backends.py BENCH_DIR/work/<job>.json

Runs in its own environment, never bert-tf's (benchmarks/requirements-st.txt). The job's
model is the HF copy of the bert-tf model dir that the bench writes; the worker copies it
into its own folder, where sentence-transformers exports it on loading (optimum):

- `st-onnx`: `models.Transformer(backend="onnx")`, ONNX Runtime on the CPU, fp32.
- `st-onnx-int8`: that ONNX model quantised by sentence-transformers'
  `export_dynamic_quantized_onnx_model` (int8 weights, dynamic int8 activations) with the
  configuration for this CPU (avx512_vnni, avx512, avx2 or arm64), then loaded as above.
- `st-openvino`: `models.Transformer(backend="openvino")`, OpenVINO on the CPU (its
  inference precision, which OpenVINO picks by CPU, is named in the row's detail).

Each is a `SentenceTransformer` of that module and `Pooling("cls")`: `encode` gives the
[CLS] token's final hidden state, and BertModel's pooler (dense + tanh, the same weights)
turns it into pooled_output in numpy, as bert-tf's and HF's rows output. Cases:

- encoder: the backend's model (`auto_model`) on the fixed batch of ids.
- e2e: `encode` of each batch of texts (as bert-tf's rows: the same batches, in order).
- latency: `encode` per request.
Prints one JSON line (benchmarks/common.py).
"""
import json
import os
import shutil

import numpy as np

from common import emit, latency, load_job, pooler, timed


def quantization_config() -> str:
    """sentence-transformers' dynamic-quantisation config for this CPU."""
    if os.uname().machine in ("aarch64", "arm64"):
        return "arm64"
    flags = set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f
                          if line.startswith("flags")), set())
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    return "avx512" if "avx512f" in flags else "avx2"


def load(job):
    """(SentenceTransformer, its Transformer module, a description)."""
    import sentence_transformers as st
    from sentence_transformers import models
    folder = os.path.splitext(job["outputs"])[0] + "-model"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(job["model"], folder)
    backend = "openvino" if job["backend"] == "st-openvino" else "onnx"

    def transformer(**model_args):
        return models.Transformer(folder, max_seq_length=job["seq_length"], backend=backend,
                                  model_args=model_args)

    def build(module):
        hidden = module.get_word_embedding_dimension()
        return st.SentenceTransformer(modules=[module, models.Pooling(hidden, "cls")],
                                      device="cpu")
    module = transformer()
    detail = f"sentence-transformers {st.__version__}, "
    if job["backend"] == "st-onnx-int8":
        import onnxruntime
        config = quantization_config()
        st.export_dynamic_quantized_onnx_model(build(module), config, folder)
        # model_qint8_<config>.onnx, or model_quint8_avx2.onnx (unsigned on AVX2)
        found = os.listdir(os.path.join(folder, "onnx"))
        name = next((n for n in found if n.endswith(f"int8_{config}.onnx")), None)
        if name is None:
            raise SystemExit(f"no *int8_{config}.onnx in {folder}/onnx after "
                             f"export_dynamic_quantized_onnx_model; it holds {sorted(found)}")
        module = transformer(file_name=f"onnx/{name}")
        detail += f"ONNX Runtime {onnxruntime.__version__}, int8 dynamic quantisation ({config})"
    elif backend == "onnx":
        import onnxruntime
        detail += f"ONNX Runtime {onnxruntime.__version__}, fp32"
    else:
        import openvino
        detail += f"OpenVINO {openvino.__version__}"
        try:
            compiled = module.auto_model.request  # optimum-intel keeps the CompiledModel
            hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            detail += f", inference precision {hint.get_type_name()}"
        except Exception as e:  # the row runs either way, but is then not held to fp32
            detail += f" (inference precision not read: {type(e).__name__})"
    return build(module), module, detail + ", CPU"


def precision_of(detail: str) -> dict:
    """What the row computed in, where the backend chose lower precision itself
    (OpenVINO picks bf16 on CPUs with AMX): its outputs are then compared by cosine."""
    for name, precision in (("inference precision bf16", "bfloat16"),
                            ("inference precision f16", "float16"), ("int8", "int8"),
                            ("inference precision not read", "unknown")):
        if name in detail:
            return {"precision": precision, "approximate": True}
    return {}


def encoder_case(job):
    import torch
    model, module, detail = load(job)
    pool = pooler(job["model"])
    data = np.load(job["data"])
    inputs = {"input_ids": torch.from_numpy(data["input_word_ids"]).long(),
              "attention_mask": torch.from_numpy(data["input_mask"]).long(),
              "token_type_ids": torch.from_numpy(data["input_type_ids"]).long()}

    def run():
        with torch.inference_mode():
            sequence = np.asarray(module.auto_model(**inputs).last_hidden_state, np.float32)
        return {"sequence_output": sequence, "pooled_output": pool(sequence[:, 0])}
    times, outputs = timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    emit(f"{detail}: the backend's model on the ids", times, **precision_of(detail))


def e2e_case(job):
    model, _, detail = load(job)
    pool = pooler(job["model"])
    with open(job["data"]) as f:
        texts = json.load(f)
    batches = [texts[i:i + job["batch_size"]] for i in range(0, len(texts), job["batch_size"])]

    def run():
        return np.concatenate([pool(model.encode(batch, batch_size=len(batch)))
                               for batch in batches])
    times, pooled = timed(run, job["repeats"])
    np.savez(job["outputs"], pooled_output=pooled)
    emit(f"{detail}: SentenceTransformer.encode per batch ([CLS] pooling) + BertModel's "
         "pooler in numpy", times, **precision_of(detail))


def latency_case(job):
    model, _, detail = load(job)
    pool = pooler(job["model"])
    emit(f"{detail}: SentenceTransformer.encode per request + BertModel's pooler in numpy",
         [], latency_s=latency(job, lambda texts: pool(model.encode(texts,
                                                                    batch_size=len(texts)))),
         **precision_of(detail))


if __name__ == "__main__":
    job = load_job()
    {"encoder": encoder_case, "e2e": e2e_case, "latency": latency_case}[job["case"]](job)
