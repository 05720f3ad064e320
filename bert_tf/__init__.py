"""bert-tf: BERT for TensorFlow and Keras 3.

The three parts of BERT: `BertEmbeddings`, `TransformerBlock` (the encoder) and
`BertPooler`, composed by `build_encoder`. Text becomes ids in-graph with
`BertTokenizer`. Model dirs hold Google-format checkpoints (`bert_tf.io.checkpoint`).

Example:
    >>> import bert_tf, tensorflow as tf                     # doctest: +SKIP
    >>> encoder = bert_tf.load_encoder("saved_models/minilm")
    >>> preprocess = bert_tf.load_preprocessor("saved_models/minilm")
    >>> encoder(preprocess(tf.constant(["hello world"])))["pooled_output"].shape
    TensorShape([1, 384])

TensorFlow's oneDNN CPU kernels: TensorFlow turns them on by default only on CPUs
with AVX-512 VNNI/BF16 or AMX; bert-tf turns them on everywhere (when it is
imported before TensorFlow, as by the `bert-tf` command), since on an AVX2-only
CPU they measured faster for padded batches (serving) and fine-tuning (BENCHMARKS.md).
`TF_ENABLE_ONEDNN_OPTS=0` in the environment keeps TensorFlow's own default.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from bert_tf.config import BertConfig, load_config  # noqa: E402  (after the setting)
from bert_tf.models.encoder import build_encoder  # noqa: E402
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock  # noqa: E402
from bert_tf.models.loading import load_encoder, load_preprocessor, load_tokenizer  # noqa: E402
from bert_tf.preprocessing.tokenizer import BertTokenizer  # noqa: E402

__all__ = ["BertConfig", "load_config", "build_encoder", "BertEmbeddings", "BertPooler",
           "TransformerBlock", "load_encoder", "load_preprocessor", "load_tokenizer",
           "BertTokenizer"]
__version__ = "0.1.0"
