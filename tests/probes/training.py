"""Probes: training (see tests/probes/__init__.py for the form of a case).

The run dir of `finetune`, `squad` and `pretrain` left broken (a truncated
`backup/state.npz`, a `run.json` that is not JSON), seeds outside NumPy's range,
`--strategy tpu` with no TPU named, and `--task tsv`'s flags given to a GLUE task.
Before 2026-12-07 (commit 1691735) all but the last ended in tracebacks (BadZipFile
after the model was built, JSONDecodeError, "Seed must be between 0 and 2**32 - 1",
"Please provide a TPU Name to connect to.") and `--train` was silently ignored."""
import io

import numpy as np

from tests.conftest import DATA_DIR


def _finetune(fx, tmp, *extra, task="sst2"):
    return ["finetune", "--task", task, "--model", fx.model, "--data-dir", DATA_DIR, "--out",
            str(tmp / "out"), "--train-limit", "8", "--max-seq-length", "16", "--no-export",
            "--no-export", "--quiet", *extra]


def _squad(fx, tmp, *extra):
    return ["squad", "--model", fx.model, "--train", fx.squad, "--predict", fx.squad, "--out",
            str(tmp / "out"), "--max-seq-length", "64", "--max-query-length", "16",
            "--doc-stride", "32", "--no-export", "--quiet", *extra]


def _pretrain(fx, tmp, *extra):
    return ["pretrain", "--init", fx.model, "--train", fx.records, "--out", str(tmp / "out"),
            "--steps", "2", "--batch-size", "2", "--quiet", *extra]


JOBS = {"finetune": _finetune, "squad": _squad, "pretrain": _pretrain}


def _run_json(argv) -> str:
    """The run.json that `bert-tf ARGV` writes (its settings, as the command reads them)."""
    import json
    from bert_tf.cli import build_parser
    from bert_tf.cli.training import config_from_args
    from bert_tf.training.finetune import FinetuneConfig
    from bert_tf.training.pretrain import PretrainConfig
    from bert_tf.training.squad import SquadConfig
    config = {"finetune": FinetuneConfig, "squad": SquadConfig,
              "pretrain": PretrainConfig}[argv[0]]
    return json.dumps(config_from_args(config, build_parser().parse_args(argv)).run_args())


def _truncated_state(job):
    """A killed run of `job` whose checkpoint was cut in half (a full disk, a copy cut
    short): the rerun must refuse it before building the model."""
    def build(fx, tmp):
        argv = JOBS[job](fx, tmp)
        backup = tmp / "out" / "backup"
        backup.mkdir(parents=True)
        (tmp / "out" / "run.json").write_text(_run_json(argv))
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array('{"epoch": 0, "step": 2}'), v0=np.zeros(1000))
        data = buffer.getvalue()
        (backup / "state.npz").write_bytes(data[:len(data) // 2])
        return argv
    return build


def _corrupt_run_json(job, *extra):
    def build(fx, tmp):
        (tmp / "out").mkdir()
        (tmp / "out" / "run.json").write_text('{"command": "%s", "seed": ' % job)
        return JOBS[job](fx, tmp, *extra)
    return build


def _state_file(fx, tmp):
    return str(tmp / "out" / "backup" / "state.npz")


def _run_file(fx, tmp):
    return str(tmp / "out" / "run.json")


PROBES = {}
for _job in JOBS:
    PROBES[f"training-truncated-state-{_job}"] = (_truncated_state(_job),
                                                   (_state_file, "remove it"))
    PROBES[f"training-corrupt-run.json-{_job}"] = (_corrupt_run_json(_job),
                                                    (_run_file, "choose another output folder"))
    PROBES[f"training-seed-negative-{_job}"] = (
        lambda fx, tmp, job=_job: JOBS[job](fx, tmp, "--seed", "-1"), ("--seed", "-1"))
    PROBES[f"training-strategy-tpu-no-address-{_job}"] = (
        lambda fx, tmp, job=_job: JOBS[job](fx, tmp, "--strategy", "tpu"), ("--tpu",))
PROBES.update({
    "training-corrupt-run.json-finetune --overwrite": (
        _corrupt_run_json("finetune", "--overwrite"), (_run_file,)),
    "training-seed-2**40-finetune": (
        lambda fx, tmp: _finetune(fx, tmp, "--seed", str(2**40)), ("--seed", str(2**40))),
    "training-seed-2**32-pretrain": (
        lambda fx, tmp: _pretrain(fx, tmp, "--seed", str(2**32)), ("--seed", str(2**32))),
    "training-train-with-task-sst2": (
        lambda fx, tmp: _finetune(fx, tmp, "--train", fx.tsv), ("--train", "--task tsv")),
    "training-label-column-with-task-mrpc": (
        lambda fx, tmp: _finetune(fx, tmp, "--label-column", "label", task="mrpc"),
        ("--label-column", "--task tsv")),
})
del _job
