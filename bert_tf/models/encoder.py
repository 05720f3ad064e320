"""`BertEncoder`: BERT as a functional Keras model with dict inputs and outputs.

Inputs: `input_word_ids`, `input_mask`, `input_type_ids` (int32 `[B, S]`).
Outputs: `sequence_output` `[B, S, H]`, `pooled_output` `[B, H]` and
`encoder_outputs` (one `[B, S, H]` per layer; the last is `sequence_output`).

Example:
    >>> import numpy as np
    >>> from bert_tf.config import BertConfig
    >>> encoder = BertEncoder.from_bert_config(BertConfig.preset("tiny", vocab_size=100))
    >>> ids = np.ones((2, 7), "int32")
    >>> out = encoder({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids})
    >>> out["sequence_output"].shape, out["pooled_output"].shape, len(out["encoder_outputs"])
    (TensorShape([2, 7, 128]), TensorShape([2, 128]), 2)
"""
from __future__ import annotations

import dataclasses

import keras

from bert_tf.config import INPUT_NAMES, BertConfig, load_config
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock
from bert_tf.choices import DEFAULT_LORA_TARGETS
from bert_tf.models import lora
from bert_tf.models.base import CheckpointNames
from bert_tf.models.serving import text_serving_module
from bert_tf.presets import resolve_model_dir


def encoder_inputs():
    """The three int32 `[batch, seq]` inputs of every BERT model here, both dims dynamic."""
    return {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUT_NAMES}


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEncoder(CheckpointNames, keras.Model):
    """The embedding layer, `num_hidden_layers` Transformer blocks and the pooler.

    The constructor arguments are `BertConfig`'s fields (they are its config for
    `get_config`), plus:

    Args:
        skip_padding: the blocks' dense layers run on the real tokens only (see
            `TransformerBlock`); outputs are the same for real tokens and zeros at
            padding. It needs dynamic shapes: leave it off under XLA and on TPU.

    Layers keep Google's structure (`embeddings`, `layer_0` ..., `pooler`), and
    `checkpoint_variables()` gives each weight its Google name.
    """

    def __init__(self, vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                 num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02,
                 layer_norm_eps=1e-12, skip_padding=False, name="bert_encoder", **kwargs):
        config = BertConfig(
            vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
            hidden_act=hidden_act, hidden_dropout_prob=hidden_dropout_prob,
            attention_probs_dropout_prob=attention_probs_dropout_prob,
            max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
            initializer_range=initializer_range, layer_norm_eps=layer_norm_eps)
        inputs = encoder_inputs()
        x = BertEmbeddings(
            vocab_size=vocab_size, hidden_size=hidden_size,
            max_position_embeddings=max_position_embeddings, type_vocab_size=type_vocab_size,
            dropout=hidden_dropout_prob, layer_norm_eps=layer_norm_eps,
            initializer_range=initializer_range,
            name="embeddings")(inputs["input_word_ids"], inputs["input_type_ids"])
        encoder_outputs = []
        for i in range(num_hidden_layers):
            x = TransformerBlock(
                hidden_size=hidden_size, num_heads=num_attention_heads,
                intermediate_size=intermediate_size, hidden_act=hidden_act,
                hidden_dropout=hidden_dropout_prob, attention_dropout=attention_probs_dropout_prob,
                layer_norm_eps=layer_norm_eps, initializer_range=initializer_range,
                skip_padding=skip_padding, name=f"layer_{i}")(x, inputs["input_mask"])
            encoder_outputs.append(x)
        pooled = BertPooler(hidden_size, initializer_range, name="pooler")(x)
        super().__init__(inputs=inputs, outputs={"sequence_output": x, "pooled_output": pooled,
                                                 "encoder_outputs": encoder_outputs},
                         name=name, **kwargs)
        self.bert_config = config
        self.skip_padding = skip_padding

    @classmethod
    def from_bert_config(cls, config: BertConfig, **kwargs) -> "BertEncoder":
        """A randomly initialised encoder of `config`."""
        return cls(**dataclasses.asdict(config), **kwargs)

    @classmethod
    def from_model_dir(cls, model_dir: str, skip_padding: bool = False) -> "BertEncoder":
        """The encoder of a model dir, with its weights."""
        encoder = cls.from_bert_config(load_config(model_dir), skip_padding=skip_padding)
        encoder.load_model_dir_weights(model_dir)
        return encoder

    @classmethod
    def from_preset(cls, preset: str, skip_padding: bool = False) -> "BertEncoder":
        """The pretrained encoder of a preset (`bert_tf.presets`: a name such as
        "all-MiniLM-L6-v2", converted once into the cache, or a model dir)."""
        return cls.from_model_dir(resolve_model_dir(preset), skip_padding=skip_padding)

    def with_skip_padding(self) -> "BertEncoder":
        """This encoder with `skip_padding=True`: a copy sharing no variables."""
        if self.skip_padding:
            return self
        copy = type(self)(**{**self.get_config(), "skip_padding": True})
        copy.set_weights(lora.plain_weights(self))  # LoRA merged into the kernels
        return copy

    # -- LoRA (`bert_tf.models.lora`) -----------------------------------------------------
    def enable_lora(self, rank: int, targets=DEFAULT_LORA_TARGETS,
                    alpha: float | None = None) -> None:
        """Freezes the encoder and adds trainable LoRA matrices of `rank` to the dense
        layers named in `targets` (`query`, `key`, `value`, `attention_output`,
        `intermediate`, `output`) of every block; `alpha / rank` scales their update
        (default 1). Model dirs and exports get the merged kernels."""
        lora.enable_lora(self, rank, targets, alpha)

    def lora_settings(self) -> dict | None:
        """`{"rank", "alpha", "targets"}` of the encoder's LoRA, None without."""
        return lora.lora_settings(self)

    def save_lora_weights(self, path: str) -> None:
        """Writes the LoRA matrices alone (with rank, alpha and targets) to `path` (.npz)."""
        lora.save_lora_weights(self, path)

    def load_lora_weights(self, path: str) -> None:
        """Loads LoRA matrices written by `save_lora_weights` (enabling LoRA if needed)."""
        lora.load_lora_weights(self, path)

    def serving_module(self, tokenizer, seq_length: int):
        """`text` -> `sequence_output`, `pooled_output`, `input_mask`; `encode_pair` for
        `text`, `text_b` (see `bert_tf.models.serving`), on a copy whose dense layers
        skip padding."""
        return text_serving_module(tokenizer, self.with_skip_padding(), seq_length, pair=False)

    def checkpoint_variables(self) -> dict:
        """Google checkpoint name (`bert/encoder/layer_0/...`) -> Keras variable."""
        out = {}
        blocks = [layer for layer in self.layers if isinstance(layer, TransformerBlock)]
        parts = [("bert/embeddings", self.get_layer("embeddings")),
                 *[(f"bert/encoder/layer_{i}", block) for i, block in enumerate(blocks)],
                 ("bert/pooler", self.get_layer("pooler"))]
        for prefix, layer in parts:
            for name, var in layer.checkpoint_variables().items():
                out[f"{prefix}/{name}"] = var
        return out

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                **dataclasses.asdict(self.bert_config), "skip_padding": self.skip_padding}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def checkpoint_shapes(config: BertConfig) -> dict[str, tuple]:
    """Google name -> shape of every encoder tensor of `config` (no model is built)."""
    h, i = config.hidden_size, config.intermediate_size
    shapes = {"bert/embeddings/word_embeddings": (config.vocab_size, h),
              "bert/embeddings/position_embeddings": (config.max_position_embeddings, h),
              "bert/embeddings/token_type_embeddings": (config.type_vocab_size, h),
              "bert/embeddings/LayerNorm/gamma": (h,), "bert/embeddings/LayerNorm/beta": (h,),
              "bert/pooler/dense/kernel": (h, h), "bert/pooler/dense/bias": (h,)}
    for n in range(config.num_hidden_layers):
        layer = f"bert/encoder/layer_{n}"
        for name, shape in (("attention/self/query", (h, h)), ("attention/self/key", (h, h)),
                            ("attention/self/value", (h, h)),
                            ("attention/output/dense", (h, h)),
                            ("intermediate/dense", (h, i)), ("output/dense", (i, h))):
            shapes[f"{layer}/{name}/kernel"] = shape
            shapes[f"{layer}/{name}/bias"] = shape[1:]
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{layer}/{name}/gamma"] = (h,)
            shapes[f"{layer}/{name}/beta"] = (h,)
    return shapes


def build_encoder(config: BertConfig, name: str = "bert_encoder",
                  skip_padding: bool = False) -> BertEncoder:
    """`BertEncoder.from_bert_config(config, ...)`: a randomly initialised encoder."""
    return BertEncoder.from_bert_config(config, name=name, skip_padding=skip_padding)
