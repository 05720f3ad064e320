"""bert-tf installs into an environment that already holds the newest TensorFlow
without downgrading it, and its metadata says what the test suite runs on.

The check asks pip, on the package index, two questions (`pip install --dry-run
--ignore-installed --report`, so nothing is installed and this environment is not
consulted):
1. what a fresh `pip install tensorflow` brings (the newest TensorFlow and the Keras,
   numpy and protobuf it comes with);
2. whether bert-tf with its `plots` and `serving` extras installs beside exactly those
   versions. A pin in `setup.cfg` that excludes any of them (`tensorflow==2.20.*` while
   2.21 is out, `keras<3.14`, `numpy<2.3`) makes pip refuse, and the test fails with
   pip's own words.
The `beam` extra is left out on purpose: Apache Beam itself caps protobuf below 7,
which newer TensorFlow releases bring (docs/install notes this).
"""
import configparser
import json
import os
import subprocess
import sys

from tests.conftest import ROOT

CORE = ("tensorflow", "keras", "numpy", "protobuf")


def _resolve(tmp_path, name, *requirements):
    """pip's report of what installing `requirements` into an empty environment takes:
    {distribution name: version}."""
    report = tmp_path / f"{name}.json"
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
         "--disable-pip-version-check", "--quiet", "--report", str(report), *requirements],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, f"pip cannot install {' '.join(requirements)}:\n{run.stderr}"
    installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


def test_installs_beside_the_newest_tensorflow_without_downgrading(tmp_path):
    fresh = _resolve(tmp_path, "tensorflow", "tensorflow")
    assert set(CORE) <= set(fresh), fresh
    pins = [f"{name}=={fresh[name]}" for name in CORE]
    with_bert_tf = _resolve(tmp_path, "bert-tf", *pins, f"{ROOT}[plots,serving]")
    assert {n: with_bert_tf[n] for n in CORE} == {n: fresh[n] for n in CORE}
    # tensorflow-text follows TensorFlow's minor version (its own requirement).
    assert with_bert_tf["tensorflow-text"].split(".")[:2] == fresh["tensorflow"].split(".")[:2]


def _setup_cfg():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    return config


def test_python_versions_in_metadata_are_the_tested_ones():
    """`python_requires` and the classifiers name the Python this suite runs on, and no
    other (README's install section says the same)."""
    config = _setup_cfg()
    classifiers = config["metadata"]["classifiers"].split("\n")
    versions = sorted(c.rsplit(":: ", 1)[1] for c in classifiers
                      if c.startswith("Programming Language :: Python :: 3."))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert versions == [running]
    low, high = running, f"3.{sys.version_info.minor + 1}"
    assert config["options"]["python_requires"] == f">={low},<{high}"


def test_optional_dependencies_are_extras_not_requirements():
    """matplotlib, tensorflow-serving-api and Apache Beam are extras (`plots`, `serving`,
    `beam`), the names `bert_tf.extras` gives in its errors."""
    from bert_tf.extras import EXTRAS
    config = _setup_cfg()
    required = config["options"]["install_requires"]
    extras = config["options.extras_require"]
    for extra, dist in EXTRAS.items():
        assert dist not in required
        assert dist in extras[extra]

