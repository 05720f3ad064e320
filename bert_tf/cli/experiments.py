"""The experiments' flags: `pooling-report` and `bench`. Each flag is the field of the
same name of the job's config dataclass (`--batch-size` is `batch_size`); comma lists
(`--tasks sst2,mrpc`) become lists here. The jobs (and TensorFlow) are imported when one
runs."""
from __future__ import annotations

import argparse
import ast
import os
import shlex
import sys

from bert_tf.choices import BENCH_CASES, BENCH_PEERS, BENCH_TRAIN_EXAMPLES, KERAS_HUB_INSTALL, \
    POOLED_OUTPUT_REINIT, POOLINGS
from bert_tf.cli.outputs import folder_outputs, print_outputs
from bert_tf.cli.types import positive_float, positive_int
from bert_tf.config import PRESETS


def comma_list(value: str) -> list[str]:
    """`"a, b,,c"` -> `["a", "b", "c"]`; an empty string is an empty list."""
    return [x.strip() for x in value.split(",") if x.strip()]


# ---- pooling-report -------------------------------------------------------------------------

def add_pooling_report_parser(sub) -> None:
    p = sub.add_parser("pooling-report", help="compare pooling strategies per model and task "
                       "(frozen-encoder probes, optionally fine-tunes)")
    p.add_argument("--model", required=True, action="append",
                   help="model dir (repeat for several models; with --finetune each later "
                   "model's heads are compared with the first model's, paired by seed)")
    p.add_argument("--tasks", default="sst2,mrpc", help="comma list of sst2, mrpc")
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"),
                   help="folder with SST-2/ and MRPC/ (default $BERT_TF_DATA or ../shared/data)")
    p.add_argument("--out", required=True, help="report dir")
    p.add_argument("--strategies", default=",".join(POOLINGS),
                   help=f"comma list (default all: {','.join(POOLINGS)}); with --finetune "
                   f"also {POOLED_OUTPUT_REINIT}: pooled_output with the pooler re-initialised "
                   "(finetune --reinit-pooler)")
    p.add_argument("--finetune", action="store_true",
                   help="also fine-tune the whole model with each pooling head")
    p.add_argument("--train-limit", type=positive_int, help="use the first N training examples")
    p.add_argument("--dev-limit", type=positive_int, help="probe cells only: evaluate on the "
                   "first N dev examples (quick checks; fine-tune cells always use the whole "
                   "dev set)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the heads' initialisation and the data order")
    p.add_argument("--seeds", type=positive_int, default=1,
                   help="fine-tune cells: run each for N seeds (--seed, --seed + 1, ...); the "
                   "report gives means, 95%% intervals and paired differences from pooled_output")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="batch size of the frozen encoder and of fine-tuning")
    p.add_argument("--max-seq-length", type=positive_int, default=128,
                   help="longest input in tokens; longer texts are trimmed")
    p.add_argument("--epochs", type=positive_int, default=1, help="fine-tune cells: epochs")
    p.add_argument("--learning-rate", type=positive_float, default=5e-5,
                   help="fine-tune cells: peak learning rate")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_pooling_report)


def pooling_report_config(args):
    """The `PoolingReportConfig` of the parsed flags."""
    from bert_tf.experiments.pooling_report import PoolingReportConfig
    return PoolingReportConfig(
        models=args.model, out=args.out, tasks=comma_list(args.tasks), data_dir=args.data_dir,
        strategies=comma_list(args.strategies), finetune=args.finetune,
        train_limit=args.train_limit, dev_limit=args.dev_limit, seed=args.seed, seeds=args.seeds,
        batch_size=args.batch_size, max_seq_length=args.max_seq_length, epochs=args.epochs,
        learning_rate=args.learning_rate, quiet=args.quiet)


def run_pooling_report(args) -> None:
    from bert_tf.experiments.pooling_report import pooling_report
    # The report records the command as typed when this is `bert-tf pooling-report ...`;
    # otherwise (main(argv) called from Python) the equivalent one.
    typed = "pooling-report" in sys.argv[1:3]   # also after --verbose
    pooling_report(pooling_report_config(args),
                   command=shlex.join(["bert-tf", *sys.argv[1:]]) if typed else None)
    print_outputs(folder_outputs(args.out, kind="report dir"))


# ---- bench ----------------------------------------------------------------------------------

def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="bert-tf beside Model Garden, keras-hub, HF, ONNX Runtime "
                       "and OpenVINO, case by case",
                       description=module_docstring("bert_tf.experiments.bench"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for bench.json, bench.md and work/")
    p.add_argument("--suite", default=",".join(BENCH_CASES),
                   help=f"comma list of {', '.join(BENCH_CASES)}")
    p.add_argument("--peers", default=",".join(BENCH_PEERS),
                   help=f"comma list of {', '.join(BENCH_PEERS)} (empty: bert-tf alone)")
    p.add_argument("--model", default="saved_models/minilm",
                   help="model dir whose weights every system loads")
    p.add_argument("--config", choices=sorted(PRESETS),
                   help="instead of --model: a randomly initialised model of this size")
    p.add_argument("--vocab", help="vocab.txt for --config (default: DATA_DIR/bert_vocab/"
                   "uncased/vocab.txt)")
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"),
                   help="folder with SST-2/ (default $BERT_TF_DATA or ../shared/data)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per batch")
    p.add_argument("--seq-length", type=positive_int, default=128,
                   help="encoder: the batch's length; e2e, train: the max length")
    p.add_argument("--examples", type=positive_int, help="the first N texts of each case's data "
                   f"(default: e2e all of SST-2 dev, train {BENCH_TRAIN_EXAMPLES}, tokenize all "
                   "of SST-2 train)")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timed runs per row, after a warm-up")
    p.add_argument("--hf-python", default=sys.executable,
                   help="python of an environment with torch, transformers and tokenizers "
                   "(benchmarks/requirements-hf.txt)")
    p.add_argument("--keras-hub-path", default=os.path.join(sys.prefix, "keras-hub"),
                   help=f"folder keras-hub was installed into ({KERAS_HUB_INSTALL})")
    p.add_argument("--st-python", default=sys.executable,
                   help="python of an environment with sentence-transformers and its ONNX "
                   "Runtime and OpenVINO backends (benchmarks/requirements-st.txt)")
    p.add_argument("--latency-requests", type=positive_int, default=500,
                   help="latency case: timed requests per shape (after 20 untimed)")
    p.set_defaults(func=run_bench)


def bench_config(args):
    """The `BenchConfig` of the parsed flags."""
    from bert_tf.experiments.bench import BenchConfig
    return BenchConfig(
        out=args.out, suite=comma_list(args.suite), peers=comma_list(args.peers),
        model=args.model, config=args.config, vocab=args.vocab, data_dir=args.data_dir,
        batch_size=args.batch_size, seq_length=args.seq_length, examples=args.examples,
        repeats=args.repeats, hf_python=args.hf_python, keras_hub_path=args.keras_hub_path,
        st_python=args.st_python, latency_requests=args.latency_requests)


def run_bench(args) -> None:
    from bert_tf.experiments.bench import bench
    bench(bench_config(args))
    print_outputs(folder_outputs(args.out, kind="report dir"))


def module_docstring(name: str) -> str:
    """The docstring of the module `name` of this package, read from its source without
    importing it (`bert_tf.experiments.bench` imports TensorFlow)."""
    parts = name.split(".")[1:]
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *parts)
    with open(path + ".py", encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read()))
