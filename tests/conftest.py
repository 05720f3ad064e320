import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("BERT_TF_DATA", os.path.join(ROOT, "..", "shared", "data"))
REFERENCE_DIR = os.path.join(ROOT, "tests", "reference")


def data_path(*parts):
    path = os.path.join(DATA_DIR, *parts)
    if not os.path.exists(path):
        pytest.fail(f"test data {path} is missing: set BERT_TF_DATA to the shared data dir")
    return path


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory):
    """all-MiniLM-L6-v2, converted from the installed package into a model dir."""
    from bert_tf.models.convert import convert_hf
    from pipelines.minilm import minilm_source_dir
    return convert_hf(minilm_source_dir(), str(tmp_path_factory.mktemp("models") / "minilm"))


@pytest.fixture(scope="session")
def minilm_source():
    from pipelines.minilm import minilm_source_dir
    return minilm_source_dir()


@pytest.fixture(scope="session")
def vocab_file():
    return data_path("bert_vocab", "uncased", "vocab.txt")


@pytest.fixture(scope="session")
def tokenizer(vocab_file):
    from bert_tf.preprocessing.tokenizer import BertTokenizer
    return BertTokenizer(vocab_file)


_REPORTS = []


def report(*lines):
    """Lines (counts, measured differences) shown in the test run's summary, in CI's log."""
    _REPORTS.extend(lines)


def pytest_terminal_summary(terminalreporter):
    if _REPORTS:
        terminalreporter.section("bert-tf measurements")
        for line in _REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, vocab_file):
    """A randomly initialised BERT-tiny with the uncased vocab, as a model dir."""
    import keras
    from bert_tf.io.checkpoint import write_model_dir
    from bert_tf.config import BertConfig
    from bert_tf.models import BertEncoder
    keras.utils.set_random_seed(1)
    config = BertConfig.preset("tiny")
    encoder = BertEncoder.from_bert_config(config)
    return write_model_dir(str(tmp_path_factory.mktemp("models") / "tiny"), config, vocab_file,
                           encoder.checkpoint_tensors(), {"source": "random init, seed 1"})


@pytest.fixture
def saved_models_loaded_once(monkeypatch):
    """`tf.saved_model.load` remembering, for one test, what it loaded (by path): a test
    that asks one export many questions through `bert_tf`'s functions (each of which
    loads the export) loads and traces it once instead of for every call, seconds each.
    The exports such a test loads must not be rewritten while it runs."""
    import tensorflow as tf
    load, loaded = tf.saved_model.load, {}

    def load_once(export_dir, *args, **kwargs):
        key = (os.path.abspath(export_dir), args, tuple(sorted(kwargs.items())))
        if key not in loaded:
            loaded[key] = load(export_dir, *args, **kwargs)
        return loaded[key]
    monkeypatch.setattr(tf.saved_model, "load", load_once)
    return loaded


def metrics(run_dir) -> dict:
    """A finished run's metrics.json."""
    import json
    with open(os.path.join(run_dir, "metrics.json")) as f:
        return json.load(f)


def no_dropout_copy(model_dir, out) -> str:
    """A copy of the model dir with every dropout rate 0 (a classifier head takes the
    hidden rate), so that two ways of training compute exactly the same function."""
    import json
    import shutil
    shutil.copytree(model_dir, out)
    config = json.loads((out / "bert_config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "bert_config.json").write_text(json.dumps(config))
    return str(out)


def run_python(code: str, timeout=300):
    """Runs `code` in a fresh interpreter (nothing of bert-tf imported); returns stdout."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
