"""bert-tf: BERT for TensorFlow and Keras 3.

The three parts of BERT are Keras layers, `BertEmbeddings`, `TransformerBlock` (the
encoder) and `BertPooler`, composed by the functional model `BertEncoder`. Text
becomes ids in-graph with the `BertPreprocessor` layer. Task models wrap the
encoder: `BertClassifier`, `BertSpanModel` (SQuAD), `BertPretrainer` (MLM + NSP).
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
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# After the setting above: these import TensorFlow.
from bert_tf.config import BertConfig, load_config  # noqa: E402
from bert_tf.export import export_model  # noqa: E402
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock  # noqa: E402
from bert_tf.models import (BertClassifier, BertEncoder, BertPretrainer,  # noqa: E402
                            BertSpanModel, build_encoder, load_encoder, load_model,
                            load_preprocessor, load_tokenizer)
from bert_tf.preprocessing import BertPreprocessor, BertTokenizer  # noqa: E402

__all__ = ["BertConfig", "load_config", "BertEmbeddings", "TransformerBlock", "BertPooler",
           "BertEncoder", "build_encoder", "BertClassifier", "BertSpanModel", "BertPretrainer",
           "BertPreprocessor", "BertTokenizer", "load_encoder", "load_preprocessor",
           "load_tokenizer", "load_model", "export_model"]
__version__ = "0.1.0"
