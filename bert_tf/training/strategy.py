"""Where and how training runs: `RunOptions` (the settings every training job
shares), distribution strategies on CPU, GPU and TPU, mixed precision, and the
Keras 3 fix that lets `fit` run under `MultiWorkerMirroredStrategy`."""
from __future__ import annotations

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from bert_tf.choices import MIXED_PRECISIONS as PRECISIONS, STRATEGIES
from bert_tf.errors import ConfigError
from bert_tf.training.micro_batch import check_micro_batches

MAX_SEED = 2**32 - 1  # NumPy's and Keras' seeds are unsigned 32-bit integers


def check_seed(seed: int) -> None:
    """Raises ConfigError unless `seed` can seed NumPy, TensorFlow and Keras."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed (--seed) {seed}: must be from 0 to 2**32 - 1 ({MAX_SEED})")


@dataclasses.dataclass(kw_only=True)
class RunOptions:
    """Where and how a training job runs; the base of every job's config.

    Attributes:
        strategy: one of `STRATEGIES` (`auto`: a TPU if named, else all GPUs, else the CPU).
        tpu: TPU address for `strategy="tpu"` or `"auto"` (default `$TPU_NAME`).
        cpu_replicas: split the CPU into this many logical devices (to try `mirrored`
            without GPUs; takes effect only before TensorFlow initialises).
        mixed_precision: `none`, `bfloat16` or `float16` (Keras' mixed policies).
        checkpoint_every: steps between resumable checkpoints.
        jit_compile: compile the train step with XLA.
        micro_batches: compute each batch in this many slices, one after another, and
            apply their summed gradients once (`bert_tf.training.micro_batch`): the
            same step with about 1/N of the activation memory.
        overwrite: replace a finished run, or a run of the same command with other
            settings (only the files the command writes; never another folder).
        quiet: no progress bars. What still prints: Keras' one line per epoch, and a
            line at the start and at the end of each long step (the dev evaluation or
            evaluation, SQuAD's predictions, the exports); without `quiet` the dev
            evaluation shows a progress bar between its two lines.
    """
    strategy: str = "auto"
    tpu: str | None = None
    cpu_replicas: int = 1
    mixed_precision: str = "none"
    checkpoint_every: int = 200
    jit_compile: bool = False
    micro_batches: int = 1
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self):
        """Settings that cannot work together stop here, before a run claims its folder."""
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy {self.strategy!r}: choose one of {STRATEGIES}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed precision {self.mixed_precision!r}: choose one of "
                              f"{PRECISIONS}")
        check_micro_batches(self.micro_batches, self.jit_compile)
        if self.strategy == "tpu" and not (self.tpu or os.environ.get("TPU_NAME")):
            raise ConfigError("strategy tpu (--strategy tpu) needs the TPU's name or address: "
                              "pass --tpu NAME (--tpu local on a TPU VM) or set TPU_NAME")

    @property
    def multi_worker(self) -> bool:
        return self.strategy == "multi_worker"

    @property
    def verbose(self):
        """Keras `fit`'s `verbose`: a progress bar unless `quiet`."""
        return 2 if self.quiet else "auto"


def resolve_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """`auto`: a TPU if one is named (`--tpu` or `TPU_NAME`), else all GPUs with
    MirroredStrategy, else the CPU. `multi_worker` reads the cluster from `TF_CONFIG`.
    `mirrored` without GPUs mirrors over the logical CPU devices (see `split_cpu`)."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    tpu = tpu or os.environ.get("TPU_NAME")
    if name == "auto":
        name = "tpu" if tpu else ("mirrored" if tf.config.list_logical_devices("GPU") else "cpu")
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not tf.config.list_logical_devices("GPU"):
            raise ConfigError("strategy gpu: TensorFlow sees no GPU on this machine")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy multi_worker needs the cluster in TF_CONFIG")
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def split_cpu(n: int) -> None:
    """Splits the CPU into `n` logical devices, so that `mirrored` can be exercised
    without GPUs. Only possible before TensorFlow initialises its devices."""
    if n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError:  # already initialised: fine if it has the devices asked for
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise ConfigError(f"cpu_replicas={n}: TensorFlow has already started with {have} "
                              "CPU device(s); split the CPU before anything else runs") from None


def chief_from_tf_config() -> tuple[bool, int]:
    """(is this task the chief, its index), read from `TF_CONFIG` before any strategy
    exists, so that only the chief checks and writes the run dir."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    cluster = resolver.cluster_spec().as_dict()
    if not cluster:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0
                                     and "chief" not in cluster)
    return chief, task_id


def fit_under_multi_worker(model, strategy) -> None:
    """Lets Keras 3.13's `fit` run under MultiWorkerMirroredStrategy (call after
    `compile`). Two defects in keras/src/backend/tensorflow/trainer.py stop it:

    1. `_maybe_symbolic_build` passes the whole first batch (a dict) to
       `strategy.reduce`, which takes one tensor. Building from the local replica's
       batch needs only its shapes, no collective.
    2. The step logs (scalars) are reduced with `axis=0`: "Invalid reduction
       dimension 0". Returning them with shape [1] makes that reduction valid.
    """
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = next(batches)
                break
        with strategy.scope():
            model._symbolic_build(data_batch=tf.nest.map_structure(local, data_batch))

    def rank_one(step):
        return lambda data: tf.nest.map_structure(lambda t: tf.reshape(t, [1]), step(data))

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = rank_one(model.train_step)
    model.test_step = rank_one(model.test_step)


def prepare_training(options: RunOptions, seed: int | None) -> tf.distribute.Strategy:
    """Seeds everything (unless `seed` is None), sets the mixed-precision policy and
    returns the strategy: the steps every training job takes before building its model."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    split_cpu(options.cpu_replicas)
    set_mixed_precision(options.mixed_precision)
    return resolve_strategy(options.strategy, options.tpu)


@contextlib.contextmanager
def policy_scope(name: str):
    """Keras' global dtype policy set to `name` inside the block, restored after it."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def set_mixed_precision(mode: str) -> None:
    policy = {"none": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    if mode not in policy:
        raise ConfigError(f"mixed precision {mode!r}: choose one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(policy[mode])
