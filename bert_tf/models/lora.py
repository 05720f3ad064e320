"""LoRA (low-rank adaptation, Hu et al. 2021) of a `BertEncoder`'s dense layers, with
Keras' own `Dense.enable_lora`.

`enable_lora(encoder, rank, targets)` freezes every weight of the encoder and gives
each target dense layer of every Transformer block two trainable matrices, `A`
`[in, rank]` (He-uniform) and `B` `[rank, out]` (zeros): the layer computes
`x · (W + (alpha / rank) · A · B) + b`. `B` starts at zero, so the model's outputs
are the plain model's until it trains; then only `A` and `B` change (and a task
model's head, which is not part of the encoder). The targets are the layers' Keras
names (`bert_tf.choices.LORA_TARGETS`): `query`, `key`, `value`, `attention_output`
(the attention's projections), `intermediate`, `output` (the feed-forward's).

**Merged when written.** A LoRA layer's `kernel` is the merged `W + (alpha / rank) ·
A · B`, and that is what `checkpoint_variables()` names: a model dir holds plain
kernels under Google's names and loads without LoRA. The copies that exports and
serving make (`with_dtype_policy`, `with_skip_padding`) take `plain_weights`: plain
models with the merged kernels, so an export has the format and speed of any other.
LoRA is not part of a model's config: a `.keras` file likewise holds a plain model.

**Adapters alone.** `save_lora_weights` writes only the `A` and `B` matrices (with the
rank, alpha and targets) to a `.npz` file, named after the layer's Google name
(`bert/encoder/layer_0/attention/self/query/lora_a`); `load_lora_weights` puts them
back on an encoder with the same base weights, enabling LoRA first if needed.

Example:
    >>> import numpy as np
    >>> import bert_tf
    >>> encoder = bert_tf.load_encoder(model_dir)
    >>> ids = np.array([[2, 7, 9, 3]], "int32")
    >>> inputs = {"input_word_ids": ids, "input_mask": ids * 0 + 1, "input_type_ids": ids * 0}
    >>> before = encoder(inputs)["pooled_output"]
    >>> encoder.enable_lora(4)                 # on query and value
    >>> sorted({v.path.split("/")[-1] for v in encoder.trainable_variables})
    ['lora_kernel_a', 'lora_kernel_b']
    >>> encoder.lora_settings()
    {'rank': 4, 'alpha': 4, 'targets': ['query', 'value']}
    >>> bool(np.all(encoder(inputs)["pooled_output"] == before))    # B starts at zero
    True
    >>> encoder.save_lora_weights(f"{tmp}/adapter.npz")
"""
from __future__ import annotations

import json

import keras
import numpy as np

from bert_tf.choices import DEFAULT_LORA_TARGETS, LORA_TARGETS
from bert_tf.errors import ConfigError
from bert_tf.io.atomic import atomic_file
from bert_tf.io.checkpoint import CheckpointError
from bert_tf.layers import TransformerBlock


def _encoder_of(model: keras.Model) -> keras.Model:
    return getattr(model, "encoder", model)  # a task model's encoder, or the encoder itself


def target_layers(encoder: keras.Model, targets) -> dict:
    """Google name (`bert/encoder/layer_0/attention/self/query`) -> the dense layer,
    for the layers named in `targets` of every Transformer block."""
    blocks = [layer for layer in encoder.layers if isinstance(layer, TransformerBlock)]
    return {f"bert/encoder/layer_{i}/{name}": dense
            for i, block in enumerate(blocks)
            for name, dense in block.dense_layers().items() if dense.name in targets}


def lora_layers(model: keras.Model) -> dict:
    """Google name -> each dense layer of the model's encoder that has LoRA enabled."""
    return {name: dense for name, dense in target_layers(_encoder_of(model), LORA_TARGETS).items()
            if dense.lora_enabled}


def lora_settings(model: keras.Model) -> dict | None:
    """`{"rank", "alpha", "targets"}` of the LoRA on the model's encoder, None without."""
    layers = list(lora_layers(model).values())
    if not layers:
        return None
    return {"rank": layers[0].lora_rank, "alpha": layers[0].lora_alpha,
            "targets": [t for t in LORA_TARGETS if any(d.name == t for d in layers)]}


def enable_lora(encoder: keras.Model, rank: int, targets=DEFAULT_LORA_TARGETS,
                alpha: float | None = None) -> None:
    """Freezes every weight of `encoder` and enables LoRA of `rank` on the dense layers
    named in `targets` (see the module). `alpha` scales the update by `alpha / rank`
    (default `rank`: by 1). Raises `ConfigError` for a rank below 1, an unknown or
    empty target list, or an encoder that already has LoRA."""
    targets = tuple(targets)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"LoRA rank {rank!r}: a whole number of at least 1")
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise ConfigError(f"LoRA targets {list(targets)}: choose among {', '.join(LORA_TARGETS)}")
    settings = lora_settings(encoder)
    if settings is not None:
        raise ConfigError(f"this encoder already has LoRA ({settings}); Keras enables it "
                          "once per layer")
    for variable in encoder.weights:
        variable.trainable = False
    for dense in target_layers(encoder, targets).values():
        dense.enable_lora(rank, lora_alpha=alpha)


def plain_weights(model: keras.Model) -> list[np.ndarray]:
    """`model.get_weights()` as the same model without LoRA holds them: each LoRA
    layer's kernel merged (`W + (alpha / rank) · A · B`) and its `A` and `B` left out.
    A copy built from the model's config (which holds no LoRA) takes them with
    `set_weights`."""
    layers = lora_layers(model).values()
    if not layers:
        return model.get_weights()
    merged = {id(_kernel_variable(dense)): dense.kernel for dense in layers}
    adapters = {id(v) for dense in layers for v in (dense.lora_kernel_a, dense.lora_kernel_b)}
    return [np.asarray(keras.ops.convert_to_numpy(merged.get(id(v), v)))
            for v in model.weights if id(v) not in adapters]


def _kernel_variable(dense):
    """The plain kernel `W` of a dense layer (with LoRA, `dense.kernel` is merged)."""
    return next(v for v in dense.weights if v.name == "kernel")


def save_lora_weights(encoder: keras.Model, path: str) -> None:
    """Writes the LoRA matrices of `encoder` (and its rank, alpha and targets) to the
    `.npz` file `path`, atomically."""
    settings = lora_settings(encoder)
    if settings is None:
        raise ConfigError("this encoder has no LoRA to save: call enable_lora(rank) first")
    arrays = {}
    for name, dense in lora_layers(encoder).items():
        arrays[f"{name}/lora_a"] = keras.ops.convert_to_numpy(dense.lora_kernel_a)
        arrays[f"{name}/lora_b"] = keras.ops.convert_to_numpy(dense.lora_kernel_b)
    with atomic_file(path, "wb") as f:
        np.savez(f, lora_settings=np.array(json.dumps(settings)), **arrays)


def load_lora_weights(encoder: keras.Model, path: str) -> None:
    """Assigns the LoRA matrices saved in `path` to `encoder`, enabling LoRA with the
    file's rank, alpha and targets if the encoder has none (else they must match).
    Every matrix is checked, by name and shape, before any is assigned."""
    with np.load(path) as f:
        arrays = dict(f)
    if "lora_settings" not in arrays:
        raise CheckpointError(f"{path} holds no LoRA weights (no lora_settings entry)")
    saved = json.loads(str(arrays.pop("lora_settings")))
    settings = lora_settings(encoder)
    if settings is None:
        enable_lora(encoder, saved["rank"], saved["targets"], saved["alpha"])
    elif settings != saved:
        raise ConfigError(f"{path} holds LoRA {saved}; this encoder has LoRA {settings}")
    pairs = []
    for name, dense in lora_layers(encoder).items():
        for part, variable in (("lora_a", dense.lora_kernel_a), ("lora_b", dense.lora_kernel_b)):
            key = f"{name}/{part}"
            if key not in arrays:
                raise CheckpointError(f"{path}: missing {key} (expected shape "
                                      f"{tuple(variable.shape)})")
            if arrays[key].shape != tuple(variable.shape):
                raise CheckpointError(f"{path}: {key} has shape {arrays[key].shape}, the "
                                      f"encoder needs {tuple(variable.shape)}")
            pairs.append((variable, arrays[key]))
    for variable, value in pairs:
        variable.assign(value)
