"""Text -> BERT's inputs: `BertTokenizer` (in-graph WordPiece, google-research/bert's
ids) and `BertPreprocessor`, the Keras layer that tokenises and packs."""
from bert_tf.preprocessing.preprocessor import BertPreprocessor
from bert_tf.preprocessing.tokenizer import BertTokenizer

__all__ = ["BertPreprocessor", "BertTokenizer"]
