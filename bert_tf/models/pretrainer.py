"""`BertPretrainer`: the encoder with BERT's pre-training heads, masked-LM and
next-sentence prediction (NSP), as a Keras model.

The MLM head predicts the tokens at `masked_lm_positions` against the word
embeddings (tied); the NSP head sits on `pooled_output`, which is where the
pooler's weights are trained. Checkpoint names are Google's
(`cls/predictions/...`, `cls/seq_relationship/...`).

Example:
    >>> import numpy as np
    >>> from bert_tf.config import BertConfig
    >>> from bert_tf.models.encoder import BertEncoder
    >>> model = BertPretrainer(BertEncoder.from_bert_config(BertConfig.preset("tiny", 50)))
    >>> ids = np.ones((2, 6), "int32")
    >>> out = model({"input_word_ids": ids, "input_mask": ids, "input_type_ids": 0 * ids,
    ...              "masked_lm_positions": np.array([[1, 2], [3, 4]], "int32")})
    >>> tuple(out["mlm_logits"].shape), tuple(out["nsp_logits"].shape)
    ((2, 2, 50), (2, 2))
"""
from __future__ import annotations

import os

import keras

from bert_tf.io.checkpoint import CKPT_NAME, read_checkpoint
from bert_tf.layers import MaskedLMHead, NextSentenceHead
from bert_tf.models.base import CheckpointNames, WrapsEncoder
from bert_tf.models.encoder import BertEncoder, encoder_inputs


@keras.saving.register_keras_serializable(package="bert_tf")
class BertPretrainer(WrapsEncoder, CheckpointNames, keras.Model):
    """The three inputs and `masked_lm_positions` `[B, P]` -> `mlm_logits`
    `[B, P, vocab]` and, with `next_sentence`, `nsp_logits` `[B, 2]` (both float32
    under mixed precision, so that the losses are computed in float32).

    Args:
        encoder: a `BertEncoder`.
        next_sentence: include the NSP head (Google's BERT has it; a model dir with
            only a masked-LM head loads without it).
    """

    def __init__(self, encoder: BertEncoder, next_sentence: bool = True,
                 name: str = "bert_pretraining", **kwargs):
        config = encoder.bert_config
        inputs = {**encoder_inputs(), "masked_lm_positions": keras.Input(
            shape=(None,), dtype="int32", name="masked_lm_positions")}
        encoded = encoder({k: inputs[k] for k in ("input_word_ids", "input_mask",
                                                  "input_type_ids")})
        mlm = MaskedLMHead(config.hidden_size, config.vocab_size, config.hidden_act,
                           config.layer_norm_eps, config.initializer_range,
                           embeddings=encoder.get_layer("embeddings"), name="mlm_head")(
            encoded["sequence_output"], inputs["masked_lm_positions"])
        outputs = {"mlm_logits": keras.layers.Activation("linear", dtype="float32",
                                                         name="mlm_logits")(mlm)}
        if next_sentence:
            nsp = NextSentenceHead(config.hidden_size, config.initializer_range,
                                   name="nsp_head")(encoded["pooled_output"])
            outputs["nsp_logits"] = keras.layers.Activation("linear", dtype="float32",
                                                            name="nsp_logits")(nsp)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.encoder = encoder
        self.next_sentence = next_sentence
        # The encoder export's `.mlm` returns the encoder's outputs and the MLM logits.
        self._mlm_outputs = {**encoded, "mlm_logits": mlm}

    def checkpoint_variables(self) -> dict:
        names = self.encoder.checkpoint_variables()
        for layer in self.layers:
            if isinstance(layer, (MaskedLMHead, NextSentenceHead)):
                names.update(layer.checkpoint_variables())
        return names

    def mlm_model(self) -> keras.Model:
        """The same layers: the four inputs -> the encoder's outputs + `mlm_logits`."""
        return keras.Model(self.input, self._mlm_outputs, name="bert_mlm")

    @classmethod
    def from_model_dir(cls, model_dir: str, heads_optional: bool = False) -> "BertPretrainer":
        """The encoder and pre-training heads of a model dir. With `heads_optional`,
        heads missing from it (a fine-tuned model's) keep their random initialisation."""
        prefix = os.path.join(model_dir, CKPT_NAME)
        tensors = read_checkpoint(prefix)
        next_sentence = heads_optional or "cls/seq_relationship/output_bias" in tensors
        model = cls(BertEncoder.from_model_dir(model_dir), next_sentence=next_sentence)
        model.assign_checkpoint(tensors, prefix,
                                optional=lambda n: heads_optional and n.startswith("cls/"))
        return model

    def serving_module(self, tokenizer, seq_length: int):
        """The encoder's serving export: the heads play no part in serving text."""
        return self.encoder.serving_module(tokenizer, seq_length)

    def get_config(self):
        return self.wrapped_config(next_sentence=self.next_sentence)
