"""A mutation check of tests/test_promises.py (issue 40): four of the bugs those tests
guard against are put back, one at a time, into a copy of the package, and the test
that guards each must then fail. A refactor that quietly loosens one of them (or moves
the code it checks out of its sight) fails here instead of passing unnoticed.

Each mutation copies `bert_tf/` and the tests it needs into a temporary folder, changes
one line there (the working tree is never touched) and runs the guarding test in a
fresh interpreter started in that folder, which imports the copy (checked). The four
runs take about a minute on 2 cores.
"""
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import DATA_DIR, ROOT, report

# (row of issue 40's table, file, the code as it is, the bug, the test that must fail)
MUTATIONS = [
    ("AdamW without global_clipnorm", "bert_tf/optimizers.py",
     "optimizer = AdamW(schedule, weight_decay=weight_decay, epsilon=1e-6,\n"
     "                          global_clipnorm=1.0)",
     "optimizer = AdamW(schedule, weight_decay=weight_decay, epsilon=1e-6)",
     "test_adamw_clips_at_global_norm_1"),
    ("reshuffle_each_iteration=False", "bert_tf/data/glue.py",
     "ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)",
     "ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=False)",
     "test_each_epoch_draws_new_batches"),
    ("count_trimmed with >=", "bert_tf/preprocessing/tokenizer.py",
     "tf.cast(total > seq_length, tf.int32)",
     "tf.cast(total >= seq_length, tf.int32)",
     "test_count_trimmed_spares_a_row_of_exactly_the_limit"),
    ("MLM weights all 1", "bert_tf/data/pretraining.py",
     '"masked_lm_weights": pad([1.0] * len(instance.positions), max_predictions, 0.0)',
     '"masked_lm_weights": pad([1.0] * len(instance.positions), max_predictions, 1.0)',
     "test_mlm_loss_is_averaged_over_real_predictions"),
]

# Runs pytest on the copy, after checking that the copy's bert_tf is the one imported.
RUN = ("import sys, bert_tf, pytest; "
       "assert bert_tf.__file__.startswith(sys.argv[1]), 'imported ' + bert_tf.__file__; "
       "sys.exit(pytest.main(sys.argv[2:]))")


def _copy(dest) -> None:
    shutil.copytree(os.path.join(ROOT, "bert_tf"), dest / "bert_tf",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "tests").mkdir()
    for name in ("__init__.py", "conftest.py", "test_promises.py"):
        shutil.copy(os.path.join(ROOT, "tests", name), dest / "tests" / name)
    shutil.copy(os.path.join(ROOT, "setup.cfg"), dest / "setup.cfg")  # pytest's settings


@pytest.mark.parametrize("row, path, code, bug, test", MUTATIONS,
                         ids=[m[-1].removeprefix("test_") for m in MUTATIONS])
def test_the_guarding_test_fails_with_the_bug_in(tmp_path, row, path, code, bug, test):
    _copy(tmp_path)
    source = tmp_path / path
    text = source.read_text()
    assert text.count(code) == 1, (f"{path} no longer holds {code!r} once: update this "
                                   f"mutation to put the bug ({row}) where the code now is")
    source.write_text(text.replace(code, bug))
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path), "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "-x", f"tests/test_promises.py::{test}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "BERT_TF_DATA": DATA_DIR, "TF_CPP_MIN_LOG_LEVEL": "2",
             "PYTHONDONTWRITEBYTECODE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "1 failed" in proc.stdout, (
        f"with the bug in ({row}: {bug!r} in {path}) {test} did not fail as it should "
        f"(exit {proc.returncode}):\n{out[-3000:]}")
    seen = " ".join(line[1:].strip() for line in proc.stdout.splitlines()
                    if line.startswith("E ") and line[1:].strip())
    report(f"mutation '{row}': {test} fails ({time.time() - start:.0f} s): {seen[:150]}")
