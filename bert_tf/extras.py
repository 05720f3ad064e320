"""The optional dependencies and the extras that install them.

bert-tf's core (the Keras layers and models, the tokenizer, training, exports) needs
only TensorFlow, tensorflow-text, Keras, numpy, scipy and safetensors. Three features
need more, installed as extras:

    pip install 'bert-tf[plots]'     # matplotlib: training_curve.png, the pooling report's plot
    pip install 'bert-tf[serving]'   # tensorflow-serving-api: TF Serving warm-up requests
    pip install 'bert-tf[beam]'      # apache-beam: `bert-tf predict`, `bert-tf embed --runner`

`require` imports a module of an extra or raises `MissingExtraError`, one line naming the
extra, which the `bert-tf` command prints as its error. `optional` is for outputs that
a job can go without (a plot): it returns None and says once on stderr what was left out.

Example:
    >>> figure = optional("matplotlib.figure", "plots", "training_curve.png")
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType

from bert_tf.errors import ConfigError

EXTRAS = {"plots": "matplotlib", "serving": "tensorflow-serving-api", "beam": "apache-beam"}
_said: set[tuple[str, str]] = set()


class MissingExtraError(ConfigError):
    """A feature whose optional dependency is not installed: names the extra to install."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module`, imported, or `MissingExtraError` naming `pip install 'bert-tf[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"{feature} needs {EXTRAS[extra]}, which is not installed "
            f"(pip install 'bert-tf[{extra}]'): {e}") from None


def optional(module: str, extra: str, output: str) -> ModuleType | None:
    """`module`, imported, or None after one stderr note that `output` is left out."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if (module, output) not in _said:
            _said.add((module, output))
            print(f"note: {output} not written: it needs {EXTRAS[extra]} "
                  f"(pip install 'bert-tf[{extra}]')", file=sys.stderr)
        return None
