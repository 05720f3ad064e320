"""The training commands' flags: `finetune`, `pretrain` and `squad`. Each flag is a
field of the job's config dataclass (`--learning-rate` is `learning_rate`), so the
namespace becomes the config by name. The jobs (and TensorFlow) are imported when one
runs."""
from __future__ import annotations

import dataclasses
import json
import os

from bert_tf.choices import DEFAULT_LORA_TARGETS, LORA_TARGETS, MIXED_PRECISIONS, POOLINGS, \
    PROBLEMS, SQUAD_MICRO_BATCHES, STRATEGIES, TASKS
from bert_tf.cli.outputs import folder_outputs, print_outputs
from bert_tf.cli.types import non_negative_int, positive_float, positive_int, proportion


def config_from_args(cls, args):
    """The dataclass `cls` with each field taken from the namespace's flag of that name."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if hasattr(args, f.name)})


def add_run_arguments(p, micro_batches: int = 1) -> None:
    """The flags every training command shares (`RunOptions`): where and how it runs
    (`micro_batches`: the command's default for `--gradient-accumulation-steps`, which
    `--micro-batches` also names; see `bert_tf.training.micro_batch`)."""
    p.add_argument("--strategy", default="auto", choices=STRATEGIES,
                   help="where to train: auto is a TPU if --tpu is given, else all GPUs, "
                   "else the CPU")
    p.add_argument("--tpu", help="TPU address for --strategy tpu/auto")
    p.add_argument("--cpu-replicas", type=positive_int, default=1,
                   help="split the CPU into N logical devices (to try mirrored without GPUs)")
    p.add_argument("--mixed-precision", default="none", choices=MIXED_PRECISIONS,
                   help="Keras' mixed policy: compute in this 16-bit type, variables in float32")
    p.add_argument("--checkpoint-every", type=positive_int, default=200,
                   help="steps between resumable checkpoints")
    p.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    p.add_argument("--gradient-accumulation-steps", "--micro-batches", dest="micro_batches",
                   type=positive_int, default=micro_batches, metavar="N",
                   help="compute each --batch-size batch in N slices, one after another, and "
                   "apply their summed gradients once: the same optimizer and learning-rate "
                   "step, about 1/N of the activation memory (--micro-batches: the same flag)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished or other run of this command (only its files)")
    p.add_argument("--quiet", action="store_true", help="no progress bars: Keras' line per epoch and the start and end lines of the "
                   "dev evaluation and the exports only")


def print_result(metrics: dict, out: str, kind: str = "run dir") -> None:
    """A training job's last lines: its metrics as JSON (the history and the exports'
    paths left out), then where each output went (`kind`: what `out` is)."""
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("history", "exports")},
                     indent=1))
    print_outputs(folder_outputs(out, metrics.get("exports"), kind))


def run_finetune(args) -> None:
    from bert_tf.training.finetune import FinetuneConfig, finetune
    print_result(finetune(config_from_args(FinetuneConfig, args)), args.out)


def run_pretrain(args) -> None:
    from bert_tf.training.pretrain import PretrainConfig, pretrain
    print_result(pretrain(config_from_args(PretrainConfig, args)), args.out, "model dir")


def run_squad(args) -> None:
    from bert_tf.training.squad import SquadConfig, squad
    print_result(squad(config_from_args(SquadConfig, args)), args.out)


def add_finetune_parser(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a classifier with Keras fit")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="SST-2 or MRPC from --data-dir, or your own TSV files (--train, --dev); "
                   "named entities: your own CoNLL files (ner: --train, --dev) or WNUT-17 "
                   "from --data-dir")
    p.add_argument("--model", required=True,
                   help="pretrained model dir or preset name (bert-tf presets)")
    p.add_argument("--data-dir", default=os.environ.get("BERT_TF_DATA", "../shared/data"),
                   help="folder with SST-2/, MRPC/ and WNUT-17/ (default $BERT_TF_DATA or "
                   "../shared/data)")
    p.add_argument("--out", required=True, help="run dir")
    p.add_argument("--epochs", type=positive_int,
                   help="default per task: sst2 1, mrpc 5, tsv 3, ner 3, wnut17 3 "
                   "(BENCHMARKS.md)")
    p.add_argument("--learning-rate", type=positive_float,
                   help="peak learning rate; default per task: sst2 1e-4, others 5e-5")
    p.add_argument("--batch-size", type=positive_int, default=32, help="global batch size")
    p.add_argument("--max-seq-length", type=positive_int, default=128,
                   help="longest input in tokens; longer texts are trimmed")
    p.add_argument("--warmup-proportion", type=proportion, default=0.1,
                   help="share of the steps over which the learning rate rises to its peak")
    p.add_argument("--train-limit", type=positive_int, help="use the first N training examples")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the head's initialisation, dropout and the data order")
    p.add_argument("--pooling", default="pooled_output", choices=POOLINGS,
                   help="how the head turns the token vectors into one: the pooler's output, "
                   "[CLS]'s vector, mean, max, sum / sqrt(length), or learned attention")
    p.add_argument("--reinit-pooler", action="store_true",
                   help="re-initialise the pooler's dense layer (drop its NSP-trained weights)")
    p.add_argument("--train", help="--task tsv: training TSV (with a header row); --task ner: "
                   "training CoNLL file (a word and its tags per line, blank between sentences)")
    p.add_argument("--dev", help="--task tsv: dev TSV; --task ner: dev CoNLL file")
    p.add_argument("--tag-column", type=int, help="--task ner / wnut17: the CoNLL files' tag "
                   "column, from 1 (0 is the word) or from the end below 0 (default: the last)")
    p.add_argument("--text-column", help="--task tsv: column of the text")
    p.add_argument("--text-b-column", help="--task tsv: column of the second text (pairs)")
    p.add_argument("--label-column", help="--task tsv: column of the label (read as strings; "
                   "for --problem multi_label comma-separated labels, for regression numbers)")
    p.add_argument("--problem", default="single_label", choices=PROBLEMS,
                   help="--task tsv: one label per text, any number of labels (sigmoid per "
                   "label), or regression (default single_label)")
    p.add_argument("--threshold", type=proportion, default=0.5,
                   help="--problem multi_label: probability over which a label is predicted, "
                   "recorded in the model dir for the export (default 0.5)")
    p.add_argument("--lora-rank", type=positive_int, metavar="R",
                   help="train LoRA adapters of this rank (and the head) instead of every "
                   "weight; the model dir and exports hold the merged weights")
    p.add_argument("--lora-targets", nargs="+", choices=LORA_TARGETS, metavar="LAYER",
                   help="with --lora-rank: the dense layers of each block to adapt, among "
                   f"{', '.join(LORA_TARGETS)} (default {' '.join(DEFAULT_LORA_TARGETS)})")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel exports")
    add_run_arguments(p)
    p.set_defaults(func=run_finetune)


def add_pretrain_parser(sub) -> None:
    p = sub.add_parser("pretrain", help="masked-LM + next-sentence pre-training")
    p.add_argument("--config", help="preset (tiny, mini, small, medium, base, large) or a "
                   "CONFIG.json, for a model drawn at random")
    p.add_argument("--init", help="model dir to start from instead of --config")
    p.add_argument("--vocab", help="vocab.txt (default with --init: the model's own)")
    p.add_argument("--cased", action="store_true", help="with --config: do not lower-case")
    p.add_argument("--train", required=True, help="TFRecord file pattern")
    p.add_argument("--eval", help="TFRecord file pattern, evaluated after every epoch")
    p.add_argument("--out", required=True, help="model dir to write (also holds the run state)")
    p.add_argument("--steps", type=positive_int, default=10_000, help="training steps in all")
    p.add_argument("--steps-per-epoch", type=positive_int, default=1000,
                   help="steps between evaluations and log lines")
    p.add_argument("--batch-size", type=positive_int, default=128, help="global batch size")
    p.add_argument("--learning-rate", type=positive_float, default=1e-4,
                   help="peak learning rate")
    p.add_argument("--warmup-steps", type=non_negative_int, default=1000,
                   help="steps over which the learning rate rises to its peak")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "lamb"),
                   help="AdamW with weight decay, or LAMB (large batches)")
    p.add_argument("--dynamic-masking", action="store_true",
                   help="draw new masks every epoch in tf.data (the records' masks are undone)")
    p.add_argument("--masked-lm-prob", type=proportion, default=0.15,
                   help="for --dynamic-masking: share of the tokens that are masked")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initialisation, dropout and the data order")
    p.add_argument("--no-nsp", action="store_true",
                   help="masked-LM only: no next-sentence head or loss (the records' NSP labels "
                   "are ignored); the pooler stays at its initialisation, untrained")
    add_run_arguments(p)
    p.set_defaults(func=run_pretrain)


def add_squad_parser(sub) -> None:
    p = sub.add_parser("squad", help="SQuAD v1.1 question answering: fine-tune, predict, score")
    p.add_argument("--model", required=True,
                   help="pretrained model dir or preset name (bert-tf presets)")
    p.add_argument("--train", required=True, help="SQuAD v1.1 JSON to train on")
    p.add_argument("--predict", required=True, help="SQuAD v1.1 JSON to predict and score")
    p.add_argument("--out", required=True, help="run dir")
    p.add_argument("--train-articles", help="A:B, the articles of --train to use")
    p.add_argument("--predict-articles", help="C:D, the articles of --predict to use")
    p.add_argument("--max-seq-length", type=positive_int, default=384,
                   help="tokens per window of question and context")
    p.add_argument("--doc-stride", type=positive_int, default=128,
                   help="tokens between the starts of a long context's windows")
    p.add_argument("--max-query-length", type=positive_int, default=64,
                   help="longest question in tokens; longer ones are trimmed")
    p.add_argument("--n-best-size", type=positive_int, default=20,
                   help="start and end candidates per window")
    p.add_argument("--max-answer-length", type=positive_int, default=30,
                   help="longest answer in tokens")
    p.add_argument("--epochs", type=positive_int, default=2, help="passes over --train")
    p.add_argument("--learning-rate", type=positive_float, default=5e-5,
                   help="peak learning rate")
    p.add_argument("--batch-size", type=positive_int, default=32, help="global batch size")
    p.add_argument("--warmup-proportion", type=proportion, default=0.1,
                   help="share of the steps over which the learning rate rises to its peak")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the head's initialisation, dropout and the data order")
    p.add_argument("--no-export", action="store_true", help="skip the SavedModel exports")
    add_run_arguments(p, micro_batches=SQUAD_MICRO_BATCHES)
    p.set_defaults(func=run_squad)
