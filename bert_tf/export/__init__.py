"""SavedModel exports: the single door from a Keras model to TF Hub and TF Serving.

`export_model(model, base)` writes three SavedModels in TF Serving's layout:

- `base/encoder/N/`: a Reusable SavedModel, as TF Hub's BERT encoders. Root
  `__call__(inputs, training=False)` on the dict of `input_word_ids`,
  `input_mask`, `input_type_ids` returns `sequence_output`, `pooled_output`,
  `default` (= pooled) and `encoder_outputs`; root `variables`,
  `trainable_variables`, `regularization_losses`, `vocab_file`, `do_lower_case`;
  a `serving_default` signature; `.mlm` when the model has a masked-LM head. No
  tensorflow-text ops.
- `base/preprocessor/N/`: strings `[B]` -> the three int32 inputs `[B, seq_length]`,
  with `.tokenize` and `.bert_pack_inputs` as TF Hub's BERT preprocessors.
- `base/serving/N/`: text to outputs for TF Serving, as the model defines them
  (`model.serving_module`): `serving_default` takes `text` [, `text_b`] and answers
  what a client of the model needs (a classifier's `label`, `probabilities`, `logits`;
  a multi-label one's `labels`, `probabilities`, `logits`; a regression's
  `predictions`: `bert_tf.models.serving.head_outputs`; an encoder's
  `sequence_output`, `pooled_output`, `input_mask`); `embed` and `encode` give the
  vectors, `classify` / `regress` serve TF Serving's Classify and Regress APIs
  (`bert_tf.models.serving.text_serving_module`). A SQuAD model takes `question` and
  `context`; a token classifier takes `text` and returns its entities
  (`entity_text`, `entity_type`, `entity_start`, `entity_end`, `entity_score`,
  `num_entities`), and each word's tag from its `tags` signature
  (`bert_tf.models.entity_serving`). Batches are padded to their longest text (at most `seq_length`
  tokens) and the encoder's dense layers skip even that padding. Warm-up requests
  in `assets.extra/` when tensorflow-serving-api is installed (`bert-tf[serving]`).

With `precision="bfloat16"` the encoder and serving exports compute in bfloat16 while
their inputs and outputs keep their dtypes (float32 outputs): clients do not change.
The encoder export computes under Keras' `mixed_bfloat16` policy: its variables stay
float32, so that a TF Hub user can fine-tune them, and are cast on each call. The
serving export, which only serves, stores its variables in bfloat16 (Keras' `bfloat16`
policy): half the bytes to read per request and no cast per call (batch 1 is bound by
reading the weights). Both run matmuls, activations and attention's softmax in
bfloat16; layer norms compute their statistics in float32 (`keras.ops.layer_normalization`).
It pays where the hardware computes bfloat16 natively (`bert_tf.hardware.bfloat16_support()`:
AMX or AVX-512 BF16 CPUs, GPUs from compute capability 8.0); elsewhere TensorFlow
emulates it and it runs slower than float32 (BENCHMARKS.md).

Each SavedModel is written into a temporary folder beside its target and renamed
into place when all three are complete: a TF Serving instance polling `base` never
sees a half-written version, and a failure leaves none behind.

Example (a classifier as built, untrained; a fine-tuned one loads with
`bert_tf.load_model("runs/sst2/model")`):
    >>> import bert_tf, tensorflow as tf
    >>> preprocessor = bert_tf.load_preprocessor(model_dir, seq_length=32)
    >>> clf = bert_tf.BertClassifier(bert_tf.load_encoder(model_dir), num_classes=2,
    ...                              preprocessor=preprocessor)
    >>> paths = export_model(clf, f"{tmp}/sst2")
    >>> paths["serving"]
    '.../sst2/serving/1'
    >>> serve = tf.saved_model.load(paths["serving"]).signatures["serving_default"]
    >>> outputs = serve(text=tf.constant(["a fine film", "a dull one"]))
    >>> sorted(outputs)
    ['label', 'logits', 'probabilities']
    >>> outputs["probabilities"].shape, outputs["label"].shape    # label: "0" or "1"
    (TensorShape([2, 2]), TensorShape([2]))
"""
from __future__ import annotations

import os
import shutil
import tempfile

from bert_tf.choices import EXPORT_PRECISIONS as PRECISIONS
from bert_tf.errors import ConfigError
from bert_tf.export.savedmodel import EXPORTS, build_encoder_module, build_preprocessor_module, \
    check_version, claim_version, save_to_temp, serving_instructions, write_warmup_requests
from bert_tf.io.atomic import check_output, replace_dir
from bert_tf.models.base import with_dtype_policy
from bert_tf.training.strategy import policy_scope

__all__ = ["export_model", "check_export", "serving_instructions", "EXPORTS", "PRECISIONS"]

# --precision -> the Keras dtype policy of the encoder export is `PRECISIONS`; the serving
# export's, which only serves: bfloat16 variables, half the bytes.
SERVING_PRECISIONS = {"float32": "float32", "bfloat16": "bfloat16"}


def export_model(model, base: str, version: int | None = None, seq_length: int | None = None,
                 overwrite: bool = False, preprocessor=None,
                 precision: str = "float32") -> dict[str, str]:
    """Writes `base/{encoder,preprocessor,serving}/<version>` for a bert-tf model.

    Args:
        model: a `BertEncoder`, `BertClassifier`, `BertSpanModel` or `BertPretrainer`.
        base: the export base folder (TF Serving's `--model_base_path` is `base/serving`).
        version: integer version, 1 to 2**63 - 1 (default: one more than any under `base`).
        seq_length: longest input in tokens (default: the preprocessor's, else 128).
        overwrite: replace an existing `version` (only if its folders hold nothing but
            SavedModels: a user's file there is never deleted).
        preprocessor: a `BertPreprocessor` giving the vocab and casing (default: the
            model's own; an encoder has none).
        precision: `float32`, or `bfloat16` to compute in bfloat16 (float32 inputs and
            outputs; float32 variables in the encoder export, bfloat16 in the serving
            export; see the module docstring), whatever policy `model` was built under.

    Returns:
        The three export folders, by name.
    """
    preprocessor = preprocessor or getattr(model, "preprocessor", None)
    if preprocessor is None:
        raise ConfigError("export_model needs the vocabulary: pass preprocessor=, or build the "
                          "model with one")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    base = os.path.abspath(base)
    check_export(base, version, overwrite)
    tokenizer = preprocessor.tokenizer
    # Each copy (and the serving copy's skip_padding copy) is built under its own policy.
    with policy_scope(PRECISIONS[precision]):
        encoder_model = with_dtype_policy(model, PRECISIONS[precision])
        encoder = getattr(encoder_model, "encoder", encoder_model)  # a task model's, or itself
        seq_length = encoder.bert_config.check_seq_length(
            seq_length or preprocessor.seq_length or 128)
        mlm_model = encoder_model.mlm_model() if hasattr(encoder_model, "mlm_model") else None
    with policy_scope(SERVING_PRECISIONS[precision]):
        serving_model = with_dtype_policy(model, SERVING_PRECISIONS[precision])
        serving, serving_signatures, warmup = serving_model.serving_module(tokenizer, seq_length)
    with claim_version(base, version, overwrite) as version:
        targets = {name: os.path.join(base, name, str(version)) for name in EXPORTS}
        _write(targets, encoder, tokenizer, seq_length, mlm_model,
               (serving, serving_signatures, warmup))
    return targets


def check_export(base: str, version: int | None = None, overwrite: bool = False) -> None:
    """Before any work (the `export` command calls it before it loads the model): `base`
    is a folder we may write, and an explicit `version` is in range and free, or (with
    `overwrite`) holds only SavedModels (`check_version`)."""
    check_output(base, overwrite=True, kind="folder")
    check_version(os.path.abspath(base), version, overwrite)


def _write(targets: dict, encoder, tokenizer, seq_length: int, mlm_model, serving) -> None:
    """All three exports are written in full before any is renamed into place."""
    serving, serving_signatures, warmup = serving
    written = {}
    vocab_dir = tempfile.mkdtemp(prefix="bert-tf-vocab-")
    try:
        vocab_file = os.path.join(vocab_dir, "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token in tokenizer.vocab)
        root, sigs = build_encoder_module(encoder, vocab_file, tokenizer.lower_case, mlm_model)
        written["encoder"] = save_to_temp(targets["encoder"], root, sigs)
        root, sigs = build_preprocessor_module(tokenizer, seq_length)
        written["preprocessor"] = save_to_temp(targets["preprocessor"], root, sigs)
        written["serving"] = save_to_temp(targets["serving"], serving, serving_signatures,
                                          after=lambda d: write_warmup_requests(d, warmup))
        for name, tmp in written.items():
            replace_dir(tmp, targets[name])
    finally:
        shutil.rmtree(vocab_dir, ignore_errors=True)
        for tmp in written.values():
            shutil.rmtree(tmp, ignore_errors=True)
