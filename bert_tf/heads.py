"""Pre-training heads: masked-LM over the word embeddings, and next-sentence
prediction (NSP) over `pooled_output`. Their checkpoint names are Google's."""
from __future__ import annotations

from bert_tf.config import BertConfig


def pretraining_head_shapes(config: BertConfig) -> dict[str, tuple]:
    """Google names and shapes of the MLM (`cls/predictions`) and NSP
    (`cls/seq_relationship`) heads."""
    h, v = config.hidden_size, config.vocab_size
    return {
        "cls/predictions/transform/dense/kernel": (h, h),
        "cls/predictions/transform/dense/bias": (h,),
        "cls/predictions/transform/LayerNorm/gamma": (h,),
        "cls/predictions/transform/LayerNorm/beta": (h,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    }
