"""BERT's Keras layers. Every layer serialises with `get_config` and names its
weights as Google's checkpoints do (`checkpoint_variables()`).

    input_word_ids, input_type_ids [B, S] --BertEmbeddings--> [B, S, H]
    [B, S, H] --TransformerBlock × L--> sequence_output [B, S, H]
    sequence_output --BertPooler--> pooled_output [B, H]
    sequence_output, input_mask --MaskedPooling / AttentionPooling--> [B, H]
    heads: MaskedLMHead, NextSentenceHead (pre-training), SpanLogits (SQuAD)
"""
from bert_tf.layers.embeddings import BertEmbeddings
from bert_tf.layers.heads import MaskedLMHead, NextSentenceHead, SpanLogits
from bert_tf.layers.pooler import BertPooler
from bert_tf.layers.pooling import STRATEGIES, AttentionPooling, MaskedPooling, pool
from bert_tf.layers.transformer import TransformerBlock, activation

__all__ = ["BertEmbeddings", "TransformerBlock", "BertPooler", "MaskedPooling",
           "AttentionPooling", "pool", "STRATEGIES", "MaskedLMHead", "NextSentenceHead",
           "SpanLogits", "activation"]
