"""bert-tf: BERT for TensorFlow and Keras 3.

The three parts of BERT are Keras layers, `BertEmbeddings`, `TransformerBlock` (the
encoder) and `BertPooler`, composed by the functional model `BertEncoder`. Text
becomes ids in-graph with the `BertPreprocessor` layer. Task models wrap the
encoder: `BertClassifier`, `BertSpanModel` (SQuAD), `BertTokenClassifier` (tags per
word, NER), `BertPretrainer` (MLM + NSP).
Model dirs hold Google-format checkpoints; `export_model` writes the SavedModels
for TF Hub and TF Serving.

Example:
    >>> import bert_tf, keras, tensorflow as tf
    >>> pre = bert_tf.load_preprocessor(model_dir, seq_length=128)  # e.g. "saved_models/minilm"
    >>> enc = bert_tf.load_encoder(model_dir)
    >>> text = keras.Input(shape=(), dtype="string")
    >>> model = keras.Model(text, keras.layers.Dense(2)(enc(pre(text))["pooled_output"]))
    >>> model(tf.constant(["a fine film", "a dull one"])).shape
    TensorShape([2, 2])

TensorFlow's oneDNN CPU kernels: TensorFlow turns them on by default only on CPUs
with AVX-512 VNNI/BF16 or AMX; bert-tf turns them on everywhere (when it is
imported before TensorFlow, as by the `bert-tf` command), since on an AVX2-only
CPU they measured faster for padded batches (serving) and fine-tuning (BENCHMARKS.md).
`TF_ENABLE_ONEDNN_OPTS=0` in the environment keeps TensorFlow's own default.

`import bert_tf` imports the whole library, TensorFlow with it, so that every model
class is registered with Keras before `keras.models.load_model` reads a `.keras` file
(Keras imports only its own packages' modules to find a class). The one exception is
the `bert-tf` command (its console script, or `python -m bert_tf`): it must answer
`--help` at once, not after TensorFlow's seconds of start-up, so there the public names
arrive on first use (`bert_tf.load_model` imports `bert_tf.models` then, PEP 562) and each
command imports what it runs. An entry point outside the package would not help:
`python -m bert_tf` imports this file all the same.
"""
import importlib
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's start-up lines (no CUDA driver, oneDNN is on, the CPU's instructions; some
# at level E on machines without a GPU) are about the machine, not the job: off unless the
# environment sets TF_CPP_MIN_LOG_LEVEL itself (0 shows them all; `bert-tf --verbose` too).
# TensorFlow reads it once, when it is imported: after `import bert_tf`, or not at all.
TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Each public name and the module that defines it (importing those imports TensorFlow).
_PUBLIC = {
    "BertConfig": "bert_tf.config", "load_config": "bert_tf.config",
    "BertEmbeddings": "bert_tf.layers", "TransformerBlock": "bert_tf.layers",
    "BertPooler": "bert_tf.layers",
    "BertEncoder": "bert_tf.models", "build_encoder": "bert_tf.models",
    "BertClassifier": "bert_tf.models", "BertSpanModel": "bert_tf.models",
    "BertTokenClassifier": "bert_tf.models",
    "BertPretrainer": "bert_tf.models", "load_encoder": "bert_tf.models",
    "load_preprocessor": "bert_tf.models", "load_tokenizer": "bert_tf.models",
    "load_model": "bert_tf.models",
    "BertPreprocessor": "bert_tf.preprocessing", "BertTokenizer": "bert_tf.preprocessing",
    "export_model": "bert_tf.export",
}
__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str):
    """`bert_tf.NAME` imports NAME's module on first use (PEP 562): how the public
    names arrive when the package was not imported eagerly (the `bert-tf` command)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bert_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def _started_as_command() -> bool:
    """True when this process is the `bert-tf` command: its console script
    (`sys.argv[0]` is the script) or `python -m bert_tf` (while Python looks for
    `bert_tf.__main__`, `sys.argv[0]` is "-m" and `sys.orig_argv` names the module)."""
    argv = getattr(sys, "argv", None) or [""]
    script = os.path.basename(argv[0])
    if script.removesuffix(".exe").removesuffix("-script.py") == "bert-tf":
        return True
    if argv[0] != "-m":
        return False
    orig = getattr(sys, "orig_argv", [])
    for i, arg in enumerate(orig):
        if arg.startswith("-m"):  # `-m bert_tf` or `-mbert_tf`
            return (arg[2:] or "".join(orig[i + 1:i + 2])) == "bert_tf"
    return False


if not _started_as_command():
    # A library user: every model class is registered with Keras on `import bert_tf`.
    for _name in _PUBLIC:
        __getattr__(_name)
