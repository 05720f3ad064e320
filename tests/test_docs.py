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
import argparse
import doctest
import importlib
import io
import os
import pkgutil
import re
import shlex
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


# README.md and the guides under docs/: links resolve, command lines parse, Python runs.

DOCS = ["README.md"] + sorted(os.path.join("docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
                              if n.endswith(".md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def read_doc(name: str) -> str:
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks of `language` in a Markdown text."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose = FENCE.sub("", text)
    return {slug(h) for h in re.findall(r"^#+ (.*)$", prose, re.M)}


def broken_links(name: str) -> list[str]:
    """Relative links of the document `name` whose file or `#anchor` does not exist."""
    text = read_doc(name)
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(os.path.dirname(name), path)) if path else name
        if not os.path.isfile(os.path.join(ROOT, file)):
            broken.append(f"{name}: {target} (no file {file})")
        elif anchor and anchor not in anchors(read_doc(file)):
            broken.append(f"{name}: {target} (no heading #{anchor} in {file})")
    return broken


@pytest.mark.parametrize("name", DOCS)
def test_links_resolve(name):
    assert not broken_links(name)


def test_a_broken_link_is_found(tmp_path, monkeypatch):
    """The link check itself: a missing file and a missing heading are both reported."""
    import tests.test_docs as module
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        "# Title\n\n[ok](#title) [gone](b.md) [no heading](a.md#nowhere) [web](https://x.org)\n")
    monkeypatch.setattr(module, "ROOT", str(tmp_path))
    assert broken_links("docs/a.md") == ["docs/a.md: b.md (no file docs/b.md)",
                                         "docs/a.md: a.md#nowhere (no heading #nowhere in docs/a.md)"]


def command_lines(text: str) -> list[str]:
    """The shell commands of the bash blocks, with continuation lines joined."""
    lines = []
    for block in code_blocks(text, "bash"):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return lines


def cli_words(line: str) -> list[list[str]]:
    """The argv of each `bert-tf` (or `python -m bert_tf`) command in a shell line, up to the
    end of that command; `[--flag VALUE]` and `a|b` of the docs' notation taken as written."""
    words = shlex.shlex(line, posix=True, punctuation_chars=True)
    words.whitespace_split = True
    words.commenters = "#"
    words = list(words)
    found = []
    for i, word in enumerate(words):
        if word == "bert-tf" or word.endswith("/bert-tf") or (
                word == "bert_tf" and words[i - 1] == "-m"):
            argv = []
            for rest in words[i + 1:]:
                if rest in ("|", "||", "&&", ";", "&", ">", "<"):
                    break
                argv.append(rest.strip("[]"))
            found.append(argv)
    return found


def unknown_flags(argv: list[str]) -> list[str]:
    """The subcommand or flags of `argv` that bert-tf's parser does not have (values are not
    checked: the docs write placeholders such as N and FILE)."""
    from bert_tf.cli import build_parser, split_beam_args
    argv, _ = split_beam_args(argv)
    commands = next(a for a in build_parser()._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return [f"command {argv[:1]}"]
    known = commands[argv[0]]._option_string_actions
    flags = [a.split("=")[0] for a in argv[1:] if a.startswith("-") and a not in ("-", "--")]
    if "--" in argv:  # after `--`: arguments, not flags
        flags = [a.split("=")[0] for a in argv[1:argv.index("--")] if a.startswith("-") and a != "-"]
    return [f"{argv[0]} {flag}" for flag in flags if flag not in known]


@pytest.mark.parametrize("name", DOCS)
def test_command_lines_parse(name):
    """Every `bert-tf ...` line of a bash block names a real subcommand and real flags."""
    argvs = [argv for line in command_lines(read_doc(name)) for argv in cli_words(line)]
    bad = [f"{' '.join(argv)}: {problem}" for argv in argvs for problem in unknown_flags(argv)]
    assert not bad


def test_a_renamed_flag_is_found():
    [argv] = cli_words("bert-tf finetune --task sst2 --learning_rate 1e-4 [--seed N] | tee log")
    assert argv == ["finetune", "--task", "sst2", "--learning_rate", "1e-4", "--seed", "N"]
    assert unknown_flags(argv) == ["finetune --learning_rate"]
    assert unknown_flags(["fine-tune", "--task", "sst2"]) == ["command ['fine-tune']"]


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+):", read_doc("Makefile"), re.M))


@pytest.mark.parametrize("name", DOCS)
def test_make_targets_exist(name):
    named = []
    for line in command_lines(read_doc(name)):
        words = shlex.split(line, comments=True)
        if words[:1] == ["make"]:
            named += [w for w in words[1:] if "=" not in w and not w.startswith("-")]
    assert set(named) <= make_targets(), set(named) - make_targets()


def python_snippets() -> str:
    """README's "In Python" blocks, then every python block of the guides under docs/, as
    one program: what `test_readme_keras_snippets_run` (tests/test_keras_api.py) runs. The
    guides' blocks use the exports README's blocks wrote (`saved_models/sst2` stands for
    `saved_models/mine`)."""
    readme = read_doc("README.md")
    start = readme.index("## In Python")
    section = readme[start:readme.index("\n## ", start)]
    guides = [block.replace("saved_models/sst2/", "saved_models/mine/")
              for name in DOCS[1:] for block in code_blocks(read_doc(name), "python")]
    return "\n".join(code_blocks(section, "python") + guides)


def test_every_python_block_is_run():
    """No python block of README lies outside the section that the snippet test runs, and the
    snippets it runs include every block of the guides."""
    readme = read_doc("README.md")
    start = readme.index("## In Python")
    section = readme[start:readme.index("\n## ", start)]
    assert code_blocks(readme, "python") == code_blocks(section, "python")
    program = python_snippets()
    for name in DOCS:
        for block in code_blocks(read_doc(name), "python"):
            assert block.replace("saved_models/sst2/", "saved_models/mine/") in program
