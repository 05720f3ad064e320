"""bert-tf: BERT for TensorFlow and Keras 3.

The three parts of BERT: `BertEmbeddings`, `TransformerBlock` (the encoder) and
`BertPooler`, composed by `build_encoder`. Text becomes ids in-graph with
`BertTokenizer`. Model dirs hold Google-format checkpoints (`bert_tf.checkpoint`).

Example:
    >>> import bert_tf, tensorflow as tf                     # doctest: +SKIP
    >>> encoder = bert_tf.load_encoder("saved_models/minilm")
    >>> preprocess = bert_tf.load_preprocessor("saved_models/minilm")
    >>> encoder(preprocess(tf.constant(["hello world"])))["pooled_output"].shape
    TensorShape([1, 384])
"""
from bert_tf.config import BertConfig, load_config
from bert_tf.encoder import build_encoder
from bert_tf.layers import BertEmbeddings, BertPooler, TransformerBlock
from bert_tf.models import load_encoder, load_preprocessor, load_tokenizer
from bert_tf.tokenizer import BertTokenizer

__all__ = ["BertConfig", "load_config", "build_encoder", "BertEmbeddings", "BertPooler",
           "TransformerBlock", "load_encoder", "load_preprocessor", "load_tokenizer",
           "BertTokenizer"]
__version__ = "0.1.0"
