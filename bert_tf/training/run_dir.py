"""`RunDir`: a run directory that a repeated job resumes and a different one may not touch."""
from __future__ import annotations

import json
import os
import shutil

from bert_tf.errors import OutputError
from bert_tf.export import EXPORTS, export_model
from bert_tf.io.atomic import atomic_file
from bert_tf.models import load_model
from bert_tf.training.progress import LongStep
from bert_tf.training.resume import check_state
from bert_tf.training.strategy import chief_from_tf_config, policy_scope

# What every run dir holds besides the job's own outputs.
RUN_FILES = ("run.json", "metrics.json", "export", "backup", "logs")


class RunDir:
    """A run directory that a repeated command resumes and a different one may not touch.

    `run.json` records the command's arguments (`args`, whose `command` names the
    command, e.g. `finetune`); `metrics.json` marks a finished run. `--overwrite`
    replaces only a run of the same command, and in it only what the command writes
    (`RUN_FILES` and the job's `outputs`): other files in the folder stay. Under
    `--strategy multi_worker` only the chief owns the dir (`chief`, read from
    `TF_CONFIG`); another worker keeps its checkpoints in `work_dir` =
    `RUN_DIR/.worker-N` and removes it when done. Nothing is written before `start`:

        run = RunDir(config.out, config.run_args(), config.overwrite, config.multi_worker,
                     outputs=OUTPUTS)
        ...  # check the inputs
        state = run.check()
        strategy = prepare_training(config, seed=config.seed)
        run.start(state)  # run.json written, run.work_dir exists
    """

    def __init__(self, path: str, args: dict, overwrite: bool = False,
                 multi_worker: bool = False, outputs: tuple = ()):
        self.path = os.path.abspath(path)
        self.args = args
        self.command = args["command"]
        self.overwrite = overwrite
        self.outputs = RUN_FILES + tuple(outputs)
        self.chief, task_id = chief_from_tf_config() if multi_worker else (True, 0)
        self.work_dir = self.path if self.chief else self.file(f".worker-{task_id}")

    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    @property
    def backup(self) -> str:
        """The folder of the resumable checkpoint (`bert_tf.training.resume`)."""
        return os.path.join(self.work_dir, "backup")

    def check(self) -> str | None:
        """`new`, `resume`, or `overwrite` (None on a worker that is not the chief);
        raises if the dir is not ours to use."""
        if not self.chief:
            return None
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise FileExistsError(f"{self.path} is a file, not a folder for a run; choose "
                                  "another output folder")
        if not os.path.exists(self.path) or not os.listdir(self.path):
            return "new"
        previous = self.previous_args()
        if self.overwrite:
            return "overwrite"
        if previous != self.args:
            changed = sorted(k for k in set(previous) | set(self.args)
                             if previous.get(k) != self.args.get(k))
            raise FileExistsError(f"{self.path} holds a run of a different command "
                                  f"(differs in {changed}); choose another --out or pass "
                                  "--overwrite")
        if os.path.exists(self.file("metrics.json")):
            raise FileExistsError(f"{self.path} holds a finished run; pass --overwrite to "
                                  "run it again")
        check_state(self.backup)
        return "resume"

    def previous_args(self) -> dict:
        """The arguments in the folder's `run.json`; raises `OutputError` unless a run of
        this command wrote it (not even `--overwrite` replaces anything else: the
        folder may hold the user's own files). A `run.json` written before 2026-12-07
        names no command: it counts as this command's if it has the same settings."""
        run_file = self.file("run.json")
        if not os.path.exists(run_file):
            raise OutputError(f"{self.path} exists and is not a bert-tf run (it has no "
                              "run.json); choose another output folder")
        try:
            with open(run_file, encoding="utf-8") as f:
                previous = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise OutputError(f"{run_file} cannot be read ({e}), so {self.path} is not a run "
                              "bert-tf can resume or replace; choose another output folder, "
                              "or delete that one if nothing in it is yours") from None
        if isinstance(previous, dict) and "command" not in previous and \
                set(previous) == set(self.args) - {"command"}:
            previous = {**previous, "command": self.command}
        if not isinstance(previous, dict) or previous.get("command") != self.command:
            what = previous.get("command") if isinstance(previous, dict) else None
            raise OutputError(
                f"{run_file} is not the record of a bert-tf {self.command} run"
                + (f" (it is a {what} run)" if isinstance(what, str) else "")
                + "; choose another output folder (not even --overwrite replaces it)")
        return previous

    def start(self, state: str | None) -> None:
        """Writes `run.json` (the chief; `overwrite` first removes what the command
        writes, `clear`) and makes `work_dir`. Call it once every input has been
        checked: an overwritten run is gone from here on."""
        if self.chief:
            if state == "overwrite":
                self.clear()
            os.makedirs(self.path, exist_ok=True)
            with atomic_file(self.file("run.json")) as f:
                json.dump(self.args, f, indent=2, sort_keys=True)
        os.makedirs(self.work_dir, exist_ok=True)

    def clear(self) -> None:
        """Removes the previous run's outputs (and the workers' folders), nothing else;
        a symlink among them is removed, not followed."""
        names = [n for n in os.listdir(self.path)
                 if n in self.outputs or n.startswith(".worker-")]
        for name in names:
            path = self.file(name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def finish_worker(self) -> None:
        """A worker that is not the chief drops its own checkpoints after training."""
        if not self.chief:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def finish(self, metrics: dict, state, export_from: str | None = None,
               seq_length: int | None = None) -> dict:
        """The end of a job: exports the model dir `export_from` (unless None) into
        `export/`, with a line when it starts and one when it ends; writes `metrics.json`
        (which marks the run finished) and then drops the training `state`
        (`TrainingState`). Returns `metrics`."""
        if export_from is not None:
            step = LongStep("export", f"{', '.join(EXPORTS[:-1])} and {EXPORTS[-1]} "
                            f"SavedModels to {self.file('export')}")
            # From the model dir: a model outside the distribution strategy's variables,
            # computing in float32 whatever precision the run trained in.
            with policy_scope("float32"):
                metrics["exports"] = export_model(load_model(export_from), self.file("export"),
                                                  seq_length=seq_length, overwrite=True)
            step.done()
        self.write_json("metrics.json", metrics)
        state.remove()
        return metrics

    def write_json(self, name: str, obj: dict) -> None:
        with atomic_file(self.file(name)) as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")
