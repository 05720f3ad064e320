"""BERT's models, each a registered functional Keras model whose constructor
arguments are its config: `BertEncoder`, and the task models built on it,
`BertClassifier`, `BertSpanModel` (SQuAD), `BertTokenClassifier` (tags per word, NER),
`BertPretrainer` (MLM + NSP). Each reads and writes model dirs with Google's checkpoint
names."""
from bert_tf.models.classifier import BertClassifier
from bert_tf.models.encoder import BertEncoder, build_encoder, encoder_inputs
from bert_tf.models.loading import load_encoder, load_model, load_preprocessor, load_tokenizer
from bert_tf.models.pretrainer import BertPretrainer
from bert_tf.models.span import BertSpanModel
from bert_tf.models.token_classifier import BertTokenClassifier

__all__ = ["BertEncoder", "build_encoder", "encoder_inputs", "BertClassifier", "BertSpanModel",
           "BertTokenClassifier", "BertPretrainer", "load_encoder", "load_model",
           "load_preprocessor", "load_tokenizer"]
