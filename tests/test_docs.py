"""Every docstring example in bert_tf runs: doctest on each module of the package.

The examples see the module's own names plus a few fixtures, so they can use real
files without downloads:

    model_dir   a random BERT-tiny (2 layers, hidden 128) with the uncased vocab
    data_dir    the shared data dir (SST-2/, MRPC/, SQuAD1.1/, wikitext-2/, bert_vocab/)
    vocab_file  the uncased BERT vocab (data_dir/bert_vocab/uncased/vocab.txt)
    tmp         a fresh, empty folder for this module (also the working directory)

One case per module; a failure shows doctest's report. Examples use tiny settings
(a handful of steps, short sequences) so that the whole file stays fast.
"""
import doctest
import importlib
import io
import os
import pkgutil
import time

import pytest

from tests.conftest import DATA_DIR, ROOT, report

PACKAGE = "bert_tf"
# `python -m bert_tf` runs the command line when imported.
NOT_IMPORTABLE = {"bert_tf.__main__"}
SLOW_SECONDS = 5  # modules whose examples take longer are named in the run's summary


def module_names(package=PACKAGE):
    """The package and all its modules, found on disk (nothing is imported here)."""
    names = [package]
    path = [os.path.join(ROOT, *package.split("."))]
    for info in pkgutil.iter_modules(path, package + "."):
        if info.ispkg:
            names.extend(module_names(info.name))
        elif info.name not in NOT_IMPORTABLE:
            names.append(info.name)
    return names


MODULES = module_names()


@pytest.fixture
def doc_globs(tiny_model_dir, vocab_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever an example writes stays in `tmp`
    return {"model_dir": tiny_model_dir, "data_dir": os.path.abspath(DATA_DIR),
            "vocab_file": vocab_file, "tmp": str(tmp_path)}


def test_package_is_found_and_no_example_is_skipped():
    assert len(MODULES) > 30, MODULES
    skipped = []
    for name in MODULES:
        path = os.path.join(ROOT, *name.split("."))
        path = os.path.join(path, "__init__.py") if os.path.isdir(path) else path + ".py"
        with open(path, encoding="utf-8") as f:
            skipped += [f"{name}:{i}" for i, line in enumerate(f, 1) if "+SKIP" in line]
    assert not skipped, f"examples no one runs (make them run here instead): {skipped}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, doc_globs):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = io.StringIO()
    start = time.perf_counter()
    for test in finder.find(module, name, extraglobs=doc_globs):
        runner.run(test, out=out.write)
    seconds = time.perf_counter() - start
    if seconds > SLOW_SECONDS:
        report(f"doctest {name}: {runner.tries} examples, {seconds:.1f} s")
    assert runner.failures == 0, \
        f"{name}: {runner.failures} of {runner.tries} examples failed\n{out.getvalue()}"
