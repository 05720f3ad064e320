"""What every bert-tf model shares: its weights under Google's checkpoint names,
and reading and writing model dirs (`bert_tf.io.checkpoint`) with those names."""
from __future__ import annotations

import inspect
import os

import keras
import numpy as np

from bert_tf.errors import ConfigError
from bert_tf.models.lora import lora_layers, plain_weights
from bert_tf.preprocessing.preprocessor import BertPreprocessor
from bert_tf.presets import resolve_model_dir
from bert_tf.training.strategy import policy_scope
from bert_tf.io.checkpoint import CKPT_NAME, CheckpointError, read_checkpoint, read_meta, \
    write_model_dir


class CheckpointNames:
    """Mixin for models whose weights have Google names.

    Subclasses define `checkpoint_variables()` (Google name -> Keras variable) and
    may list in `TRANSPOSED` the names Google stores transposed (`output_weights`
    `[num_labels, H]` of a `[H, num_labels]` kernel)."""

    TRANSPOSED: tuple[str, ...] = ()

    def checkpoint_variables(self) -> dict:
        raise NotImplementedError

    def checkpoint_tensors(self) -> dict[str, np.ndarray]:
        """Google name -> numpy array, as a model dir stores it."""
        out = {}
        for name, var in self.checkpoint_variables().items():
            value = np.asarray(keras.ops.convert_to_numpy(var))
            out[name] = value.T if name in self.TRANSPOSED else value
        return out

    def assign_checkpoint(self, tensors: dict[str, np.ndarray], source: str,
                          optional=lambda name: False) -> None:
        """Assigns `tensors` (Google names) to the variables, checking every name
        and shape first; names for which `optional(name)` holds may be absent."""
        pairs = []
        for name, var in self.checkpoint_variables().items():
            if not isinstance(var, keras.Variable):  # a LoRA layer's merged W + A·B
                raise ConfigError(f"{name} has LoRA enabled: load {source} into the model "
                                  "before enable_lora")
            if name not in tensors:
                if optional(name):
                    continue
                raise CheckpointError(f"{source}: missing tensor {name} "
                                      f"(expected shape {tuple(var.shape)})")
            value = tensors[name].T if name in self.TRANSPOSED else tensors[name]
            if tuple(value.shape) != tuple(var.shape):
                shape = tuple(var.shape)[::-1] if name in self.TRANSPOSED else tuple(var.shape)
                raise CheckpointError(f"{source}: tensor {name} has shape "
                                      f"{tuple(tensors[name].shape)}, the model needs {shape}")
            pairs.append((var, value))
        for var, value in pairs:
            var.assign(value)

    def load_model_dir_weights(self, model_dir: str, optional=lambda name: False) -> None:
        prefix = os.path.join(model_dir, CKPT_NAME)
        self.assign_checkpoint(read_checkpoint(prefix), prefix, optional)

    def model_dir_task(self) -> dict | None:
        """The `task` entry of `bert_tf.json` (None for an encoder)."""
        return None

    def save_model_dir(self, out_dir: str, preprocessor=None, meta: dict | None = None,
                       overwrite: bool = False) -> str:
        """Writes a model dir (Google's layout + `bert_tf.json`) atomically.

        Args:
            out_dir: the folder to write.
            preprocessor: a `BertPreprocessor` for the vocab and casing (default:
                the model's own).
            meta: more entries for `bert_tf.json` (`source`, and under `task`
                entries such as the task's name).
            overwrite: replace an existing `out_dir`.
        """
        preprocessor = preprocessor or getattr(self, "preprocessor", None)
        if preprocessor is None:
            raise ConfigError("save_model_dir needs the vocabulary: pass preprocessor=, or "
                              "build the model with one")
        meta = dict(meta or {})
        task = self.model_dir_task()
        if task is not None:
            meta["task"] = {**task, **meta.get("task", {})}
        meta["do_lower_case"] = preprocessor.lower_case
        encoder = getattr(self, "encoder", self)  # a task model's, or the encoder itself
        return write_model_dir(out_dir, encoder.bert_config, preprocessor.vocabulary,
                               self.checkpoint_tensors(), meta, overwrite=overwrite)


def with_dtype_policy(model: keras.Model, policy: str) -> keras.Model:
    """`model` computing under the Keras dtype policy `policy` (`float32`,
    `mixed_bfloat16`, ...): the model itself if its layers already do (and it has no
    LoRA), else a copy built from its config under that policy, with its weights
    (sharing no variables; LoRA merged into the kernels, `bert_tf.models.lora`).

    Example:
        >>> import bert_tf
        >>> encoder = bert_tf.load_encoder(model_dir)
        >>> bf16 = with_dtype_policy(encoder, "mixed_bfloat16")
        >>> bf16.get_layer("layer_0").compute_dtype, bf16.get_layer("layer_0").variable_dtype
        ('bfloat16', 'float32')
        >>> with_dtype_policy(encoder, "float32") is encoder
        True
    """
    encoder = getattr(model, "encoder", model)
    if encoder.get_layer("embeddings").dtype_policy.name == policy and not lora_layers(model):
        return model
    with policy_scope(policy):
        copy = type(model).from_config(model.get_config())
    copy.set_weights(plain_weights(model))
    return copy


class WrapsEncoder:
    """Mixin for task models built on a `BertEncoder` (constructor argument `encoder`,
    and `preprocessor` where the model takes one): their config holds both serialised,
    and `with_skip_padding` rebuilds them on a padding-skipping copy of the encoder."""

    def wrapped_config(self, **config) -> dict:
        """`get_config`: name, trainable, the encoder (and preprocessor), and `config`."""
        out = {"name": self.name, "trainable": self.trainable,
               "encoder": keras.saving.serialize_keras_object(self.encoder)}
        if hasattr(self, "preprocessor"):
            out["preprocessor"] = None if self.preprocessor is None \
                else keras.saving.serialize_keras_object(self.preprocessor)
        return {**out, **config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("encoder", "preprocessor"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects)
        return cls(**config)

    @classmethod
    def from_preset(cls, preset: str, seq_length: int | None = 128, skip_padding: bool = False,
                    **kwargs):
        """A new model of this class on the pretrained encoder of `preset` (a name from
        `bert_tf.presets`, such as "all-MiniLM-L6-v2", converted once into the cache, or
        a model dir), with its preprocessor of `seq_length` (where the class takes one);
        `kwargs` go to the constructor. The head is new (to load a fine-tuned model dir
        with its head, use `from_model_dir` or `bert_tf.load_model`).

        >>> import bert_tf
        >>> model = bert_tf.BertClassifier.from_preset(model_dir, num_classes=2)  # or a name
        >>> model.predict(["a fine film", "a dull one"], verbose=0).shape
        (2, 2)
        """
        from bert_tf.models.encoder import BertEncoder  # it imports this module
        model_dir = resolve_model_dir(preset)
        if "preprocessor" in inspect.signature(cls).parameters:  # not BertPretrainer
            kwargs["preprocessor"] = BertPreprocessor.from_model_dir(model_dir, seq_length)
        return cls(BertEncoder.from_model_dir(model_dir, skip_padding=skip_padding), **kwargs)

    def with_skip_padding(self):
        """This model on an encoder with `skip_padding=True` (a copy sharing no
        variables, see `BertEncoder.with_skip_padding`), for serving."""
        if self.encoder.skip_padding:
            return self
        copy = type(self).from_config({**self.get_config(),
                                       "encoder": self.encoder.with_skip_padding()})
        copy.set_weights(plain_weights(self))  # LoRA merged into the kernels
        return copy


class LeavesOutUnused:
    """Mixin for task models whose head does not use every encoder weight (spans,
    or pooling other than `pooled_output`, never see BERT's pooler): those weights
    are left out of the trainable variables, so that no optimizer slot is made for
    them and Keras does not warn of missing gradients. The encoder itself, which
    other models may share, is not changed."""

    def unused_variables(self) -> list:
        return []

    def _unused_ids(self) -> set:
        return {id(v) for v in self.unused_variables()}

    @property
    def trainable_weights(self):
        unused = self._unused_ids()
        return [w for w in super().trainable_weights if id(w) not in unused]

    @property
    def trainable_variables(self):
        return self.trainable_weights

    @property
    def non_trainable_weights(self):
        unused = self._unused_ids()
        return super().non_trainable_weights + [
            w for w in super().trainable_weights if id(w) in unused]

    @property
    def non_trainable_variables(self):
        return self.non_trainable_weights


def read_task(model_dir: str, task_type: str) -> dict:
    """The `task` entry of a model dir's `bert_tf.json`, which must be of `task_type`."""
    task = read_meta(model_dir).get("task") or {}
    if task.get("type") != task_type:
        raise CheckpointError(f"{model_dir} has no {task_type} head (bert_tf.json task type is "
                              f"{task.get('type')!r})")
    return task
