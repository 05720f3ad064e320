"""Pooling strategies: padding never counts; `mean` reproduces sentence-transformers."""
import os

import numpy as np
import pytest

from bert_tf.layers.pooling import STRATEGIES, AttentionPooling, MaskedPooling, pool
from tests.conftest import REFERENCE_DIR, report


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "pooled_output"])
def test_padding_never_changes_the_result(strategy):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    layer = AttentionPooling() if strategy == "attention" else MaskedPooling(strategy)
    base = np.asarray(layer(x, mask))
    garbage = x.copy()
    garbage[mask == 0] = 1e3  # whatever sits in padded positions
    np.testing.assert_allclose(np.asarray(layer(garbage, mask)), base, atol=1e-5)
    for row in range(3):  # and the same as the unpadded row alone
        n = mask[row].sum()
        alone = np.asarray(layer(x[row:row + 1, :n], np.ones((1, n))))
        np.testing.assert_allclose(alone[0], base[row], atol=1e-5)


def test_strategies_compute_what_they_say():
    x = np.arange(24, dtype="float32").reshape(1, 4, 6)
    mask = np.array([[1, 1, 1, 0]])
    real = x[0, :3]
    np.testing.assert_allclose(MaskedPooling("cls")(x, mask)[0], real[0])
    np.testing.assert_allclose(MaskedPooling("mean")(x, mask)[0], real.mean(0))
    np.testing.assert_allclose(MaskedPooling("max")(x, mask)[0], real.max(0))
    np.testing.assert_allclose(MaskedPooling("mean_sqrt_len")(x, mask)[0], real.sum(0) / np.sqrt(3),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="unknown pooling"):
        pool("median", {}, mask)


def test_mean_pooling_matches_sentence_transformers(minilm_dir):
    import json
    ref = np.load(os.path.join(REFERENCE_DIR, "minilm_outputs.npz"))
    texts = json.load(open(os.path.join(REFERENCE_DIR, "minilm_texts.json"), encoding="utf-8"))
    from bert_tf.inference.embed import Embedder
    # the package's own SentenceTransformer(...).encode: Transformer -> mean Pooling ->
    # Normalize, as the model dir's modules.json says, at its max_seq_length
    want = ref["single_st_encode"]
    vectors = Embedder(minilm_dir, pooling="mean",
                       max_seq_length=int(ref["st_max_seq_length"])).embed(texts["single"])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert vectors.shape == want.shape
    diff = np.abs(vectors - want).max()
    report(f"mean pooling vs sentence-transformers encode (MiniLM, {len(vectors)} sentences): "
           f"max |diff| {diff:.1e}")
    np.testing.assert_allclose(vectors, want, rtol=0, atol=1e-5)
