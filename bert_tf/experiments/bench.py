"""bert-tf beside its peers, case by case, on the same weights, in one run (`bert-tf bench`).

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

As a library call: `bench(BenchConfig(out="bench_out/minilm", peers=["model-garden"]))`
(each setting is the flag of the same name; `suite` and `peers` are lists).

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
from safetensors.numpy import save_file

from bert_tf.choices import BENCH_CASES as CASES, BENCH_PEERS as PEERS, \
    BENCH_TRAIN_EXAMPLES as TRAIN_EXAMPLES, KERAS_HUB_INSTALL
from bert_tf.config import PRESETS, BertConfig, load_config
from bert_tf.data.glue import Examples, encode, make_dataset, read_task
from bert_tf.errors import ConfigError
from bert_tf.export import PRECISIONS, export_model
from bert_tf.hardware import bfloat16_support, cpu_flags, cpu_name
from bert_tf.io.atomic import check_own_folder
from bert_tf.io.checkpoint import CKPT_NAME, google_to_hf_name, read_checkpoint, read_meta, \
    write_model_dir
from bert_tf.models import BertClassifier, BertEncoder, load_encoder, load_preprocessor, \
    load_tokenizer
from bert_tf.models.base import with_dtype_policy
from bert_tf.models.loading import check_model_dir
from bert_tf.models.serving import as_float32
from bert_tf.optimizers import bert_optimizer
from bert_tf.preprocessing.tokenizer import load_vocab

# TensorFlow and Keras are imported only inside the few functions that run them
# (`machine`, `matmul_peak`, `bench`, the workers): the rest of this process just writes
# the workers' inputs and summarises their output, and nothing may start TensorFlow's
# devices before `bench` has set them up. (The bert_tf imports above load TensorFlow's
# modules anyway: this marks where it runs, it saves no start-up time.)

ST_PEERS = ("st-onnx", "st-onnx-int8", "st-openvino")
# The latency case's requests: (texts' length, texts per request).
LATENCY_SHAPES = (("short", 1), ("short", 8), ("long", 1), ("long", 8))
SHORT_TOKENS = 20        # a short text: 20 tokens (± 2) with [CLS] and [SEP]
LATENCY_WARMUP = 20      # untimed requests of each shape first
MIN_COSINE = 0.999       # bfloat16 rows: mean cosine of pooled outputs to bert-tf fp32
TOLERANCE = 1e-4
TOKENIZE_CHUNK = 4096  # texts per call, as bert_tf.data.encode tokenises
LEARNING_RATE = 5e-5
# The peers' worker scripts, in the repository's benchmarks/ (not part of the package).
BENCHMARKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks")
# bert-tf's own worker: `python -m WORKER_MODULE JOB.json` (this module's `run_worker`).
WORKER_MODULE = "bert_tf.experiments.bench"
ST_HINT = "--st-python: a python with benchmarks/requirements-st.txt"
MISSING_MODULE_HINTS = {"hf": "--hf-python: a python with benchmarks/requirements-hf.txt",
                        "hf-bf16": "--hf-python: a python with benchmarks/requirements-hf.txt",
                        "keras-hub": KERAS_HUB_INSTALL, **{p: ST_HINT for p in ST_PEERS}}
UNITS = {"encoder": "sequences/s", "e2e": "sentences/s", "train": "examples/s",
         "tokenize": "sentences/s", "latency": "ms"}


@dataclasses.dataclass(kw_only=True)
class BenchConfig:
    """What `bench` measures, on which model, and where it writes.

    Attributes:
        out: folder for `bench.json`, `bench.md` and `work/`.
        suite: cases to run, of `CASES` (default all).
        peers: peers beside bert-tf, of `PEERS` (default all; empty: bert-tf alone).
        model: model dir whose weights every system loads.
        config: instead of `model`: a randomly initialised model of this preset size
            (`bert_tf.config.PRESETS`).
        vocab: vocab.txt for `config` (default: `data_dir/bert_vocab/uncased/vocab.txt`).
        data_dir: folder with `SST-2/` (default `$BERT_TF_DATA`, else `../shared/data`).
        batch_size: batch size of every case.
        seq_length: encoder: the batch's length; e2e, train: the max length.
        examples: the first N texts of each case's data (default: e2e all of SST-2
            dev, train `TRAIN_EXAMPLES`, tokenize all of SST-2 train).
        repeats: timed runs per row, after a warm-up.
        hf_python: python of an environment with torch, transformers and tokenizers
            (benchmarks/requirements-hf.txt), for the `hf` and `hf-bf16` peers.
        st_python: python of an environment with sentence-transformers and its ONNX
            Runtime and OpenVINO backends (benchmarks/requirements-st.txt), for `st-*`.
        latency_requests: timed requests of each latency shape (after
            `LATENCY_WARMUP` untimed ones).
        keras_hub_path: folder keras-hub was installed into (`KERAS_HUB_INSTALL`).
    """
    out: str
    suite: list[str] = dataclasses.field(default_factory=lambda: list(CASES))
    peers: list[str] = dataclasses.field(default_factory=lambda: list(PEERS))
    model: str = "saved_models/minilm"
    config: str | None = None
    vocab: str | None = None
    data_dir: str = dataclasses.field(
        default_factory=lambda: os.environ.get("BERT_TF_DATA", "../shared/data"))
    batch_size: int = 32
    seq_length: int = 128
    examples: int | None = None
    repeats: int = 3
    hf_python: str = sys.executable
    keras_hub_path: str = os.path.join(sys.prefix, "keras-hub")
    st_python: str = sys.executable
    latency_requests: int = 500

    def __post_init__(self):
        self.suite = _choices("suite", self.suite, CASES)
        self.peers = _choices("peers", self.peers, PEERS)
        if not self.suite:
            raise ConfigError(f"suite is empty; choose from {', '.join(CASES)}")
        if self.config is not None and self.config not in PRESETS:
            raise ConfigError(f"config {self.config!r}: choose one of {', '.join(PRESETS)}")
        for name in ("batch_size", "seq_length", "examples", "repeats", "latency_requests"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if not self.out:
            raise ConfigError("out is empty; give the folder for the results")

    def settings(self) -> dict:
        """The settings as `bench.json` records them (`suite` and `peers` comma lists)."""
        settings = dataclasses.asdict(self)
        settings["suite"], settings["peers"] = ",".join(self.suite), ",".join(self.peers)
        return settings


def _choices(name: str, values, known) -> list[str]:
    if isinstance(values, str):
        raise ConfigError(f"{name} must be a list of names, not the string {values!r}")
    items = list(values)
    unknown = [x for x in items if x not in known]
    if unknown:
        raise ConfigError(f"{name}: unknown {unknown}; choose from {', '.join(known)}")
    return items


def command_line(config: BenchConfig) -> str:
    """The `bert-tf bench` command that runs this config."""
    return shlex.join(["bert-tf", "bench", *[
        x for k, v in config.settings().items() if v is not None
        for x in (f"--{k.replace('_', '-')}", str(v))]])


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
    return {"cpu": cpu_name(), "cpu_flags": " ".join(cpu_flags()), "cpu_count": os.cpu_count(),
            "bfloat16": bfloat16_support()[1], "gpus": gpus,
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(),
            # every TensorFlow worker inherits it: the same kernels for bert-tf and TF peers
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "")}


# ---- model dirs -----------------------------------------------------------------------------

def random_model_dir(preset: str, vocab_file: str, out_dir: str) -> str:
    """A model dir of a preset size with random weights (seed 0)."""
    import keras
    keras.utils.set_random_seed(0)
    config = BertConfig.preset(preset, vocab_size=len(load_vocab(vocab_file)))
    tensors = BertEncoder.from_bert_config(config).checkpoint_tensors()
    return write_model_dir(out_dir, config, vocab_file, tensors,
                           {"source": f"random init of preset {preset}, seed 0"}, overwrite=True)


def write_hf_model(model_dir: str, out_dir: str) -> str:
    """The encoder of a model dir as an HF `BertModel` folder (config.json,
    model.safetensors, vocab.txt, tokenizer_config.json), for the HF worker."""
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
    script: str | None = None        # benchmarks/<script>; None: python -m WORKER_MODULE
    xla: bool = False
    precision: str = "float32"       # float32, bfloat16, int8

    @property
    def approximate(self) -> bool:
        """Computes in lower precision: outputs are compared by cosine (and accuracy),
        not within TOLERANCE."""
        return self.precision != "float32"


# What users pick for fast CPU inference, in the encoder, e2e and latency cases: each
# row's pooled_output is BertModel's pooler over the [CLS] token, as bert-tf's.
FAST_PEERS = [
    System("HF BertModel, bfloat16 autocast", "hf-bf16", "hf_bert.py", precision="bfloat16"),
    System("sentence-transformers, ONNX Runtime", "st-onnx", "st_backends.py"),
    System("sentence-transformers, ONNX Runtime int8 (dynamic)", "st-onnx-int8",
           "st_backends.py", precision="int8"),
    System("sentence-transformers, OpenVINO", "st-openvino", "st_backends.py")]


class Bench:
    """A checked `BenchConfig` and the model every system loads (`model_dir`, its
    `bert_config`); runs the workers into `OUT/work/`."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.cases = config.suite
        self.peers = config.peers
        self.out = os.path.abspath(config.out)
        self.work = os.path.join(self.out, "work")
        check_own_folder(self.out, "work", "a bench folder")
        if not config.config and not os.path.exists(os.path.join(config.model,
                                                                 "bert_config.json")):
            raise FileNotFoundError(f"{config.model}: not a model dir; make MiniLM's with "
                                    "`make run` (pipelines/minilm.py), or set config (a preset "
                                    "such as tiny) for a random model")
        # Everything checked before anything is written.
        if config.config:
            vocab = config.vocab or os.path.join(config.data_dir, "bert_vocab", "uncased",
                                                 "vocab.txt")
            bert_config = BertConfig.preset(config.config, vocab_size=len(load_vocab(vocab)))
        else:
            bert_config = check_model_dir(config.model)
        bert_config.check_seq_length(config.seq_length, "seq_length")
        os.makedirs(self.work, exist_ok=True)
        if config.config:
            self.model_dir = random_model_dir(config.config, vocab,
                                              self.path(f"model-{config.config}"))
        else:
            self.model_dir = os.path.abspath(config.model)
        self.bert_config = load_config(self.model_dir)
        self._hf_dir = None
        self._exported = False

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
        if case in ("encoder", "e2e", "latency"):
            ours.append(System("bert-tf, bfloat16", precision="bfloat16"))
        return ours + [s for s in peer_systems if s.peer in self.peers]

    def exports(self) -> str:
        """The encoder of the model dir exported twice (once per run): version 1 in
        float32, version 2 with `precision="bfloat16"`. The encoder alone, whatever head
        the model dir holds: the cases are text -> pooled_output."""
        export = self.path("export")
        if not self._exported:
            encoder, preprocessor = load_encoder(self.model_dir), load_preprocessor(self.model_dir)
            for version, precision in ((1, "float32"), (2, "bfloat16")):
                export_model(encoder, export, version=version, seq_length=self.config.seq_length,
                             overwrite=True, preprocessor=preprocessor, precision=precision)
            self._exported = True
        return export

    def launcher(self, peer: str | None):
        """(python, extra environment) for a peer, or a string: why it cannot run."""
        if peer == "hf":
            return self.config.hf_python, {}
        if peer == "hf-bf16":
            native, reason = bfloat16_support()
            return (self.config.hf_python, {}) if native else f"not run: {reason}"
        if peer in ST_PEERS:
            return self.config.st_python, {}
        if peer == "keras-hub":
            path = self.config.keras_hub_path
            if os.path.isdir(path):
                return sys.executable, {"PYTHONPATH": os.pathsep.join(
                    [path, *filter(None, [os.environ.get("PYTHONPATH")])])}
            if importlib.util.find_spec("keras_hub") is None:
                return f"keras-hub is not installed ({path} is missing): {KERAS_HUB_INSTALL}"
        return sys.executable, {}

    def run(self, case: str, system: System, **job) -> dict:
        """Runs one worker; its row, available or not."""
        row = {"system": system.label, "peer": system.peer, "xla": system.xla,
               "precision": system.precision, "approximate": system.approximate}
        launch = self.launcher(system.peer)
        if isinstance(launch, str):
            return {**row, "available": False, "reason": launch}
        python, env = launch
        name = re.sub(r"[^a-z0-9]+", "-", f"{case} {system.label}".lower()).strip("-")
        job = {"case": case, "model": self.model_dir, "batch_size": self.config.batch_size,
               "seq_length": self.config.seq_length, "repeats": self.config.repeats,
               "learning_rate": LEARNING_RATE, "xla": system.xla,
               "precision": system.precision, "backend": system.peer,
               "outputs": self.path(name + ".npz"), **job}
        if system.peer in ("hf", "hf-bf16", *ST_PEERS):
            # transformers reads HF's files: the same weights, renamed
            job["model"] = self.hf_dir()
        job_file = self.path(name + ".json")
        with open(job_file, "w") as f:
            json.dump(job, f, indent=1)
        command = ([python, os.path.join(BENCHMARKS_DIR, system.script)] if system.script
                   else [python, "-m", WORKER_MODULE]) + [job_file]
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
    cfg, b, length = bench.bert_config, bench.config.batch_size, bench.config.seq_length
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
             System("HF transformers BertModel", "hf", "hf_bert.py"),
             *FAST_PEERS]
    rows = [bench.run("encoder", s, data=data)
            for s in bench.systems("encoder", peers)]
    return {"title": f"Encoder forward pass, fixed batch {b} × {length}, fp32",
            "items": b, "real_tokens": b * length, "flops": forward_flops(cfg, [length] * b),
            "compare": ["sequence_output", "pooled_output"], "rows": rows}


def _sst2(bench: Bench, split: str, default_limit: int | None):
    examples = read_task("sst2", bench.config.data_dir, split)
    n = bench.config.examples or default_limit or len(examples)
    examples = Examples(examples.texts_a[:n], None, examples.labels[:n], examples.source)
    features, labels, _ = encode(load_tokenizer(bench.model_dir), examples,
                                 bench.config.seq_length, ["0", "1"])
    return examples, features, labels


def e2e_case(bench: Bench) -> dict:
    examples, features, labels = _sst2(bench, "dev", None)
    data = bench.path("e2e-texts.json")
    with open(data, "w") as f:
        json.dump(examples.texts_a, f)
    export = bench.exports()
    lengths = features["input_mask"].sum(axis=1)
    peers = [System(f"TF Hub-style preprocessor + encoder (pad to {bench.config.seq_length})",
                    "tfhub", "tfhub_pipeline.py"),
             System("HF tokenizer + BertModel", "hf", "hf_bert.py"), *FAST_PEERS]
    rows = [bench.run("e2e", s, data=data, export=export)
            for s in bench.systems("e2e", peers)]
    result = {"title": f"End to end, raw text -> pooled_output, {len(examples)} SST-2 dev "
                       f"sentences, batch {bench.config.batch_size}, max length "
                       f"{bench.config.seq_length}",
              "items": len(examples), "real_tokens": int(lengths.sum()),
              "flops": forward_flops(bench.bert_config, lengths), "compare": ["pooled_output"],
              "rows": rows}
    head = classifier_head(bench.model_dir)
    if head is not None:  # a fine-tuned SST-2 model: each row's dev accuracy through its head
        np.savez(bench.path("e2e-head.npz"), labels=labels, **head)
        result["head"] = bench.path("e2e-head.npz")
    return result


def classifier_head(model_dir: str) -> dict | None:
    """The head (`kernel` [H, 2], `bias`) of a model dir fine-tuned for SST-2 over
    `pooled_output` (what every e2e row outputs), else None: a head trained on another
    vector (mean pooling, ...) or for another task would score noise here."""
    task = read_meta(model_dir).get("task") or {}
    if (task.get("type") != "classification" or task.get("pooling") != "pooled_output"
            or task.get("name") != "sst2" or len(task.get("labels", [])) != 2):
        return None
    tensors = read_checkpoint(os.path.join(model_dir, CKPT_NAME))
    return {"kernel": tensors["output_weights"].T, "bias": tensors["output_bias"]}


def latency_case(bench: Bench) -> dict:
    """Requests of 1 and 8 texts, short (about SHORT_TOKENS tokens) and long (the max
    length: consecutive SST-2 dev sentences joined, cut by each system's truncation),
    one at a time through each system's serving path."""
    texts = read_task("sst2", bench.config.data_dir, "dev").texts_a
    tokenizer = load_tokenizer(bench.model_dir)
    import tensorflow as tf
    counts = (tokenizer.tokenize(tf.constant(texts)).merge_dims(-2, -1).row_lengths().numpy()
              + 2)
    target = min(SHORT_TOKENS, bench.config.seq_length)
    short = [t for t, n in zip(texts, counts) if abs(int(n) - target) <= 2]
    long, current, tokens = [], [], 0
    for text, n in zip(texts, counts):
        current.append(text)
        tokens += int(n) - 2
        if tokens + 2 > bench.config.seq_length:
            long.append(" ".join(current))
            current, tokens = [], 0
    pools = {"short": short, "long": long}
    if not short or not long:
        raise ConfigError(f"SST-2 dev has no {'short' if not short else 'long'} texts for "
                          f"seq_length {bench.config.seq_length}")
    n = bench.config.latency_requests + LATENCY_WARMUP
    requests = {f"{kind}-{size}": [[pools[kind][(i * size + j) % len(pools[kind])]
                                    for j in range(size)] for i in range(n)]
                for kind, size in LATENCY_SHAPES}
    data = bench.path("latency-requests.json")
    with open(data, "w") as f:
        json.dump({"warmup": LATENCY_WARMUP, "requests": requests}, f)
    peers = [System("HF tokenizer + BertModel", "hf", "hf_bert.py"), *FAST_PEERS]
    rows = [bench.run("latency", s, data=data, export=bench.exports())
            for s in bench.systems("latency", peers)]
    return {"title": f"Online-serving latency: one request at a time, {len(short)} short "
                     f"({target} ± 2 tokens) and {len(long)} long ({bench.config.seq_length} "
                     f"tokens) SST-2 dev texts, {bench.config.latency_requests} timed requests "
                     f"per shape after {LATENCY_WARMUP} untimed, text in -> pooled_output "
                     "(as a numpy array) out",
            "items": bench.config.latency_requests, "compare": [], "rows": rows}


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
                     f"{bench.config.batch_size}, max length {bench.config.seq_length}, AdamW "
                     f"lr {LEARNING_RATE}",
            "items": len(examples), "real_tokens": int(lengths.sum()),
            "flops": 3 * forward_flops(bench.bert_config, lengths), "compare": [],
            "rows": rows}


def tokenize_case(bench: Bench) -> dict:
    texts = read_task("sst2", bench.config.data_dir, "train").texts_a[:bench.config.examples]
    data = bench.path("tokenize-texts.json")
    with open(data, "w") as f:
        json.dump(texts, f)
    peers = [System("HF tokenizers BertWordPieceTokenizer", "hf", "hf_bert.py")]
    rows = [bench.run("tokenize", s, data=data, chunk=TOKENIZE_CHUNK)
            for s in bench.systems("tokenize", peers)]
    return {"title": f"Tokenisation of {len(texts)} SST-2 training sentences into WordPiece "
                     f"ids, {TOKENIZE_CHUNK} at a time", "items": len(texts),
            "compare": ["ids", "lengths"], "rows": rows}


CASE_FUNCTIONS = {"encoder": encoder_case, "e2e": e2e_case, "latency": latency_case,
                  "train": train_case, "tokenize": tokenize_case}


# ---- figures --------------------------------------------------------------------------------

def compare_outputs(path: str, reference: str, keys) -> dict:
    """Max |diff| over `keys`, and the mean and lowest cosine of the rows of
    `pooled_output` (of the first key where there is none)."""
    with np.load(path) as a, np.load(reference) as b:
        if any(a[k].shape != b[k].shape for k in keys):
            return {"max_abs_diff": float("inf"), "mean_cosine": 0.0, "min_cosine": 0.0}
        diff = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in keys)
        key = "pooled_output" if "pooled_output" in keys else keys[0]
        x = a[key].reshape(len(a[key]), -1).astype(np.float64)
        y = b[key].reshape(len(b[key]), -1).astype(np.float64)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    cosine = (x * y).sum(axis=1) / np.where(norms == 0, 1, norms)
    return {"max_abs_diff": diff, "mean_cosine": round(float(cosine.mean()), 6),
            "min_cosine": round(float(cosine.min()), 6)}


def head_accuracy(outputs: str, head: str) -> float:
    """Accuracy of the model dir's classifier head on a row's pooled outputs."""
    with np.load(outputs) as o, np.load(head) as h:
        logits = o["pooled_output"].astype(np.float64) @ h["kernel"] + h["bias"]
        return round(float((logits.argmax(axis=1) == h["labels"]).mean()), 4)


def percentiles_ms(seconds) -> dict:
    return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1e3, 2)}


def summarise(case: str, result: dict, peak: float) -> dict:
    """Adds medians, spreads, throughput, GFLOP/s, ratios and output differences to the
    rows (latency rows: p50 and p99 per shape, and bert-tf's p50 and p99 over theirs)."""
    rows = result["rows"]
    if case == "latency":
        for row in rows:
            if row["available"]:
                row["shapes"] = {shape: percentiles_ms(seconds)
                                 for shape, seconds in row.pop("latency_s").items()}
        ours = next((r for r in rows if r["peer"] is None and r["available"]
                     and not r["approximate"]), None)
        for row in rows:
            if row["available"] and ours is not None and row is not ours:
                row["bert_tf_over_it"] = {
                    shape: {k: round(ours["shapes"][shape][k] / v, 3) for k, v in values.items()}
                    for shape, values in row["shapes"].items()}
        return result
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
        if result.get("head"):
            row["accuracy"] = head_accuracy(row["outputs"], result["head"])
    ours = {r["xla"]: r for r in rows if r["peer"] is None and r["available"]
            and not r["approximate"]}
    reference = ours.get(False)
    for row in rows:
        if not row["available"] or reference is None:
            continue
        versus = ours.get(row["xla"], reference)
        row["bert_tf_ratio"] = round(versus["throughput"] / row["throughput"], 3)
        if result["compare"] and row is not reference:
            row.update(compare_outputs(row["outputs"], reference["outputs"], result["compare"]))
            if case == "tokenize":
                row["outputs_agree"] = row["max_abs_diff"] == 0
            elif row["approximate"]:  # bfloat16: cosine; int8: its accuracy cost is reported
                row["outputs_agree"] = (row["mean_cosine"] >= MIN_COSINE
                                        if row["precision"] == "bfloat16" else None)
            else:
                row["outputs_agree"] = row["max_abs_diff"] <= TOLERANCE
    fastest = max((r for r in rows if r["available"] and r["peer"] is not None),
                  key=lambda r: r["throughput"], default=None)
    best = max([r for r in rows if r["available"] and r["peer"] is None] or [None],
               key=lambda r: r["throughput"] if r else 0)
    if fastest and best:
        result["best_over_fastest_peer"] = {
            "bert_tf": best["system"], "peer": fastest["system"],
            "ratio": round(best["throughput"] / fastest["throughput"], 3)}
    return result


def _fmt(value, digits=1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _diff_cell(case: str, row: dict) -> str:
    diff = row.get("max_abs_diff")
    if diff is None:
        return ""
    if case == "tokenize":
        return "identical ids" if row["outputs_agree"] else "ids differ"
    if row["approximate"]:
        return f"{diff:.1e}, mean cosine {row['mean_cosine']:.5f}"
    return f"{diff:.1e}" + ("" if row["outputs_agree"] else f" (over {TOLERANCE})")


def _cells(case: str, result: dict, row: dict) -> list[str]:
    """A row of a case's markdown table."""
    width = 6 if case == "latency" else 9 + bool(result.get("head"))
    if not row["available"]:
        return [row["system"], "unavailable: " + row["reason"].replace("|", "\\|")] + \
            [""] * (width - 2)
    if case == "latency":
        return [row["system"]] + [
            f"**{_fmt(row['shapes'][f'{kind}-{size}']['p50_ms'], 2)}** / "
            f"{_fmt(row['shapes'][f'{kind}-{size}']['p99_ms'], 2)}"
            for kind, size in LATENCY_SHAPES] + [_fmt(row["peak_rss_mib"], 0)]
    low, high = result["items"] / row["max_s"], result["items"] / row["min_s"]
    peak = row.get("fraction_of_peak")
    cells = [row["system"], f"**{_fmt(row['throughput'])}**", f"{_fmt(low)}–{_fmt(high)}",
             _fmt(row.get("bert_tf_ratio"), 2), _fmt(row.get("gflop_per_s")),
             "" if peak is None else f"{100 * peak:.0f} %",
             _fmt(row.get("tokens_run_per_real"), 2), _fmt(row["peak_rss_mib"], 0),
             _diff_cell(case, row)]
    if result.get("head"):
        cells.append(_fmt(row.get("accuracy"), 4))
    return cells


def _table(case: str, result: dict) -> list[str]:
    if case == "latency":
        shapes = [f"{kind} × {size}: p50 / p99 ms" for kind, size in LATENCY_SHAPES]
        lines = ["| system | " + " | ".join(shapes) + " | peak RSS MiB |",
                 "|---" * (len(shapes) + 2) + "|"]
    else:
        head = " dev accuracy (its head) |" if result.get("head") else ""
        lines = [f"| system | {UNITS[case]} | min–max | bert-tf ÷ it | GFLOP/s | of peak | "
                 f"padded ÷ real | peak RSS MiB | max abs diff |{head}",
                 "|---" * (10 if head else 9) + "|"]
    lines += ["| " + " | ".join(_cells(case, result, row)) + " |" for row in result["rows"]]
    if case == "latency":
        for row in result["rows"]:
            if row.get("bert_tf_over_it"):
                lines.append("")
                lines.append(f"bert-tf ÷ {row['system']} (p50, p99; below 1: bert-tf answers "
                             "sooner): " + "; ".join(
                                 f"{shape} {v['p50_ms']:.2f}, {v['p99_ms']:.2f}"
                                 for shape, v in row["bert_tf_over_it"].items()))
    best = result.get("best_over_fastest_peer")
    if best:
        lines += ["", f"bert-tf's fastest row ({best['bert_tf']}) ÷ the fastest peer "
                      f"({best['peer']}): **{best['ratio']:.2f}**"]
    return lines


def markdown(report: dict) -> str:
    m, c = report["machine"], report["config"]
    lines = ["# bert-tf bench", "", f"`{report['command']}`", "",
             f"Machine: {m['cpu']} (flags: {m.get('cpu_flags') or 'unknown'}), "
             f"{m['cpu_count']} CPUs, "
             + (f"GPUs: {', '.join(m['gpus'])}" if m["gpus"] else "no GPU")
             + f"; bfloat16: {m.get('bfloat16', 'unknown')}"
             + f"; TensorFlow {m['tensorflow']}, Keras {m['keras']}, TF_ENABLE_ONEDNN_OPTS="
             f"{m.get('tf_enable_onednn_opts') or 'unset'} (for every TensorFlow worker). "
             f"Model: {report['model']} "
             f"({c['num_hidden_layers']} layers, hidden {c['hidden_size']}, "
             f"{c['num_attention_heads']} heads, intermediate {c['intermediate_size']}).",
             f"fp32 matmul peak: {report['matmul_peak']['gflop_per_s']} GFLOP/s "
             f"({report['matmul_peak']['how']}).",
             f"Each row: one warm-up run, then {report['settings']['repeats']} timed run(s) in a "
             "fresh process; median (min–max). bert-tf ÷ it > 1: bert-tf is faster. GFLOP/s "
             "count real tokens only; padded ÷ real: positions computed per real token. "
             f"Outputs agree within {TOLERANCE} (bfloat16 and int8 rows: max |diff| and mean "
             "cosine of pooled outputs, and the dev accuracy where the model has a "
             "classifier head).", ""]
    for case, result in report["cases"].items():
        lines += [f"## {case}: {result['title']}", ""] + _table(case, result)
        lines += ["", "Systems: " + "; ".join(f"{r['system']}: {r['detail']}"
                                              for r in result["rows"] if r["available"]), ""]
    return "\n".join(lines)


def bench(config: BenchConfig) -> dict:
    """Runs every case of `config.suite`, a worker per row; writes `OUT/bench.json` and
    `OUT/bench.md` and returns the former's dict."""
    import tensorflow as tf
    # The workers measure on the GPU; this process only prepares their inputs. Without
    # memory growth its TensorFlow would reserve nearly all of the GPU's memory, away
    # from them. (Possible only before TensorFlow has started its devices.)
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass
    tf.config.experimental.enable_tensor_float_32_execution(False)
    runner = Bench(config)
    report = {"command": command_line(config), "settings": config.settings(),
              "machine": machine(), "model": runner.model_dir,
              "config": dataclasses.asdict(runner.bert_config), "matmul_peak": matmul_peak(),
              "tolerance": TOLERANCE, "cases": {}}
    for case in runner.cases:
        result = CASE_FUNCTIONS[case](runner)
        report["cases"][case] = summarise(case, result, report["matmul_peak"]["gflop_per_s"])
    with open(os.path.join(runner.out, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(runner.out, "bench.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return report


# ---- bert-tf's own workers ------------------------------------------------------------------
# `python -m bert_tf.experiments.bench JOB.json` (WORKER_MODULE): one row of bert-tf,
# measured in this fresh process.

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
    encoder = with_dtype_policy(load_encoder(job["model"]), PRECISIONS[job["precision"]])
    inputs = {k: tf.constant(v) for k, v in np.load(job["data"]).items()}
    call = tf.function(lambda x: as_float32(encoder(x, training=False)), jit_compile=job["xla"])

    def run():
        out = call(inputs)
        return {"sequence_output": out["sequence_output"].numpy(),
                "pooled_output": out["pooled_output"].numpy()}
    times, outputs = _timed(run, job["repeats"])
    np.savez(job["outputs"], **outputs)
    _emit("bert-tf encoder (Keras functional model) in a tf.function"
          + (", XLA" if job["xla"] else "")
          + (", Keras mixed_bfloat16 policy" if job["precision"] == "bfloat16" else ""), times)


def _serving_signature(job, tf):
    """The serving export of the job's precision (version 1 float32, 2 bfloat16)."""
    version = "2" if job["precision"] == "bfloat16" else "1"
    serve = tf.saved_model.load(os.path.join(job["export"], "serving", version))
    return serve.signatures["serving_default"]


SERVING_DETAIL = ("bert-tf serving SavedModel (in-graph tokenizer + encoder, each batch padded "
                  "to its longest, dense layers on the real tokens only{})")


def _e2e_worker(job, tf):
    serve = _serving_signature(job, tf)
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
    _emit(SERVING_DETAIL.format(", export --precision bfloat16"
                                if job["precision"] == "bfloat16" else ""),
          times, tokens_per_run=tokens)


def _latency_worker(job, tf):
    serve = _serving_signature(job, tf)
    with open(job["data"]) as f:
        data = json.load(f)
    latency = {}
    for shape, requests in data["requests"].items():
        seconds = []
        for texts in requests:  # from Python strings, as a client has them
            start = time.perf_counter()
            serve(text=tf.constant(texts))["pooled_output"].numpy()
            seconds.append(time.perf_counter() - start)
        latency[shape] = seconds[data["warmup"]:]
    _emit(SERVING_DETAIL.format(", export --precision bfloat16"
                                if job["precision"] == "bfloat16" else "")
          + ", its serving_default signature called in process", [], latency_s=latency)


def _train_worker(job, tf):
    features = dict(np.load(job["data"]))
    labels = features.pop("labels")
    ds = make_dataset(features, labels, job["batch_size"], training=True)
    steps, tokens = 0, 0
    for x, _ in ds:
        steps += 1
        tokens += int(np.prod(x["input_mask"].shape))
    total = steps * (job["repeats"] + 1)
    # As `bert_tf.training.finetune` builds and compiles it (loss: cross-entropy on the
    # logits; accuracy; no XLA).
    encoder = load_encoder(job["model"], skip_padding=True)
    model = BertClassifier(encoder, 2, dropout=encoder.bert_config.hidden_dropout_prob)
    model.compile(optimizer=bert_optimizer(job["learning_rate"], total, int(0.1 * total)),
                  jit_compile=False)
    times, _ = _timed(lambda: model.fit(ds, verbose=0), job["repeats"])
    _emit("bert-tf classifier as `bert-tf finetune` trains it (Keras fit, fused AdamW, "
          "length-bucketed batches, dense layers on the real tokens only)", times,
          tokens_per_run=tokens)


def _tokenize_worker(job, tf):
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
    {"encoder": _encoder_worker, "e2e": _e2e_worker, "latency": _latency_worker,
     "train": _train_worker, "tokenize": _tokenize_worker}[job["case"]](job, tf)


if __name__ == "__main__":
    run_worker(sys.argv[1])
