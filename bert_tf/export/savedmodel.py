"""The pieces of the exports: the encoder's Reusable SavedModel root, the
preprocessor's, TF Serving warm-up requests, versions and atomic writes
(`bert_tf.export.export_model` puts them together)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil

import keras
import tensorflow as tf

from bert_tf.config import INPUT_NAMES
from bert_tf.errors import ConfigError, OutputError
from bert_tf.extras import optional
from bert_tf.io.atomic import alive, check_replaceable, disk_full_names, folder_lock, \
    make_temp_dir, remove_stale_temps, temp_owner
from bert_tf.models.serving import METHOD_NAMES, as_float32

EXPORTS = ("encoder", "preprocessor", "serving")


def _input_specs(names=INPUT_NAMES):
    return {n: tf.TensorSpec([None, None], tf.int32, name=n) for n in names}


def _tf_variables(model: keras.Model, trainable=None):
    """The tf.Variables behind a Keras 3 model's variables."""
    vs = model.variables if trainable is None else (
        model.trainable_variables if trainable else model.non_trainable_variables)
    return [v.value if isinstance(v, keras.Variable) else v for v in vs]


# -- the encoder ------------------------------------------------------------------------

def build_encoder_module(encoder: keras.Model, vocab_file: str, do_lower_case: bool,
                         mlm_model: keras.Model | None = None):
    """A Reusable SavedModel root for `encoder` (see the module docstring)."""
    root = tf.train.Checkpoint()
    # The tf.Variables alone (TF Hub's `.variables`): tracking the Keras model as well
    # would save every weight a second time, under its Keras path.
    root.variables = _tf_variables(encoder)
    root.trainable_variables = _tf_variables(encoder, trainable=True)
    root.regularization_losses = []
    root.vocab_file = tf.saved_model.Asset(vocab_file)
    root.do_lower_case = tf.Variable(do_lower_case, trainable=False, name="do_lower_case")

    @tf.function
    def call(inputs, training=False):
        out = as_float32(encoder(inputs, training=training))
        return {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"],
                "default": out["pooled_output"], "encoder_outputs": list(out["encoder_outputs"])}

    for training in (False, True):
        call.get_concrete_function(_input_specs(), training=training)
    root.__call__ = call

    @tf.function(input_signature=[_input_specs()])
    def serve(inputs):
        out = as_float32(encoder(inputs, training=False))
        return {"sequence_output": out["sequence_output"], "pooled_output": out["pooled_output"]}
    root.serving_default = serve

    if mlm_model is not None:
        root.mlm = _build_mlm_module(mlm_model)
    return root, {"serving_default": serve.get_concrete_function()}


def _build_mlm_module(mlm_model):
    mlm = tf.train.Checkpoint()
    mlm.variables = _tf_variables(mlm_model)
    mlm.trainable_variables = _tf_variables(mlm_model, trainable=True)
    mlm.regularization_losses = []

    @tf.function
    def call(inputs, training=False):
        return as_float32(mlm_model(inputs, training=training))
    specs = {**_input_specs(), "masked_lm_positions": tf.TensorSpec([None, None], tf.int32,
                                                                    name="masked_lm_positions")}
    for training in (False, True):
        call.get_concrete_function(specs, training=training)
    mlm.__call__ = call
    return mlm


# -- the preprocessor -----------------------------------------------------------------------

def build_preprocessor_module(tokenizer, seq_length: int):
    """Root call: strings `[B]` -> three int32 inputs `[B, seq_length]`;
    `.tokenize(strings)` -> RaggedTensor `[B, words, pieces]`, with
    `.tokenize.get_special_tokens_dict()`; `.bert_pack_inputs([a] or [a, b], seq_length)`."""
    root = tf.train.Checkpoint()
    root.tokenizer = tokenizer
    strings = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[strings])
    def call(texts):
        return tokenizer.preprocess(texts, seq_length)
    root.__call__ = call

    tokenize = tf.train.Checkpoint()
    tokenize.__call__ = tf.function(tokenizer.tokenize, input_signature=[strings])
    special = {"vocab_size": tokenizer.vocab_size, **{
        k: v for k, v in tokenizer.special_ids.items() if k != "unknown_id"}}
    tokenize.get_special_tokens_dict = tf.function(
        lambda: {k: tf.constant(v, tf.int32) for k, v in special.items()}, input_signature=[])
    root.tokenize = tokenize

    pack = tf.train.Checkpoint()

    @tf.function
    def bert_pack_inputs(inputs, seq_length=seq_length):
        return tokenizer.pack_inputs(list(inputs), seq_length)
    ragged = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)
    for n in (1, 2):
        bert_pack_inputs.get_concrete_function([ragged] * n, tf.TensorSpec([], tf.int32))
    pack.__call__ = bert_pack_inputs
    root.bert_pack_inputs = pack
    return root, {"serving_default": call.get_concrete_function()}


# -- end to end, for TF Serving -------------------------------------------------------------


WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(export_dir: str, examples: dict[str, list[str]], model_name="bert",
                          signature="serving_default") -> str | None:
    """`assets.extra/tf_serving_warmup_requests`: TFRecord of PredictionLog records,
    one per example batch size 1..n, for `tensorflow_model_server --enable_model_warmup`.
    The records are TF Serving's protos (`pip install 'bert-tf[serving]'`): without
    them, no file (one note on stderr) and None; the export serves all the same."""
    prediction_log_pb2 = optional("tensorflow_serving.apis.prediction_log_pb2", "serving",
                                  WARMUP_FILE)
    if prediction_log_pb2 is None:
        return None
    from tensorflow_serving.apis import model_pb2, predict_pb2  # the same package
    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    n = len(next(iter(examples.values())))
    with tf.io.TFRecordWriter(path) as writer:
        for size in range(1, n + 1):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, texts in examples.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(texts[:size], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


# -- versions and atomic writes ----------------------------------------------------------------

def existing_versions(base: str) -> set[int]:
    """The integer versions under any of base's exports."""
    versions = set()
    for name in EXPORTS:
        d = os.path.join(base, name)
        if os.path.isdir(d):
            versions |= {int(v) for v in os.listdir(d) if re.fullmatch(r"\d+", v)}
    return versions


def claimed_versions(base: str) -> dict[int, int]:
    """Versions that running exports are writing: version -> pid (their claim files)."""
    claims = {}
    for name in os.listdir(base) if os.path.isdir(base) else ():
        owner = temp_owner(name)
        if owner and re.fullmatch(r"version-\d+", owner[0]) and alive(owner[1]):
            claims[int(owner[0].split("-")[1])] = owner[1]
    return claims


# The files a SavedModel export holds (relative paths): `--overwrite` replaces a version
# folder only when it holds nothing else.
SAVEDMODEL_FILES = (r"saved_model\.pb|fingerprint\.pb|variables|variables/variables\."
                    r"(index|data-\d+-of-\d+)|assets|assets/[^/]+|assets\.extra|"
                    r"assets\.extra/tf_serving_warmup_requests")
# TF Serving reads version folder names as 64-bit integers.
MAX_VERSION = 2 ** 63 - 1


def check_version(base: str, version: int | None, overwrite: bool) -> None:
    """An explicit `version` is an integer from 1 to `MAX_VERSION` and is free under
    `base`, or (with `overwrite`) each of its folders holds only a SavedModel's files:
    a user's file in `base/serving/1` is never deleted. Raises `ConfigError` or
    `OutputError` naming the version or the file."""
    if version is None:
        return
    if isinstance(version, bool) or not isinstance(version, int) or \
            not 1 <= version <= MAX_VERSION:
        raise ConfigError(f"version {version} (--version): export versions are integers from "
                          f"1 to {MAX_VERSION} (TF Serving reads them as 64-bit integers)")
    if version not in existing_versions(base):
        return
    if not overwrite:
        raise OutputError(f"version {version} exists under {base}; pass overwrite "
                          "(--overwrite) to replace it, or no version for the next free one")
    for name in EXPORTS:
        check_replaceable(os.path.join(base, name, str(version)), SAVEDMODEL_FILES,
                          "a SavedModel export")


def next_version(base: str) -> int:
    """One more than the highest version under `base`, written or being written."""
    return max(existing_versions(base) | set(claimed_versions(base)) | {0}) + 1


@contextlib.contextmanager
def claim_version(base: str, version: int | None, overwrite: bool):
    """Yields the version this export writes, claimed so that no other export on this
    machine takes it meanwhile (a claim file `.version-N.tmp-PID-...` in `base`, made
    under a lock on `base`). Without a `version`, the next free one; an explicit one
    must not be claimed by another export, nor exist unless `overwrite` (and then hold
only a SavedModel's files: `check_version`). Stale
    temporary folders and claims of killed exports are removed first."""
    with folder_lock(base):
        for folder in [base] + [os.path.join(base, name) for name in EXPORTS]:
            if os.path.isdir(folder):
                remove_stale_temps(folder)
        claims = claimed_versions(base)
        if version is None:
            version = next_version(base)
        elif version in claims:
            raise OutputError(f"version {version} under {base} is being written by another "
                              f"export (process {claims[version]})")
        else:
            check_version(base, version, overwrite)
        claim = make_temp_dir(os.path.join(base, f"version-{version}"))
    try:
        yield version
    finally:
        shutil.rmtree(claim, ignore_errors=True)


def set_method_names(export_dir: str, method_names: dict[str, str]) -> None:
    """Gives the signatures `method_names` (key -> method name) in `export_dir`'s
    saved_model.pb. `tf.saved_model.save` names every signature's method
    `tensorflow/serving/predict` (tensorflow/tensorflow #38081), and TF Serving's
    Classify and Regress APIs run only signatures named `tensorflow/serving/classify`
    and `.../regress`. The fingerprint (fingerprint.pb, a checksum of saved_model.pb)
    is written again as `tf.saved_model.save` writes it."""
    if not method_names:
        return
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.saved_model import fingerprinting_utils
    path = os.path.join(export_dir, "saved_model.pb")
    message = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        message.ParseFromString(f.read())
    for meta_graph in message.meta_graphs:
        for key, method in method_names.items():
            meta_graph.signature_def[key].method_name = method
    with open(path, "wb") as f:
        f.write(message.SerializeToString())
    fingerprinting_utils.write_fingerprint(export_dir)


def save_to_temp(target: str, root, signatures, after=None) -> str:
    """`tf.saved_model.save` into a hidden temporary folder beside `target` (which
    TF Serving ignores: its name is not an integer); `after(tmp_dir)` may add
    files (warm-up requests). Returns the folder, to be renamed into place."""
    tmp = make_temp_dir(target)
    try:
        with disk_full_names(target, {tmp: target}):
            tf.saved_model.save(root, tmp, signatures=signatures)
            set_method_names(tmp, {key: METHOD_NAMES[key] for key in signatures
                                   if key in METHOD_NAMES})
            if after:
                after(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


# -- the command ----------------------------------------------------------------------------


# What the printed requests send, by input name.
EXAMPLE_INPUTS = {"text": "a wonderful film", "text_b": "a moving story", "question": "Who?",
                  "context": "Ann did."}


def signature_defs(export_dir: str) -> dict:
    """The SignatureDefs of a SavedModel's (first) meta graph, by key, read from
    saved_model.pb without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2
    message = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        message.ParseFromString(f.read())
    return dict(message.meta_graphs[0].signature_def)


def serving_instructions(base: str, model_name: str, serving_dir: str) -> str:
    """How to serve `base/serving` under `model_name` with TF Serving: the command, a
    `models.config`, and a `curl` for each signature of the export `serving_dir` (its
    inputs filled with examples; Classify and Regress signatures by their own APIs)."""
    serving_base = os.path.join(os.path.abspath(base), "serving")
    url = f"localhost:8501/v1/models/{model_name}"
    batching = os.path.join(os.path.abspath(serving_dir), "assets.extra",
                            "batching_parameters.txt")
    batching = (f" --enable_batching --batching_parameters_file={batching}"
                if os.path.exists(batching) else "")
    lines = [f"TensorFlow Serving:\n"
             f"  tensorflow_model_server --rest_api_port=8501 --model_name={model_name} "
             f"--model_base_path={serving_base} --enable_model_warmup{batching}\n"
             f"models.config:\n"
             f"  model_config_list {{\n    config {{\n      name: '{model_name}'\n"
             f"      base_path: '{serving_base}'\n      model_platform: 'tensorflow'\n    }}\n  }}",
             "REST:"]
    signatures = signature_defs(serving_dir)
    for key in sorted(signatures, key=lambda k: (k != "serving_default", k)):
        signature = signatures[key]
        method = signature.method_name.rsplit("/", 1)[-1]
        if key.startswith("__") or method not in ("predict", "classify", "regress"):
            continue
        outputs = ", ".join(sorted(signature.outputs))
        named = {} if key == "serving_default" else {"signature_name": key}
        if method == "predict":
            body = {**named, "instances": [{name: EXAMPLE_INPUTS.get(name, "...")
                                            for name in sorted(signature.inputs)}]}
        else:   # tf.Example features: text [, text_b]
            features = ["text", "text_b"] if "text_b" in signatures["serving_default"].inputs \
                else ["text"]
            body = {**named, "examples": [{name: EXAMPLE_INPUTS[name] for name in features}]}
        lines.append(f"  # {key} -> {outputs}\n"
                     f"  curl -d '{json.dumps(body)}' {url}:{method}")
    return "\n".join(lines)
