"""`BertPooler`: dense + tanh over the first ([CLS]) token, `[B, S, H]` -> `[B, H]`."""
from __future__ import annotations

import keras

from bert_tf.layers.transformer import _init


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPooler(keras.layers.Layer):
    """BERT's pooler: `tanh(Dense(sequence_output[:, 0]))`, `[B, S, H]` -> `[B, H]`.

    It is called a *pooler* because it does a pooling layer's job, reducing a
    sequence of vectors to one vector per sequence, but it does not take a max
    or a mean: it takes the hidden state of the first token ([CLS]) and passes it
    through a dense layer with tanh. Its weights were trained in pre-training by
    the next-sentence-prediction (NSP) head, which sits on its output. Other ways
    to reduce a sequence (mean, max, ...) are in `bert_tf.layers.pooling`.

    Example:
        >>> from keras import ops
        >>> pooler = BertPooler(hidden_size=8)
        >>> tuple(pooler(ops.ones((2, 5, 8))).shape)
        (2, 8)
    """

    def __init__(self, hidden_size, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.hidden_size = hidden_size
        self.initializer_range = initializer_range
        self.dense = keras.layers.Dense(hidden_size, activation="tanh",
                                        kernel_initializer=_init(initializer_range), name="dense")

    def build(self, input_shape=None):
        self.dense.build((None, self.hidden_size))
        self.built = True

    def call(self, sequence_output):
        return self.dense(sequence_output[:, 0, :])

    def checkpoint_variables(self):
        return {"dense/kernel": self.dense.kernel, "dense/bias": self.dense.bias}

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "initializer_range": self.initializer_range}
