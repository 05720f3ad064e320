"""Makes `google_tf1/`: a tiny Google BERT TF1 checkpoint written by google-research/bert's
own `modeling.py`, and that code's outputs on a fixed batch. bert-tf's converter and
encoder are tested against it (tests/test_convert.py), so the reference is Google's
code, not a checkpoint bert-tf wrote.

`modeling.py` is not vendored here: pass it (the file, a checkout of
https://github.com/google-research/bert, or a bare git dir of it, read at HEAD). The
fixture was made at master eedf5716ce1268e56f0a50264a88cafad334ac61 (March 2020; modeling.py
last changed in bee6030, February 2019), with bert-tf's own venv (TensorFlow 2.20, tf-slim and
tf_keras installed):

    git clone https://github.com/google-research/bert /tmp/google-bert
    .venv/bin/python tests/reference/make_google_tf1.py /tmp/google-bert --cross-check

Writes, into tests/reference/google_tf1/ (or `--out`):
- bert_config.json (`modeling.BertConfig.to_json_string()`), vocab.txt (120 tokens),
  bert_model.ckpt.index / .data-00000-of-00001 (`tf.train.Saver`, Google's names);
- expected_outputs.npz: input_ids, input_mask, token_type_ids (int32 [3, 16]; two
  rows padded, two with a second segment), sequence_output [3, 16, 32] and
  pooled_output [3, 32] from `BertModel(is_training=False)`, float32; plus the
  sha256 and commit of the modeling.py used.

How modeling.py runs on TensorFlow 2: its `import tensorflow as tf` is given
`tf.compat.v1` with `disable_v2_behavior()` (graph mode, variable scopes,
`tf.get_variable`, sessions, as in TF 1.x). Only two things TF 2 removed are
shimmed, each by the same ops the TF 1.15 code ran:
- `tf.contrib.layers.layer_norm` (used by modeling.layer_norm with
  begin_norm_axis=-1, begin_params_axis=-1): variable scope `scope` or a new
  `LayerNorm`; `beta` (zeros) and `gamma` (ones) of shape [hidden];
  `tf.nn.moments` over the last axis; `tf.nn.batch_normalization` with
  variance_epsilon=1e-12, the value contrib hard-codes for float32 (it has no
  epsilon argument; Google's bert_config.json has none either, and bert-tf's
  layer_norm_eps defaults to 1e-12).
- `tf.layers.dense` (tf.compat.v1.layers is unavailable under Keras 3): variable
  scope `name` or a new `dense`; `kernel` [in, units] with the given initializer,
  `bias` zeros; `tf.matmul` + `tf.nn.bias_add` + activation. modeling.py only
  calls it on rank-2 inputs, where the TF 1 layer ran exactly these ops.
`tf.gfile` exists in tf.compat.v1 and is not shimmed. With `--cross-check` the saved
checkpoint is restored into a second graph built with the original
implementations, tf_slim.layers.layer_norm (tf.contrib.layers' code, moved) and
tf_keras' legacy tf.layers.dense, and both graphs' outputs must agree to 1e-6.

Weights: Google's initialisers (truncated normal, initializer_range 0.2 rather than
0.02 so that attention is far from uniform, seed 0), then every bias, LayerNorm beta
and gamma is moved off its 0 / 1 start by N(0, 0.1) noise, as a trained checkpoint's
are: a converter that swapped beta and gamma, dropped a bias or transposed a square
kernel then gives clearly different outputs.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import types

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow.compat.v1 as tf1  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
CONFIG = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=64, type_vocab_size=2,
              initializer_range=0.2)
BATCH, SEQ = 3, 16
# Real tokens and first-segment length of each row ([CLS] a [SEP] b [SEP]).
ROWS = [(16, 16), (11, 5), (7, 3)]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_modeling(source):
    """modeling.py's text and (sha256, commit or '') from a file, a checkout or a git dir."""
    commit = ""
    if os.path.isfile(source):
        text = open(source, encoding="utf-8").read()
    elif os.path.isfile(os.path.join(source, "modeling.py")):
        text = open(os.path.join(source, "modeling.py"), encoding="utf-8").read()
        commit = _git(["-C", source, "rev-parse", "HEAD"])
    else:  # a bare git dir
        text = _git(["--git-dir", source, "show", "HEAD:modeling.py"], strip=False)
        commit = _git(["--git-dir", source, "rev-parse", "HEAD"])
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest(), commit


def _git(args, strip=True):
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.strip() if strip else out


# -- the two shims (see the docstring) -------------------------------------------------
def layer_norm(inputs, center=True, scale=True, activation_fn=None, reuse=None,
               trainable=True, begin_norm_axis=1, begin_params_axis=-1, scope=None):
    """tf.contrib.layers.layer_norm of TF 1.15 (float32, no collections)."""
    with tf1.variable_scope(scope, "LayerNorm", [inputs], reuse=reuse):
        inputs = tf1.convert_to_tensor(inputs)
        rank = inputs.shape.ndims
        if begin_norm_axis < 0:
            begin_norm_axis += rank
        params_shape = inputs.shape[begin_params_axis:]
        beta = gamma = None
        if center:
            beta = tf1.get_variable("beta", params_shape, inputs.dtype,
                                    tf1.zeros_initializer(), trainable=trainable)
        if scale:
            gamma = tf1.get_variable("gamma", params_shape, inputs.dtype,
                                     tf1.ones_initializer(), trainable=trainable)
        mean, variance = tf1.nn.moments(inputs, list(range(begin_norm_axis, rank)),
                                        keep_dims=True)
        outputs = tf1.nn.batch_normalization(inputs, mean, variance, offset=beta, scale=gamma,
                                             variance_epsilon=1e-12)
        outputs.set_shape(inputs.shape)
        return activation_fn(outputs) if activation_fn is not None else outputs


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=None, name=None, reuse=None, trainable=True):
    """tf.layers.dense of TF 1.x for rank-2 inputs."""
    if inputs.shape.ndims != 2:
        raise ValueError("this shim only covers the rank-2 inputs modeling.py passes")
    with tf1.variable_scope(name, "dense", [inputs], reuse=reuse):
        kernel = tf1.get_variable("kernel", [inputs.shape[-1], units], inputs.dtype,
                                  kernel_initializer, trainable=trainable)
        outputs = tf1.matmul(inputs, kernel)
        if use_bias:
            bias = tf1.get_variable("bias", [units], inputs.dtype,
                                    bias_initializer or tf1.zeros_initializer(),
                                    trainable=trainable)
            outputs = tf1.nn.bias_add(outputs, bias)
        return activation(outputs) if activation is not None else outputs


def original_layers():
    """The TF 1 implementations, from the packages they moved to (for --cross-check)."""
    import tf_slim
    from tf_keras.src.legacy_tf_layers import core
    return tf_slim.layers.layer_norm, core.dense


def load_modeling(text, layer_norm_fn=layer_norm, dense_fn=dense):
    """modeling.py as a module whose `tensorflow` is tf.compat.v1 plus the shims."""
    shim = types.ModuleType("tensorflow")
    shim.__getattr__ = lambda name: getattr(tf1, name)
    shim.contrib = types.SimpleNamespace(layers=types.SimpleNamespace(layer_norm=layer_norm_fn))
    shim.layers = types.SimpleNamespace(dense=dense_fn)
    module = types.ModuleType("google_bert_modeling")
    saved = sys.modules.get("tensorflow")
    sys.modules["tensorflow"] = shim
    try:
        exec(compile(text, "modeling.py", "exec"), module.__dict__)
    finally:
        if saved is not None:
            sys.modules["tensorflow"] = saved
    assert module.tf is shim
    return module


def make_inputs():
    rng = np.random.default_rng(SEED)
    ids = np.zeros((BATCH, SEQ), np.int32)
    mask = np.zeros((BATCH, SEQ), np.int32)
    types_ = np.zeros((BATCH, SEQ), np.int32)
    for row, (length, first) in enumerate(ROWS):
        ids[row, :length] = rng.integers(len(SPECIAL), CONFIG["vocab_size"], length)
        ids[row, 0] = SPECIAL.index("[CLS]")
        ids[row, first - 1] = ids[row, length - 1] = SPECIAL.index("[SEP]")
        mask[row, :length] = 1
        types_[row, first:length] = 1
    return ids, mask, types_


def build(modeling, ids, mask, types_):
    config = modeling.BertConfig.from_dict(CONFIG)
    placeholders = [tf1.placeholder(tf1.int32, (BATCH, SEQ), n)
                    for n in ("input_ids", "input_mask", "token_type_ids")]
    model = modeling.BertModel(config=config, is_training=False, input_ids=placeholders[0],
                               input_mask=placeholders[1], token_type_ids=placeholders[2],
                               use_one_hot_embeddings=False)
    fetches = {"sequence_output": model.get_sequence_output(),
               "pooled_output": model.get_pooled_output()}
    return config, dict(zip(placeholders, (ids, mask, types_))), fetches


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modeling", help="modeling.py, a google-research/bert checkout, or "
                                         "its bare git dir")
    parser.add_argument("--out", default=os.path.join(HERE, "google_tf1"))
    parser.add_argument("--cross-check", action="store_true",
                        help="also run with tf_slim's layer_norm and tf_keras' legacy dense")
    args = parser.parse_args()
    text, sha256, commit = read_modeling(args.modeling)
    tf1.disable_v2_behavior()
    ids, mask, types_ = make_inputs()
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, "bert_model.ckpt")

    graph = tf1.Graph()
    with graph.as_default():
        tf1.set_random_seed(SEED)
        config, feed, fetches = build(load_modeling(text), ids, mask, types_)
        variables = tf1.global_variables()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            rng = np.random.default_rng(SEED + 1)
            for v in variables:  # biases, beta, gamma off their 0 / 1 start
                if v.op.name.endswith(("/bias", "/beta", "/gamma")):
                    value = sess.run(v)
                    v.load(value + rng.normal(0, 0.1, value.shape).astype(np.float32), sess)
            outputs = sess.run(fetches, feed)
            tf1.train.Saver(variables).save(sess, prefix, write_meta_graph=False,
                                            write_state=False)
    print(f"{len(variables)} variables, {sum(int(np.prod(v.shape)) for v in variables):,} "
          "parameters")

    if args.cross_check:
        ln_fn, dense_fn = original_layers()
        with tf1.Graph().as_default():
            _, feed2, fetches2 = build(load_modeling(text, ln_fn, dense_fn), ids, mask, types_)
            with tf1.Session() as sess:
                tf1.train.Saver().restore(sess, prefix)
                again = sess.run(fetches2, feed2)
        for name, value in outputs.items():
            diff = float(np.abs(again[name] - value).max())
            print(f"cross-check {name}: max |shim - original| = {diff:.3g}")
            assert diff <= 1e-6, name

    with open(os.path.join(args.out, "bert_config.json"), "w") as f:
        f.write(config.to_json_string())
    with open(os.path.join(args.out, "vocab.txt"), "w") as f:
        words = [f"w{i:03d}" for i in range(CONFIG["vocab_size"] - len(SPECIAL))]
        f.writelines(token + "\n" for token in SPECIAL + words)
    np.savez(os.path.join(args.out, "expected_outputs.npz"), input_ids=ids, input_mask=mask,
             token_type_ids=types_, modeling_py_sha256=np.array(sha256),
             modeling_py_commit=np.array(commit),
             **{k: v.astype(np.float32) for k, v in outputs.items()})
    for name in sorted(os.listdir(args.out)):
        print(f"{os.path.getsize(os.path.join(args.out, name)):>8}  {name}")


if __name__ == "__main__":
    main()
