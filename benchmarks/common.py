"""What the peer workers of `bert-tf bench` share (pure Python: the HF worker runs
where TensorFlow is not installed).

A worker is run as `PYTHON benchmarks/<peer>.py JOB.json`. The job (written by
`bert_tf.experiments.bench`) names the case, the bert-tf model dir whose weights to load, the
input file, the sizes, and where to save the outputs; the worker prints one JSON
line: its own description, the seconds of each timed run, and its peak RSS.
"""
import json
import sys
import time


def load_job() -> dict:
    with open(sys.argv[1]) as f:
        return json.load(f)


def timed(fn, repeats: int):
    """One warm-up call, then `repeats` timed calls: (seconds of each, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def emit(detail: str, times: list, **extra) -> None:
    """The worker's one line of output."""
    print(json.dumps({"detail": detail, "times_s": times, "peak_rss_mib": peak_rss_mib(),
                      **extra}))


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux's `ru_maxrss` would count the parent's: it keeps
    the high-water mark of the memory image that `exec` replaced (the forked bench)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def bert_config(model_dir: str) -> dict:
    """A model dir's `bert_config.json`, with `exact_gelu`: Google's `gelu` means the
    tanh form unless bert-tf wrote `gelu_approximate: false` (bert_tf/config.py)."""
    with open(f"{model_dir}/bert_config.json") as f:
        config = json.load(f)
    config["exact_gelu"] = (config["hidden_act"] == "gelu"
                            and not config.get("gelu_approximate", True))
    return config


def assign_google_weights(variables: dict, names: dict, model_dir: str) -> None:
    """Sets each variable (`{path: variable}`) from the model dir's checkpoint tensor
    `names[path]` (Google's name), reshaped to the variable's shape: einsum layouts
    such as `[H, heads, head_size]` are reshapes of Google's `[H, H]` kernels."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(f"{model_dir}/bert_model.ckpt")
    if set(variables) != set(names):
        raise ValueError(f"unmapped weights: {sorted(set(variables) ^ set(names))}")
    for path, variable in variables.items():
        variable.assign(reader.get_tensor(names[path]).reshape(tuple(variable.shape)))


def encoder_layer_names(i: int) -> dict:
    """Google checkpoint names of encoder layer `i`, by role."""
    g = f"bert/encoder/layer_{i}/"
    return {"query": g + "attention/self/query/", "key": g + "attention/self/key/",
            "value": g + "attention/self/value/", "attention_output": g + "attention/output/dense/",
            "attention_norm": g + "attention/output/LayerNorm/",
            "intermediate": g + "intermediate/dense/", "output": g + "output/dense/",
            "output_norm": g + "output/LayerNorm/"}


def latency(job, request) -> dict:
    """`request(texts)` timed once per request of each shape of the latency case's data
    (`{"warmup": N, "requests": {shape: [[text, ...], ...]}}`): shape -> the seconds of
    each request after the first N."""
    with open(job["data"]) as f:
        data = json.load(f)
    out = {}
    for shape, requests in data["requests"].items():
        seconds = []
        for texts in requests:
            start = time.perf_counter()
            request(texts)
            seconds.append(time.perf_counter() - start)
        out[shape] = seconds[data["warmup"]:]
    return out


def pooler(model_dir: str):
    """BertModel's pooler from an HF folder's weights, in numpy: [CLS] vectors [B, H]
    -> pooled_output (for peers whose outputs stop at the hidden states)."""
    import numpy as np
    from safetensors.numpy import load_file
    weights = load_file(f"{model_dir}/model.safetensors")
    kernel, bias = weights["pooler.dense.weight"].T, weights["pooler.dense.bias"]
    return lambda cls: np.tanh(np.asarray(cls, np.float32) @ kernel + bias)
