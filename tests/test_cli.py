"""The `bert-tf` command as a user meets it: `--help` answers without importing
TensorFlow, TensorFlow's start-up lines stay off the terminal unless `--verbose`, every
flag says what it does and its default, and a job ends by saying where its outputs went.
`import bert_tf` (a library user) still registers the Keras classes."""
import argparse
import json
import os
import subprocess
import sys
import textwrap

from bert_tf.cli import build_parser, main as cli, split_beam_args
from bert_tf.cli.outputs import folder_outputs, print_outputs

HEAVY = ("tensorflow", "keras", "numpy")
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "bert-tf")


def run(args, env=None, **kwargs):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")} if env is None else env
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300,
                          env=env, **kwargs)


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_help_of_every_command_imports_no_tensorflow(tmp_path):
    """`bert-tf --help` and `bert-tf CMD --help` for every command, in a process started
    as the console script is (a script named `bert-tf`): each prints its usage, nothing
    on stderr, and TensorFlow, Keras and NumPy are never imported (a TensorFlow import at
    the top of any CLI module, or a `choices` constant taken from a library module, fails
    here)."""
    script = tmp_path / "bert-tf"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from bert_tf.cli import build_parser, main
        parser = build_parser()
        sub = next(a for a in parser._actions if type(a).__name__ == "_SubParsersAction")
        usages = []
        for argv in [["--help"]] + [[name, "--help"] for name in sub.choices]:
            try:
                main(argv)
            except SystemExit as e:
                assert e.code == 0, argv
            usages.append(argv[0])
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print(json.dumps({{"commands": usages, "heavy": heavy}}))
    """))
    proc = run([str(script)], cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["commands"] == ["--help", *commands()]
    assert proc.stdout.count("usage: bert-tf") == 1 + len(commands())


def test_the_real_entry_points_import_no_tensorflow_for_help():
    """The installed console script and `python -m bert_tf`: `--help` imports no
    TensorFlow (`-X importtime` lists every module a process imports)."""
    for entry in ([CONSOLE_SCRIPT], ["-m", "bert_tf"]):
        proc = run(["-X", "importtime", *entry, "finetune", "--help"])
        assert proc.returncode == 0 and proc.stdout.startswith("usage: bert-tf finetune"), entry
        imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                    if line.startswith("import time:")]
        assert "argparse" in imported and "bert_tf.cli" in imported, entry
        assert not [m for m in imported if m.split(".")[0] in HEAVY], entry


def test_a_command_prints_no_tensorflow_lines_unless_verbose(tiny_model_dir):
    """`bert-tf info` writes nothing on stderr; with `--verbose` TensorFlow's start-up
    lines come back, among them oneDNN's, which also shows the command keeps oneDNN on
    by default (bert_tf/__init__)."""
    quiet = run(["-m", "bert_tf", "info", tiny_model_dir])
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr[-3000:]
    assert quiet.stdout.startswith(f"model dir: {os.path.abspath(tiny_model_dir)}\n")
    verbose = run(["-m", "bert_tf", "info", tiny_model_dir, "--verbose"])
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert "oneDNN custom operations are on" in verbose.stderr, verbose.stderr[-3000:]


def test_import_bert_tf_registers_the_keras_classes():
    """A library user's `import bert_tf` (here `python -c`) imports the model classes, so
    `keras.models.load_model` finds them by their registered names; every public name
    is there."""
    proc = run(["-c", "import bert_tf, keras, sys; "
                "print(keras.saving.get_registered_object('bert_tf>BertClassifier').__name__, "
                "'tensorflow' in sys.modules, "
                "all(hasattr(bert_tf, name) for name in bert_tf.__all__))"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["BertClassifier", "True", "True"]
    # ... and prints none of TensorFlow's start-up lines, unless the user's environment
    # asks for them.
    assert proc.stderr == ""
    loud = run(["-c", "import bert_tf"], env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "oneDNN custom operations are on" in loud.stderr, loud.stderr[-3000:]


def test_every_flag_has_help_that_shows_its_default():
    """Every argument of every command says what it is; one with a default (not None or
    False) shows it, written by the formatter or by the help itself."""
    for name, command in commands().items():
        formatter = command._get_formatter()
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help"
            text = formatter._expand_help(action)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in text, f"{name} {action.option_strings}: {text}"
            if action.default is None or action.default is False:
                assert "(default: None)" not in text and "(default: False)" not in text
    embed = commands()["embed"].format_help()
    assert "lines per batch (default: 64)" in embed
    assert "--normalize" in embed and "(default: False)" not in embed
    finetune = " ".join(commands()["finetune"].format_help().split())
    assert "--pooling {pooled_output,cls,mean,max,mean_sqrt_len,attention}" in finetune
    assert "learned attention (default: pooled_output)" in finetune
    # where the help states its default, the formatter does not repeat it
    assert "(default 0.5)" in finetune and "(default: 0.5)" not in finetune


def test_verbose_before_or_after_the_command():
    """`--verbose` is read before the command's name and after it; absent, it is off
    (a subcommand's own default would otherwise overwrite the top level's value)."""
    parser = build_parser()
    assert parser.parse_args(["--verbose", "info", "m"]).verbose is True
    assert parser.parse_args(["info", "m", "--verbose"]).verbose is True
    assert parser.parse_args(["info", "m"]).verbose is False
    # Beam's options after `--` are still found when --verbose comes first.
    argv = ["--verbose", "predict", "--export", "e", "x.txt", "--output", "o", "--", "--a=1"]
    assert split_beam_args(argv) == (argv[:7], ["--a=1"])


def test_outputs_list_what_was_written(tmp_path, capsys):
    """A job's last lines: the folder, then each thing in it by name (hidden ones left
    out, the exports by version), and only outputs that exist."""
    run_dir = tmp_path / "run"
    for name in ("logs", "model", "export/serving/1", "export/encoder/1", ".worker-1"):
        (run_dir / name).mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    exports = {"encoder": str(run_dir / "export/encoder/1"),
               "serving": str(run_dir / "export/serving/1")}
    print_outputs(folder_outputs(str(run_dir), exports))
    print_outputs({"text": str(run_dir / "metrics.json"), "held out": None,
                   "missing": str(tmp_path / "nope")})
    assert capsys.readouterr().out.splitlines() == [
        "outputs:",
        f"  run dir           {run_dir}",
        f"  export/encoder    {run_dir}/export/encoder/1",
        f"  export/serving    {run_dir}/export/serving/1",
        f"  TensorBoard logs  {run_dir}/logs",
        f"  metrics.json      {run_dir}/metrics.json",
        f"  model             {run_dir}/model",
        "outputs:",
        f"  text  {run_dir}/metrics.json"]


def test_prepare_text_ends_with_its_outputs(tmp_path, capsys):
    """`prepare-text` prints its summary as JSON, then where the corpus and the held-out
    documents went."""
    source = tmp_path / "wiki.txt"
    source.write_text("".join(f" = Title {i} = \n\n Sentence {i}. Another one. \n\n"
                              for i in range(4)))
    out, held = tmp_path / "corpus.txt", tmp_path / "eval.txt"
    assert cli(["prepare-text", str(source), "--out", str(out), "--eval-out", str(held),
                "--eval-every", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0]) == {"documents": 2, "sentences": 4, "eval_documents": 2,
                                    "eval_sentences": 4}
    assert lines[1:] == ["outputs:", f"  text      {out}", f"  held out  {held}"]
