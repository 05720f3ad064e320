"""`BertConfig`: the hyper-parameters of a BERT encoder.

Reads and writes Google's `bert_config.json` and Hugging Face's `config.json`.

One subtlety: both formats say `"hidden_act": "gelu"`, but they mean different
functions. Google's BERT code computes the tanh approximation of GELU; Hugging
Face's `gelu` is the exact (erf) GELU. `BertConfig.hidden_act` is therefore
explicit: `"gelu"` is exact, `"gelu_tanh"` is the approximation. When written as
a Google `bert_config.json`, the exact form is recorded with an extra key
`"gelu_approximate": false`, which Google's own code ignores harmlessly.

Example:
    >>> cfg = BertConfig.preset("tiny")
    >>> cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads
    (2, 128, 2)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

from bert_tf.errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "tanh", "linear")
# The three int32 [batch, seq] inputs of every BERT model here, as TF Hub names them.
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")

# Turc et al. (2019), "Well-Read Students Learn Better": (layers, hidden).
PRESETS = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}

# The most parameters a config may describe: 5 times the largest BERT published
# (Megatron-BERT, 3.9 billion). More is a typo (`num_hidden_layers: 10**9`), which
# would otherwise end in a MemoryError after minutes of building.
MAX_PARAMETERS = 20_000_000_000


@dataclasses.dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r}: must be a positive integer")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value < 1:
                raise ConfigError(f"{name}={value!r}: must be a rate in [0, 1)")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name}={value!r}: must be a positive finite number")
        if self.hidden_act not in ACTIVATIONS:
            raise ConfigError(
                f"hidden_act={self.hidden_act!r} is not supported; choose one of {ACTIVATIONS}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}")
        if self.num_parameters > MAX_PARAMETERS:
            sizes = ", ".join(f"{name}={getattr(self, name)}" for name in (
                "num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size",
                "max_position_embeddings", "type_vocab_size"))
            raise ConfigError(f"{sizes}: {self.num_parameters:.3g} parameters, more than the "
                              f"{MAX_PARAMETERS:.0e} bert-tf builds (BERT-large has 3.4e8)")

    @property
    def num_parameters(self) -> int:
        """The encoder's parameters (embeddings, layers, pooler; no heads)."""
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h
        layer = 4 * (h * h + h) + 2 * h * i + i + h + 2 * 2 * h  # attention, FFN, LayerNorms
        return embeddings + 2 * h + self.num_hidden_layers * layer + h * h + h

    def check_seq_length(self, seq_length: int, setting: str = "seq_length") -> int:
        """`seq_length` if the model has position embeddings for it, else a `ConfigError`
        naming the setting (raised up front, not on the first long text in production)."""
        if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 3:
            raise ConfigError(f"{setting} {seq_length!r}: must be an integer of at least 3 "
                              "([CLS], a token, [SEP])")
        if seq_length > self.max_position_embeddings:
            raise ConfigError(f"{setting} {seq_length} is longer than the model's "
                              f"max_position_embeddings ({self.max_position_embeddings})")
        return seq_length

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def preset(cls, name: str, vocab_size: int = 30522) -> "BertConfig":
        """A Turc et al. size: heads = hidden / 64, intermediate = 4 × hidden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        layers, hidden = PRESETS[name]
        return cls(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                   num_attention_heads=hidden // 64, intermediate_size=4 * hidden)

    # -- Google's bert_config.json ------------------------------------------------
    @classmethod
    def from_google_dict(cls, d: dict) -> "BertConfig":
        d = dict(d)
        act = d.get("hidden_act", "gelu")
        if act == "gelu":  # Google's `gelu` is the tanh approximation ...
            approximate = d.get("gelu_approximate", True)  # ... unless we wrote it.
            act = "gelu_tanh" if approximate else "gelu"
        d["hidden_act"] = act
        return cls(**_known_fields(d, cls))

    def to_google_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.hidden_act in ("gelu", "gelu_tanh"):
            d["gelu_approximate"] = self.hidden_act == "gelu_tanh"
            d["hidden_act"] = "gelu"
        return d

    # -- Hugging Face config.json -------------------------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict) -> "BertConfig":
        d = dict(d)
        if d.get("model_type", "bert") != "bert":
            raise ConfigError(f"config.json has model_type={d['model_type']!r}, expected 'bert'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError("only absolute position embeddings are supported, config.json has "
                              f"position_embedding_type={d['position_embedding_type']!r}")
        act = d.get("hidden_act", "gelu")
        d["hidden_act"] = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}.get(act, act)
        return cls(**_known_fields(d, cls))

    def to_hf_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_act"] = {"gelu_tanh": "gelu_pytorch_tanh"}.get(self.hidden_act, self.hidden_act)
        d.update(model_type="bert", architectures=["BertModel"], pad_token_id=0,
                 position_embedding_type="absolute")
        return d

    # -- files ----------------------------------------------------------------------
    @classmethod
    def from_json_file(cls, path: str) -> "BertConfig":
        """Reads either format: HF files carry `model_type`, Google's do not."""
        d = read_json_object(path, "config keys")
        try:
            if "model_type" in d:
                return cls.from_hf_dict(d)
            return cls.from_google_dict(d)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{path}: {e}") from e

    def to_json_file(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_google_dict(), f, indent=2, sort_keys=True)
            f.write("\n")


def read_json_object(path: str, what: str, error=ConfigError) -> dict:
    """The JSON object in the file at `path` (of `what`, for the message), else an
    `error` naming the file: not UTF-8, not JSON, or JSON of another kind."""
    from bert_tf.io.text import read_json
    d = read_json(path, error)
    if not isinstance(d, dict):
        raise error(f"{path}: expected a JSON object of {what}, got {type(d).__name__}")
    return d


def _known_fields(d: dict, cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [n for n in ("vocab_size", "hidden_size", "num_hidden_layers",
                           "num_attention_heads", "intermediate_size") if n not in d]
    if missing:
        raise ConfigError(f"config is missing required keys {missing}")
    return {k: v for k, v in d.items() if k in names}


def load_config(model_dir: str) -> BertConfig:
    """The config of a model dir (`bert_config.json`, or HF's `config.json`)."""
    for name in ("bert_config.json", "config.json"):
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return BertConfig.from_json_file(path)
    raise FileNotFoundError(f"{model_dir}: no bert_config.json or config.json found")
