"""`bert-tf bench`: bert-tf beside its peers, case by case, on the same weights, in one run.

    bert-tf bench --model saved_models/minilm --hf-python /tmp/refenv/bin/python \\
        --out bench_out/minilm
    bert-tf bench --config tiny --batch-size 4 --seq-length 16 --examples 32 --repeats 2 \\
        --peers model-garden --out /tmp/bench-smoke          # a quick check on a random BERT-tiny

Cases (`--suite`, default all four):

- `encoder`: the encoder's forward pass on one fixed batch (`--batch-size` × `--seq-length`
  random ids, no padding, fp32), sequences/s. Peers: Model Garden `BertEncoderV2` and
  keras-hub `BertBackbone`, each without and with XLA; HF `BertModel` (PyTorch, SDPA).
- `e2e`: raw text -> `pooled_output` for the SST-2 dev sentences, `--batch-size` at a time:
  bert-tf's serving SavedModel (`bert_tf.export`: pads each batch to its longest and its
  dense layers skip that padding, `skip_padding`) vs the TF Hub way, preprocessor +
  encoder SavedModels padding to `--seq-length` (`tfhub`), vs HF's tokenizer +
  `BertModel` padding to each batch's longest, sentences/s.
- `train`: fine-tuning passes over the first `--examples` (default 1600) SST-2 training
  examples (AdamW with an optimizer step per batch, lr 5e-5, dropout on), examples/s:
  bert-tf as `bert-tf finetune` trains (Keras `fit`, length-bucketed batches) vs Model
  Garden's `BertClassifier` with tf_keras `fit` (padded to the max length) vs HF's
  `BertForSequenceClassification` in a PyTorch loop (padded to each batch's longest).
  Every system gets the same token ids; what differs is how it batches and pads them.
- `tokenize`: SST-2 train sentences into WordPiece ids (no special tokens), in chunks of
  4096: bert-tf's in-graph `BertTokenizer` vs HF tokenizers' `BertWordPieceTokenizer`
  built from the same vocab.txt; the ids must be identical. Sentences/s.

Method. Every row is measured in a fresh process, a worker that loads the same weights
(`python -m bert_tf.experiments.bench JOB.json` for bert-tf, `benchmarks/<peer>.py JOB.json` for a
peer, in the peer's own environment: `--hf-python`, `--keras-hub-path`), runs once to
warm up, then `--repeats` timed runs, and prints one JSON line with each run's seconds
and its peak RSS (`VmHWM`, the whole process). Rows give the median and the range;
"bert-tf ÷ it" is bert-tf's throughput over the row's (above 1: bert-tf is faster; an
XLA row is set against bert-tf with XLA). Outputs (sequence and pooled outputs; ids) are
compared with bert-tf's: max |diff| must be at most 1e-4. GFLOP/s count the matmul FLOPs
of the config over the real tokens only (padding is not useful work; training = 3 ×
forward), set against the machine's fp32 matmul rate measured with `tf.matmul` (TF32 is
off everywhere, so GPU runs stay fp32). A peer that cannot run is reported unavailable,
with the reason. Writes `OUT/bench.json` and `OUT/bench.md`; jobs, inputs and outputs
stay in `OUT/work/` (rerun one worker by hand with its job file).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np

CASES = ("encoder", "e2e", "train", "tokenize")
PEERS = ("model-garden", "keras-hub", "hf", "tfhub")
TOLERANCE = 1e-4
TRAIN_EXAMPLES = 1600
TOKENIZE_CHUNK = 4096  # texts per call, as bert_tf.data.encode tokenises
LEARNING_RATE = 5e-5
BENCHMARKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "benchmarks")
KERAS_HUB_INSTALL = ("pip install --no-deps --target .venv/keras-hub "
                     "-r benchmarks/requirements-keras-hub.txt")
MISSING_MODULE_HINTS = {"hf": "--hf-python: a python with benchmarks/requirements-hf.txt",
                        "keras-hub": KERAS_HUB_INSTALL}
UNITS = {"encoder": "sequences/s", "e2e": "sentences/s", "train": "examples/s",
         "tokenize": "sentences/s"}


def add_arguments(p) -> None:
    from bert_tf.config import PRESETS
    p.add_argument("--out", required=True, help="folder for bench.json, bench.md and work/")
    p.add_argument("--suite", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma list of {', '.join(PEERS)} (empty: bert-tf alone)")
    p.add_argument("--model", default="saved_models/minilm",
                   help="model dir whose weights every system loads")
    p.add_argument("--config", choices=sorted(PRESETS),
                   help="instead of --model: a randomly initialised model of this size")
    p.add_argument("--vocab", help="vocab.txt for --config (default: DATA_DIR/bert_vocab/"
                   "uncased/vocab.txt)")
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"),
                   help="folder with SST-2/ (default $BERT_TF_DATA or ../shared/data)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-length", type=int, default=128,
                   help="encoder: the batch's length; e2e, train: the max length")
    p.add_argument("--examples", type=int, help="the first N texts of each case's data (default: "
                   f"e2e all of SST-2 dev, train {TRAIN_EXAMPLES}, tokenize all of SST-2 train)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row, after a warm-up")
    p.add_argument("--hf-python", default=sys.executable,
                   help="python of an environment with torch, transformers and tokenizers "
                   "(benchmarks/requirements-hf.txt)")
    p.add_argument("--keras-hub-path", default=os.path.join(sys.prefix, "keras-hub"),
                   help=f"folder keras-hub was installed into ({KERAS_HUB_INSTALL})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bert-tf bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def _comma_list(value: str, known, flag: str) -> list[str]:
    items = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in items if x not in known]
    if unknown:
        raise ValueError(f"{flag}: unknown {unknown}; choose from {', '.join(known)}")
    return items


# ---- what is counted ----------------------------------------------------------------------

def forward_flops(config, lengths) -> float:
    """Matmul FLOPs (2 per multiply-add) of the encoder and pooler over sequences of
    these lengths: per layer and token, the Q, K, V and output projections (4·H²) and
    the feed-forward (2·H·I), plus attention scores and context (2·l·H)."""
    h, i = config.hidden_size, config.intermediate_size
    lengths = np.asarray(lengths, np.float64)
    per_layer = 2 * lengths * h * (4 * h + 2 * i) + 4 * lengths ** 2 * h
    return float(config.num_hidden_layers * per_layer.sum() + 2 * h * h * len(lengths))


def matmul_peak(repeats: int = 5) -> dict:
    """The machine's fp32 matmul rate: the best of `repeats` square `tf.matmul`s."""
    import tensorflow as tf
    gpu = bool(tf.config.list_logical_devices("GPU"))
    n = 8192 if gpu else 2048
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - start)
    return {"gflop_per_s": round(2 * n ** 3 / best / 1e9, 1),
            "how": f"tf.matmul {n}×{n}×{n} fp32 on {'GPU' if gpu else 'CPU'}, best of {repeats}"}


def machine() -> dict:
    import keras
    import tensorflow as tf
    gpus = [tf.config.experimental.get_device_details(g).get("device_name", g.name)
            for g in tf.config.list_physical_devices("GPU")]
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus,
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(),
            # every TensorFlow worker inherits it: the same kernels for bert-tf and TF peers
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}


# ---- model dirs -----------------------------------------------------------------------------

def random_model_dir(preset: str, vocab_file: str, out_dir: str) -> str:
    """A model dir of a preset size with random weights (seed 0)."""
    import keras
    from bert_tf.io.checkpoint import write_model_dir
    from bert_tf.config import BertConfig
    from bert_tf.models.encoder import build_encoder, encoder_checkpoint_variables
    from bert_tf.preprocessing.tokenizer import load_vocab
    keras.utils.set_random_seed(0)
    config = BertConfig.preset(preset, vocab_size=len(load_vocab(vocab_file)))
    tensors = {n: v.numpy() for n, v in encoder_checkpoint_variables(build_encoder(config)).items()}
    return write_model_dir(out_dir, config, vocab_file, tensors,
                           {"source": f"random init of preset {preset}, seed 0"}, overwrite=True)


def write_hf_model(model_dir: str, out_dir: str) -> str:
    """The encoder of a model dir as an HF `BertModel` folder (config.json,
    model.safetensors, vocab.txt, tokenizer_config.json), for the HF worker."""
    from safetensors.numpy import save_file
    from bert_tf.io.checkpoint import CKPT_NAME, google_to_hf_name, read_checkpoint, read_meta
    from bert_tf.config import load_config
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for name, value in read_checkpoint(os.path.join(model_dir, CKPT_NAME)).items():
        if name.startswith("bert/"):
            hf_name, transpose = google_to_hf_name(name)
            tensors[hf_name] = np.ascontiguousarray(value.T if transpose else value)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(load_config(model_dir).to_hf_dict(), f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": read_meta(model_dir)["do_lower_case"]}, f)
    shutil.copyfile(os.path.join(model_dir, "vocab.txt"), os.path.join(out_dir, "vocab.txt"))
    return out_dir


# ---- running the workers --------------------------------------------------------------------

@dataclasses.dataclass
class System:
    """One row of a case: who runs it, and how."""
    label: str
    peer: str | None = None          # None: bert-tf itself
    script: str | None = None        # benchmarks/<script>; None: python -m bert_tf.experiments.bench
    xla: bool = False


class Bench:
    def __init__(self, args):
        from bert_tf.config import load_config
        self.args = args
        self.cases = _comma_list(args.suite, CASES, "--suite")
        self.peers = _comma_list(args.peers, PEERS, "--peers")
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        if args.config:
            vocab = args.vocab or os.path.join(args.data_dir, "bert_vocab", "uncased", "vocab.txt")
            self.model_dir = random_model_dir(args.config, vocab, self.path(f"model-{args.config}"))
        elif not os.path.exists(os.path.join(args.model, "bert_config.json")):
            raise FileNotFoundError(f"{args.model}: not a model dir; make MiniLM's with "
                                    "`make run` (pipelines/minilm.py), or pass --config tiny")
        else:
            self.model_dir = os.path.abspath(args.model)
        self.config = load_config(self.model_dir)
        self._hf_dir = None

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def hf_dir(self) -> str:
        if self._hf_dir is None:
            self._hf_dir = write_hf_model(self.model_dir, self.path("model-hf"))
        return self._hf_dir

    def systems(self, case: str, peer_systems: list[System]) -> list[System]:
        """bert-tf's rows of `case` (with XLA for the encoder), then the chosen peers'."""
        ours = [System("bert-tf")]
        if case == "encoder":
            ours.append(System("bert-tf, XLA", xla=True))
        return ours + [s for s in peer_systems if s.peer in self.peers]

    def launcher(self, peer: str | None):
        """(python, extra environment) for a peer, or a string: why it cannot run."""
        if peer == "hf":
            return self.args.hf_python, {}
        if peer == "keras-hub":
            path = self.args.keras_hub_path
            if os.path.isdir(path):
                return sys.executable, {"PYTHONPATH": os.pathsep.join(
                    [path, *filter(None, [os.environ.get("PYTHONPATH")])])}
            if importlib.util.find_spec("keras_hub") is None:
                return f"keras-hub is not installed ({path} is missing): {KERAS_HUB_INSTALL}"
        return sys.executable, {}

    def run(self, case: str, system: System, **job) -> dict:
        """Runs one worker; its row, available or not."""
        row = {"system": system.label, "peer": system.peer, "xla": system.xla}
        launch = self.launcher(system.peer)
        if isinstance(launch, str):
            return {**row, "available": False, "reason": launch}
        python, env = launch
        name = re.sub(r"[^a-z0-9]+", "-", f"{case} {system.label}".lower()).strip("-")
        job = {"case": case, "model": self.model_dir, "batch_size": self.args.batch_size,
               "seq_length": self.args.seq_length, "repeats": self.args.repeats,
               "learning_rate": LEARNING_RATE, "xla": system.xla,
               "outputs": self.path(name + ".npz"), **job}
        if system.peer == "hf":  # transformers reads HF's files: the same weights, renamed
            job["model"] = self.hf_dir()
        job_file = self.path(name + ".json")
        with open(job_file, "w") as f:
            json.dump(job, f, indent=1)
        command = ([python, os.path.join(BENCHMARKS_DIR, system.script)] if system.script
                   else [python, "-m", "bert_tf.experiments.bench"]) + [job_file]
        print(f"{case}: {system.label} ...", end=" ", flush=True)
        start = time.time()
        proc = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
        print(f"{time.time() - start:.0f} s", flush=True)
        if proc.returncode:
            lines = [x for x in proc.stderr.splitlines() if x.strip()]
            reason = lines[-1][-300:] if lines else f"exit status {proc.returncode}"
            if reason.startswith("ModuleNotFoundError") and system.peer in MISSING_MODULE_HINTS:
                reason += f" ({MISSING_MODULE_HINTS[system.peer]})"
            return {**row, "available": False, "reason": reason, "command": shlex.join(command)}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        return {**row, "available": True, "outputs": job["outputs"], **result}


# ---- the cases --------------------------------------------------------------------------------

def encoder_case(bench: Bench) -> dict:
    cfg, b, length = bench.config, bench.args.batch_size, bench.args.seq_length
    rng = np.random.default_rng(0)
    inputs = {"input_word_ids": rng.integers(1, cfg.vocab_size, (b, length), dtype=np.int32),
              "input_mask": np.ones((b, length), np.int32),
              "input_type_ids": np.repeat((np.arange(length) >= length // 2)[None], b, 0)
              .astype(np.int32)}
    data = bench.path("encoder-inputs.npz")
    np.savez(data, **inputs)
    peers = [System("Model Garden BertEncoderV2", "model-garden", "model_garden.py"),
             System("Model Garden BertEncoderV2, XLA", "model-garden", "model_garden.py", True),
             System("keras-hub BertBackbone", "keras-hub", "keras_hub_bert.py"),
             System("keras-hub BertBackbone, XLA", "keras-hub", "keras_hub_bert.py", True),
             System("HF transformers BertModel", "hf", "hf_bert.py")]
    rows = [bench.run("encoder", s, data=data)
            for s in bench.systems("encoder", peers)]
    return {"title": f"Encoder forward pass, fixed batch {b} × {length}, fp32",
            "items": b, "real_tokens": b * length, "flops": forward_flops(cfg, [length] * b),
            "compare": ["sequence_output", "pooled_output"], "rows": rows}


def _sst2(bench: Bench, split: str, default_limit: int | None):
    from bert_tf.data.glue import Examples, encode, read_task
    from bert_tf.models.loading import load_tokenizer
    examples = read_task("sst2", bench.args.data_dir, split)
    n = bench.args.examples or default_limit or len(examples)
    examples = Examples(examples.texts_a[:n], None, examples.labels[:n], examples.source)
    features, labels, _ = encode(load_tokenizer(bench.model_dir), examples,
                                 bench.args.seq_length, ["0", "1"])
    return examples, features, labels


def e2e_case(bench: Bench) -> dict:
    from bert_tf.export.savedmodel import export_all
    examples, features, _ = _sst2(bench, "dev", None)
    data = bench.path("e2e-texts.json")
    with open(data, "w") as f:
        json.dump(examples.texts_a, f)
    export = bench.path("export")
    export_all(bench.model_dir, export, version=1, seq_length=bench.args.seq_length,
               overwrite=True)
    lengths = features["input_mask"].sum(axis=1)
    peers = [System(f"TF Hub-style preprocessor + encoder (pad to {bench.args.seq_length})",
                    "tfhub", "tfhub_pipeline.py"),
             System("HF tokenizer + BertModel", "hf", "hf_bert.py")]
    rows = [bench.run("e2e", s, data=data, export=export)
            for s in bench.systems("e2e", peers)]
    return {"title": f"End to end, raw text -> pooled_output, {len(examples)} SST-2 dev "
                     f"sentences, batch {bench.args.batch_size}, max length "
                     f"{bench.args.seq_length}",
            "items": len(examples), "real_tokens": int(lengths.sum()),
            "flops": forward_flops(bench.config, lengths), "compare": ["pooled_output"],
            "rows": rows}


def train_case(bench: Bench) -> dict:
    examples, features, labels = _sst2(bench, "train", TRAIN_EXAMPLES)
    data = bench.path("train-examples.npz")
    np.savez(data, labels=labels, **features)
    lengths = features["input_mask"].sum(axis=1)
    peers = [System("Model Garden BertClassifier", "model-garden", "model_garden.py"),
             System("HF BertForSequenceClassification", "hf", "hf_bert.py")]
    rows = [bench.run("train", s, data=data)
            for s in bench.systems("train", peers)]
    return {"title": f"Fine-tuning on the first {len(examples)} SST-2 training examples, batch "
                     f"{bench.args.batch_size}, max length {bench.args.seq_length}, AdamW "
                     f"lr {LEARNING_RATE}",
            "items": len(examples), "real_tokens": int(lengths.sum()),
            "flops": 3 * forward_flops(bench.config, lengths), "compare": [], "rows": rows}


def tokenize_case(bench: Bench) -> dict:
    from bert_tf.data.glue import read_task
    texts = read_task("sst2", bench.args.data_dir, "train").texts_a[:bench.args.examples]
    data = bench.path("tokenize-texts.json")
    with open(data, "w") as f:
        json.dump(texts, f)
    peers = [System("HF tokenizers BertWordPieceTokenizer", "hf", "hf_bert.py")]
    rows = [bench.run("tokenize", s, data=data, chunk=TOKENIZE_CHUNK)
            for s in bench.systems("tokenize", peers)]
    return {"title": f"Tokenisation of {len(texts)} SST-2 training sentences into WordPiece "
                     f"ids, {TOKENIZE_CHUNK} at a time", "items": len(texts),
            "compare": ["ids", "lengths"], "rows": rows}


CASE_FUNCTIONS = {"encoder": encoder_case, "e2e": e2e_case, "train": train_case,
                  "tokenize": tokenize_case}


# ---- figures --------------------------------------------------------------------------------

def max_abs_diff(path: str, reference: str, keys) -> float:
    with np.load(path) as a, np.load(reference) as b:
        return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) if a[k].shape == b[k].shape
                   else float("inf") for k in keys)


def summarise(case: str, result: dict, peak: float) -> dict:
    """Adds medians, spreads, throughput, GFLOP/s, ratios and output differences to the rows."""
    rows = result["rows"]
    for row in rows:
        if not row["available"]:
            continue
        times = np.array(row["times_s"])
        median = float(np.median(times))
        row.update(median_s=round(median, 5), min_s=round(float(times.min()), 5),
                   max_s=round(float(times.max()), 5),
                   spread=round(float((times.max() - times.min()) / median), 3),
                   throughput=round(result["items"] / median, 2))
        if "flops" in result:
            row["gflop_per_s"] = round(result["flops"] / median / 1e9, 2)
            row["fraction_of_peak"] = round(row["gflop_per_s"] / peak, 3)
        if row.get("tokens_per_run"):
            row["tokens_run_per_real"] = round(row["tokens_per_run"] / result["real_tokens"], 3)
    ours = {r["xla"]: r for r in rows if r["peer"] is None and r["available"]}
    reference = ours.get(False)
    for row in rows:
        if not row["available"] or reference is None:
            continue
        versus = ours.get(row["xla"], reference)
        row["bert_tf_ratio"] = round(versus["throughput"] / row["throughput"], 3)
        if result["compare"] and row is not reference:
            diff = max_abs_diff(row["outputs"], reference["outputs"], result["compare"])
            row["max_abs_diff"] = diff
            row["outputs_agree"] = diff <= (0 if case == "tokenize" else TOLERANCE)
    return result


def _fmt(value, digits=1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _cells(case: str, result: dict, row: dict) -> list[str]:
    """A row of a case's markdown table."""
    if not row["available"]:
        return [row["system"], "unavailable: " + row["reason"].replace("|", "\\|")] + [""] * 7
    diff = row.get("max_abs_diff")
    if diff is not None:
        if case == "tokenize":
            diff = "identical ids" if row["outputs_agree"] else "ids differ"
        else:
            diff = f"{diff:.1e}" + ("" if row["outputs_agree"] else f" (over {TOLERANCE})")
    low, high = result["items"] / row["max_s"], result["items"] / row["min_s"]
    peak = row.get("fraction_of_peak")
    return [row["system"], f"**{_fmt(row['throughput'])}**", f"{_fmt(low)}–{_fmt(high)}",
            _fmt(row.get("bert_tf_ratio"), 2), _fmt(row.get("gflop_per_s")),
            "" if peak is None else f"{100 * peak:.0f} %", _fmt(row.get("tokens_run_per_real"), 2),
            _fmt(row["peak_rss_mib"], 0), diff or ""]


def markdown(report: dict) -> str:
    m, c = report["machine"], report["config"]
    lines = ["# bert-tf bench", "", f"`{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, "
             + (f"GPUs: {', '.join(m['gpus'])}" if m["gpus"] else "no GPU")
             + f"; TensorFlow {m['tensorflow']}, Keras {m['keras']}, TF_ENABLE_ONEDNN_OPTS="
             f"{m.get('tf_enable_onednn_opts') or 'unset'} (for every TensorFlow worker). "
             f"Model: {report['model']} "
             f"({c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
             f"{c['num_attention_heads']} heads, intermediate {c['intermediate_size']}).",
             f"fp32 matmul peak: {report['matmul_peak']['gflop_per_s']} GFLOP/s "
             f"({report['matmul_peak']['how']}).",
             f"Each row: one warm-up run, then {report['settings']['repeats']} timed run(s) in a "
             "fresh process; median (min–max). bert-tf ÷ it > 1: bert-tf is faster. GFLOP/s "
             "count real tokens only; padded ÷ real: positions computed per real token.", ""]
    for case, result in report["cases"].items():
        lines += [f"## {case}: {result['title']}", "",
                  f"| system | {UNITS[case]} | min–max | bert-tf ÷ it | GFLOP/s | of peak | "
                  "padded ÷ real | peak RSS MiB | max abs diff |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_cells(case, result, row)) + " |" for row in result["rows"]]
        lines += ["", "Systems: " + "; ".join(f"{r['system']}: {r['detail']}"
                                              for r in result["rows"] if r["available"]), ""]
    return "\n".join(lines)


def main(args) -> dict:
    import tensorflow as tf
    tf.config.experimental.enable_tensor_float_32_execution(False)
    bench = Bench(args)
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    report = {"command": shlex.join(["bert-tf", "bench", *[
                  x for k, v in settings.items() if v is not None
                  for x in (f"--{k.replace('_', '-')}", str(v))]]),
              "settings": settings, "machine": machine(), "model": bench.model_dir,
              "config": dataclasses.asdict(bench.config), "matmul_peak": matmul_peak(),
              "tolerance": TOLERANCE, "cases": {}}
    for case in bench.cases:
        result = CASE_FUNCTIONS[case](bench)
        report["cases"][case] = summarise(case, result, report["matmul_peak"]["gflop_per_s"])
    with open(os.path.join(bench.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(bench.out, "bench.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return report


# ---- bert-tf's own workers ------------------------------------------------------------------
# `python -m bert_tf.experiments.bench JOB.json`: one row of bert-tf, measured in this fresh process.

def _timed(fn, repeats: int):
    """One warm-up call, then `repeats` timed calls: (seconds of each, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def _emit(detail: str, times, **extra) -> None:
    print(json.dumps({"detail": detail, "times_s": times, "peak_rss_mib": _peak_rss_mib(),
                      **extra}))


def _peak_rss_mib() -> float:
    """This process's peak RSS. Linux's `ru_maxrss` would count the parent's: it keeps
    the high-water mark of the memory image that `exec` replaced (the forked bench)."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)


def _encoder_worker(job, tf):
    from bert_tf.models.loading import load_encoder
    encoder = load_encoder(job["model"])
    inputs = {k: tf.constant(v) for k, v in np.load(job["data"]).items()}
    call = tf.function(lambda x: encoder(x, training=False), jit_compile=job["xla"])

    def run():
        out = call(inputs)
        return {"sequence_output": out["sequence_output"].numpy(),
                "pooled_output": out["pooled_output"].numpy()}
    times, outputs = _timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    _emit("bert-tf encoder (Keras functional model) in a tf.function"
          + (", XLA" if job["xla"] else ""), times)


def _e2e_worker(job, tf):
    serve = tf.saved_model.load(os.path.join(job["export"], "serving", "1"))
    serve = serve.signatures["serving_default"]
    with open(job["data"]) as f:
        texts = json.load(f)
    batches = [tf.constant(texts[i:i + job["batch_size"]])
               for i in range(0, len(texts), job["batch_size"])]

    def run():
        pooled, tokens = [], 0
        for batch in batches:
            out = serve(text=batch)
            pooled.append(out["pooled_output"].numpy())
            tokens += int(np.prod(out["input_mask"].shape))
        return np.concatenate(pooled), tokens
    times, (pooled, tokens) = _timed(run, job["repeats"])
    np.savez(job["outputs"], pooled_output=pooled)
    _emit("bert-tf serving SavedModel (in-graph tokenizer + encoder, each batch padded to its "
          "longest, dense layers on the real tokens only)", times, tokens_per_run=tokens)


def _train_worker(job, tf):
    import keras
    from bert_tf.models.classifier import build_classifier
    from bert_tf.data.glue import make_dataset
    from bert_tf.models.loading import load_encoder
    from bert_tf.training.common import bert_optimizer
    features = dict(np.load(job["data"]))
    labels = features.pop("labels")
    ds = make_dataset(features, labels, job["batch_size"], training=True)
    steps, tokens = 0, 0
    for x, _ in ds:
        steps += 1
        tokens += int(np.prod(x["input_mask"].shape))
    total = steps * (job["repeats"] + 1)
    model, _ = build_classifier(load_encoder(job["model"], skip_padding=True), 2)
    model.compile(bert_optimizer(job["learning_rate"], total, int(0.1 * total)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times, _ = _timed(lambda: model.fit(ds, verbose=0), job["repeats"])
    _emit("bert-tf classifier as `bert-tf finetune` trains it (Keras fit, fused AdamW, "
          "length-bucketed batches, dense layers on the real tokens only)", times,
          tokens_per_run=tokens)


def _tokenize_worker(job, tf):
    from bert_tf.models.loading import load_tokenizer
    tokenizer = load_tokenizer(job["model"])
    tokenize = tf.function(lambda t: tokenizer.tokenize(t).merge_dims(-2, -1))
    with open(job["data"]) as f:
        texts = json.load(f)
    chunks = [texts[i:i + job["chunk"]] for i in range(0, len(texts), job["chunk"])]

    def run():
        ragged = [tokenize(tf.constant(chunk)) for chunk in chunks]
        return (np.concatenate([r.flat_values.numpy() for r in ragged]),
                np.concatenate([r.row_lengths().numpy() for r in ragged]))
    times, (ids, lengths) = _timed(run, job["repeats"])
    np.savez(job["outputs"], ids=ids.astype(np.int32), lengths=lengths.astype(np.int32))
    _emit("bert-tf in-graph BertTokenizer (tensorflow-text) in a tf.function", times)


def run_worker(job_file: str) -> None:
    import tensorflow as tf
    tf.config.experimental.enable_tensor_float_32_execution(False)
    with open(job_file) as f:
        job = json.load(f)
    {"encoder": _encoder_worker, "e2e": _e2e_worker, "train": _train_worker,
     "tokenize": _tokenize_worker}[job["case"]](job, tf)


if __name__ == "__main__":
    run_worker(sys.argv[1])
