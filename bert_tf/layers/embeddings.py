"""`BertEmbeddings`: BERT's embedding layer, ids `[B, S]` -> vectors `[B, S, H]`."""
from __future__ import annotations

import keras
from keras import ops

from bert_tf.layers.transformer import _init


@keras.saving.register_keras_serializable(package="bert_tf")
class BertEmbeddings(keras.layers.Layer):
    """Word + position + segment (token type) embeddings, then LayerNorm and dropout.

    Example:
        >>> from keras import ops
        >>> emb = BertEmbeddings(vocab_size=100, hidden_size=8)
        >>> tuple(emb(ops.ones((2, 5), "int32"), ops.zeros((2, 5), "int32")).shape)
        (2, 5, 8)
    """

    def __init__(self, vocab_size, hidden_size, max_position_embeddings=512, type_vocab_size=2,
                 dropout=0.1, layer_norm_eps=1e-12, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.layer_norm = keras.layers.LayerNormalization(epsilon=layer_norm_eps, name="LayerNorm")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape=None):
        init = _init(self.initializer_range)
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(self.vocab_size, self.hidden_size), initializer=init,
            autocast=False)
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(self.max_position_embeddings, self.hidden_size),
            initializer=init, autocast=False)
        self.token_type_embeddings = self.add_weight(
            name="token_type_embeddings", shape=(self.type_vocab_size, self.hidden_size),
            initializer=init, autocast=False)
        self.layer_norm.build((None, None, self.hidden_size))
        self.built = True

    def call(self, input_word_ids, input_type_ids, training=False):
        seq_length = ops.shape(input_word_ids)[1]
        # The tables are not cast to a mixed policy's compute dtype (autocast=False): the
        # rows looked up are, after the sum (30,522 rows a call would be cast otherwise).
        x = ops.take(self.word_embeddings, input_word_ids, axis=0)
        x = x + ops.take(self.token_type_embeddings, input_type_ids, axis=0)
        x = x + self.position_embeddings[None, :seq_length]
        x = ops.cast(x, self.compute_dtype)
        return self.dropout(self.layer_norm(x), training=training)

    def checkpoint_variables(self):
        return {
            "word_embeddings": self.word_embeddings,
            "position_embeddings": self.position_embeddings,
            "token_type_embeddings": self.token_type_embeddings,
            "LayerNorm/gamma": self.layer_norm.gamma,
            "LayerNorm/beta": self.layer_norm.beta,
        }

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size,
                "max_position_embeddings": self.max_position_embeddings,
                "type_vocab_size": self.type_vocab_size, "dropout": self.dropout_rate,
                "layer_norm_eps": self.layer_norm_eps,
                "initializer_range": self.initializer_range}
