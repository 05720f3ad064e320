"""What each command reads and writes, for `bert_tf.io.atomic.check_distinct`: before
any work, `bert-tf` refuses a command whose output is another of its outputs or one
of its inputs (`--out X --eval-out X`, `--out` a hard link to the input), or whose
output folder holds one of its inputs (`finetune --model RUN/model --out RUN`)."""
from __future__ import annotations

import glob
import os
import sys


def _files(patterns, commas: bool = False) -> list[str]:
    """The local files of input patterns (globs expanded; with `commas`, comma lists
    split); stdin (`-`) and remote paths (`gs://...`) are left out."""
    found = []
    for pattern in patterns or ():
        for item in pattern.split(",") if commas else [pattern]:
            if not item or item == "-" or "://" in item:
                continue
            found += sorted(glob.glob(item)) if glob.has_magic(item) else [item]
    return found


def _inputs(flag, paths) -> list[tuple[str, str]]:
    return [(flag, path) for path in paths if path]


def _run(args, *inputs):
    """A command writing the run (or report) dir `--out`."""
    return [("--out", args.out, "folder")], [i for group in inputs for i in group]


def command_paths(args) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(outputs, inputs) of the parsed command `args`, as `check_distinct` takes them."""
    command = args.command
    if command == "convert":
        return [("--out", args.out, "folder")], [("src", args.src)]
    if command == "embed":
        kind = "prefix" if args.runner else "file"
        return [("--output", args.output, kind)], \
            _inputs("input", _files(args.input)) + [("--model", args.model)]
    if command == "predict":
        return [("--output", args.output, "prefix")], \
            _inputs("input", _files(args.inputs)) + [("--export", args.export)]
    if command == "export":
        from bert_tf.export.savedmodel import EXPORTS
        return [("--out", args.out, "file")] + [
            ("--out", os.path.join(args.out, name), "folder") for name in EXPORTS], \
            [("--model", args.model)]
    if command == "prepare-text":
        return [("--out", args.out, "file")] + _outputs("--eval-out", [args.eval_out]), \
            _inputs("input", _files(args.input))
    if command == "create-pretraining-data":
        from bert_tf.data.pretraining import shard_names
        return _outputs("--out", shard_names(args.out, args.shards)), \
            _inputs("--input", _files(args.input, commas=True)) + [("--vocab", args.vocab)]
    if command == "finetune":
        data_dir = [] if args.task == "tsv" else [args.data_dir]
        return _run(args, [("--model", args.model)], _inputs("--train", [args.train]),
                    _inputs("--dev", [args.dev]), _inputs("--data-dir", data_dir))
    if command == "pretrain":
        config = [args.config] if args.config and os.path.isfile(args.config) else []
        return _run(args, _inputs("--init", [args.init]), _inputs("--config", config),
                    _inputs("--vocab", [args.vocab]), _inputs("--train", _files([args.train])),
                    _inputs("--eval", _files([args.eval])))
    if command == "squad":
        return _run(args, [("--model", args.model), ("--train", args.train),
                           ("--predict", args.predict)])
    if command == "pooling-report":
        return _run(args, _inputs("--model", args.model), [("--data-dir", args.data_dir)])
    if command == "bench":
        return _run(args, _inputs("--model", [None if args.config else args.model]),
                    _inputs("--vocab", [args.vocab]))
    return [], []


def _outputs(flag, paths) -> list[tuple[str, str, str]]:
    return [(flag, path, "file") for path in paths if path]


# Where each command reads a model dir (the namespace's attribute): a preset's name
# will do there too.
MODEL_ARGUMENTS = {"convert": "src", "info": "model_dir", "embed": "model", "export": "model",
                   "finetune": "model", "squad": "model", "pooling-report": "model",
                   "bench": "model"}


def resolve_models(args) -> None:
    """Replaces a preset's name where the command reads a model dir with the preset's
    cached model dir (`bert_tf.presets`; converted there first, once, with a line on
    stderr). Paths stay as they are."""
    from bert_tf.presets import resolve_model_dir
    name = MODEL_ARGUMENTS.get(args.command)
    if name is None or (args.command == "convert" and not args.to):
        return

    def resolve(value):
        return value and resolve_model_dir(value, lambda line: print(line, file=sys.stderr))

    value = getattr(args, name)
    setattr(args, name, [resolve(v) for v in value] if isinstance(value, list) else resolve(value))
