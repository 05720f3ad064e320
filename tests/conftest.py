import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Presets convert into $BERT_TF_HOME: a fresh folder per test run, never the user's cache
# (subprocesses inherit it).
import tempfile  # noqa: E402
os.environ["BERT_TF_HOME"] = tempfile.mkdtemp(prefix="bert-tf-home-")

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
# Under pytest-xdist (`make test` runs `-n 2`) each worker appends its lines to a file of its
# own in a folder the controller made (`pytest_configure_node`); the controller shows them all.
_REPORTS_FILE = None


def report(*lines):
    """Lines (counts, measured differences) shown in the test run's summary, in CI's log."""
    _REPORTS.extend(lines)
    if _REPORTS_FILE is not None:
        with open(_REPORTS_FILE, "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(pytest-xdist, in the controller) tells a worker where its report lines go."""
    config = node.config
    if not hasattr(config, "_bert_tf_reports"):
        config._bert_tf_reports = tempfile.mkdtemp(prefix="bert-tf-reports-")
    node.workerinput["bert_tf_reports"] = config._bert_tf_reports


def pytest_terminal_summary(terminalreporter, config):
    import glob
    import shutil
    lines = list(_REPORTS)
    folder = getattr(config, "_bert_tf_reports", None)
    if folder:
        for path in sorted(glob.glob(os.path.join(folder, "*.txt"))):
            with open(path, encoding="utf-8") as f:
                lines.extend(f.read().splitlines())
        shutil.rmtree(folder, ignore_errors=True)
    if lines:
        terminalreporter.section("bert-tf measurements")
        for line in lines:
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


# -- tests whose work is one long process of its own ------------------------------------------
# The suite keeps about one core busy (2026-12-07, commit 1d48435: 45 min of wall time, 48 min
# of CPU time on two cores). A test marked `@pytest.mark.background(job=job)` has its process
# started as soon as the tests are collected, beside the rest of the suite on the other core,
# and reads what it wrote through the `background` fixture. `job(folder)` returns the Python
# code of the process (a program of its own: no fixture reaches it), which writes under
# `folder`.
_BACKGROUND = {}


class Background:
    """One test's process: `wait()` gives its stdout (it must exit 0); `folder` holds
    what it wrote, its stdout and stderr too (files, not pipes: a full pipe would stop
    it); `seconds` is its wall time, shown in the measurements."""

    def __init__(self, name: str, job, folder: str):
        import subprocess
        import sys
        import threading
        import time
        self.name, self.folder, self.seconds = name, folder, None
        os.makedirs(folder, exist_ok=True)
        self.logs = [os.path.join(folder, f"background.{x}") for x in ("out", "err")]
        with open(self.logs[0], "w") as out, open(self.logs[1], "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", job(folder)], stdout=out,
                                         stderr=err,
                                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        started = time.time()

        def watch():
            self.proc.wait()
            self.seconds = time.time() - started
        self.watcher = threading.Thread(target=watch, daemon=True)
        self.watcher.start()

    def wait(self, timeout=1200) -> str:
        self.watcher.join(timeout)
        assert self.seconds is not None, f"{self.name}: still running after {timeout} s"
        report(f"{self.name}: its process ran {self.seconds:.0f} s")
        out, err = (open(path, encoding="utf-8").read() for path in self.logs)
        assert self.proc.returncode == 0, err[-3000:]
        return out


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    global _REPORTS_FILE
    if _xdist_worker(config):
        _REPORTS_FILE = os.path.join(config.workerinput["bert_tf_reports"],
                                     config.workerinput["workerid"] + ".txt")
    config.addinivalue_line("markers", "background(job): the test's process starts when "
                            "the tests are collected (tests/conftest.py, Background)")


def pytest_collection_modifyitems(config, items):
    """The tests marked `background` run last: the rest of the suite runs beside their
    processes. Under pytest-xdist, whose two workers keep both cores busy, they are plain
    long tests and run first (a long test started last would leave one worker idle)."""
    items.sort(key=lambda item: (item.get_closest_marker("background") is None)
               == _xdist_worker(config))


def pytest_collection_finish(session):
    """Starts the processes of the selected tests marked `background` (not under
    pytest-xdist: every worker collects every test, and the cores are busy already)."""
    if _xdist_worker(session.config):
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is not None:
            folder = tempfile.mkdtemp(prefix=f"bert-tf-{item.name}-")
            _BACKGROUND[item.nodeid] = Background(item.name, marker.kwargs["job"], folder)


def pytest_sessionfinish(session):
    import shutil
    for job in _BACKGROUND.values():
        job.proc.kill()  # a test that failed, or was stopped, before its process ended
        job.proc.wait()
        shutil.rmtree(job.folder, ignore_errors=True)


@pytest.fixture
def background(request) -> Background:
    """The test's `Background` process, started at collection (or now, if it was not)."""
    if request.node.nodeid not in _BACKGROUND:
        marker = request.node.get_closest_marker("background")
        folder = str(request.getfixturevalue("tmp_path") / "background")
        _BACKGROUND[request.node.nodeid] = Background(request.node.name, marker.kwargs["job"],
                                                      folder)
    return _BACKGROUND[request.node.nodeid]
