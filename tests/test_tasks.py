"""Task models keep Keras' own contracts: `compile()` makes the optimizer once and
every `fit` trains it (a second `fit`, a reloaded `.keras` model, a strategy scope);
`fit` / `evaluate` / `predict` take every input Keras users pass, as text; and the
multi-label and regression heads have their own losses, metrics and serving outputs."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.errors import ConfigError
from tests.conftest import no_dropout_copy

TEXTS = ["a good film", "a bad film", "great acting", "dull and long",
         "what a joy", "a waste of time", "loved it", "never again"]
LABELS = np.array([1, 0, 1, 0, 1, 0, 1, 0])


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return (bert_tf.load_encoder(tiny_model_dir),
            bert_tf.load_preprocessor(tiny_model_dir, seq_length=16))


def _classifier(parts, **kwargs):
    keras.utils.set_random_seed(0)
    encoder, preprocessor = parts
    return bert_tf.BertClassifier(encoder, kwargs.pop("num_classes", 2),
                                  preprocessor=preprocessor, dropout=0.0, **kwargs)


def _schedule(model) -> dict:
    return model.optimizer.get_config()["learning_rate"]["config"]


# -- 1. compile once ------------------------------------------------------------------------
def test_second_fit_continues_the_optimizer_and_schedule(parts):
    """Before: `fit` compiled a new optimizer each call, so a second `fit` restarted
    the warm-up (iterations back to 0, schedule resized)."""
    clf = _classifier(parts)
    clf.compile(learning_rate=1e-3)
    optimizer = clf.optimizer
    clf.fit(TEXTS, LABELS, epochs=2, batch_size=4, verbose=0)   # 2 batches x 2 epochs
    assert (_schedule(clf)["total_steps"], _schedule(clf)["warmup_steps"]) == (4, 0)
    first = clf.get_weights()
    clf.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert clf.optimizer is optimizer and int(clf.optimizer.iterations) == 6
    assert _schedule(clf)["total_steps"] == 4   # the first fit's length, kept
    # Past the schedule's end the rate is 0: AdamW's decay and update both vanish.
    for a, b in zip(first, clf.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_compile_total_steps_spans_several_fits(parts):
    clf = _classifier(parts)
    clf.compile(learning_rate=1e-3, total_steps=8, warmup_proportion=0.25)
    clf.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    clf.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert _schedule(clf)["total_steps"] == 8 and _schedule(clf)["warmup_steps"] == 2
    assert int(clf.optimizer.iterations) == 4
    assert float(clf.optimizer.learning_rate) == pytest.approx(1e-3 * 4 / 6)


def test_reloaded_model_continues_where_it_was_saved(tiny_model_dir, tmp_path):
    """Before: training a reloaded `.keras` model replaced the optimizer it restored."""
    quiet = no_dropout_copy(tiny_model_dir, tmp_path / "tiny")   # the same steps, exactly
    clf = _classifier((bert_tf.load_encoder(quiet), bert_tf.load_preprocessor(quiet, 16)))
    clf.compile(learning_rate=1e-3, total_steps=12)
    clf.fit(TEXTS, LABELS, epochs=3, batch_size=4, verbose=0)   # 6 of the 12 steps
    path = str(tmp_path / "clf.keras")
    clf.save(path)
    reloaded = keras.models.load_model(path)
    assert int(reloaded.optimizer.iterations) == 6
    assert _schedule(reloaded)["total_steps"] == 12
    for a, b in zip(clf.optimizer.variables, reloaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # both continue the same optimizer: step 7 of 12, Adam moments kept, same weights
    more = dict(epochs=1, batch_size=8, verbose=0, shuffle=False)
    clf.fit(TEXTS, LABELS, **more)
    reloaded.fit(TEXTS, LABELS, **more)
    assert int(clf.optimizer.iterations) == int(reloaded.optimizer.iterations) == 7
    for a, b in zip(clf.get_weights(), reloaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_compile_in_a_strategy_scope_then_fit_outside(tiny_model_dir):
    """Before: `fit` compiled outside the scope: RuntimeError "Mixing different
    tf.distribute.Strategy objects"."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2,
                                     preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 16))
        clf.compile()
    history = clf.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 1 and clf.optimizer.iterations.numpy() == 2


# -- 2. every input Keras takes ------------------------------------------------------------
def test_datasets_of_text_batched_or_not(parts):
    """Before: a `tf.data.Dataset` of texts reached the model unprocessed: "expects 3
    input(s), but it received 1"."""
    clf = _classifier(parts)
    clf.compile()
    want = clf.predict(TEXTS, verbose=0)
    texts = tf.data.Dataset.from_tensor_slices(TEXTS)
    np.testing.assert_allclose(clf.predict(texts.batch(3), verbose=0), want, atol=1e-5)
    np.testing.assert_allclose(clf.predict(texts, verbose=0), want, atol=1e-5)  # unbatched

    ds = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS))
    history = clf.fit(ds.batch(4), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert _schedule(clf)["total_steps"] == 4   # the dataset's size sized the schedule
    weights = np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32")
    weighted = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS, weights)).batch(8)
    # zero weight on the last four: the first four's losses over the batch of 8
    # (Keras' sum_over_batch_size)
    want_loss = clf.evaluate(TEXTS[:4], LABELS[:4], verbose=0, return_dict=True)["loss"]
    got = clf.evaluate(weighted, verbose=0, return_dict=True)["loss"]
    assert got == pytest.approx(want_loss / 2, rel=1e-5)
    assert clf.evaluate(ds, verbose=0, return_dict=True)["loss"] == pytest.approx(
        clf.evaluate(TEXTS, LABELS, verbose=0, return_dict=True)["loss"], rel=1e-5)


def test_pairs_in_every_form(parts):
    """Before: rows of pairs (`list(zip(a, b))`) were refused as "single texts"."""
    a, b = TEXTS[:4], TEXTS[4:]
    clf = _classifier(parts, text_pairs=True)
    clf.compile()
    want = clf.predict((a, b), verbose=0)
    for same in (list(zip(a, b)), np.array(list(zip(a, b))), tf.constant(list(zip(a, b))),
                 tf.data.Dataset.from_tensor_slices((a, b)).batch(2),
                 tf.data.Dataset.from_tensor_slices((a, b))):
        np.testing.assert_allclose(clf.predict(same, verbose=0), want, atol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices(((a, b), LABELS[:4])).batch(2)
    clf.fit(ds, epochs=1, verbose=0)
    assert int(clf.optimizer.iterations) == 2


def test_one_string_and_validation_split(parts):
    """Before: `predict("one string")` failed in unbatching, and `validation_split`
    on lists blamed an internal `_PrefetchDataset`."""
    clf = _classifier(parts)
    clf.compile()
    one = clf.predict("a good film", verbose=0)
    assert one.shape == (1, 2)
    np.testing.assert_allclose(one, clf.predict(["a good film"], verbose=0), atol=1e-6)
    history = clf.fit(TEXTS, LABELS, epochs=1, batch_size=2, validation_split=0.25, verbose=0)
    # Keras' rule: the last quarter validates, the rest trains (3 batches of 2)
    assert int(clf.optimizer.iterations) == 3
    assert history.history["val_loss"][0] == pytest.approx(
        clf.evaluate(TEXTS[6:], LABELS[6:], verbose=0, return_dict=True)["loss"], rel=1e-5)
    history = clf.fit(TEXTS, LABELS, validation_data=(TEXTS[:2], LABELS[:2]), verbose=0)
    assert "val_accuracy" in history.history


@pytest.mark.parametrize("pairs_model, given, says", [
    (True, TEXTS[:2], "got 2 single texts"),
    (False, (TEXTS[:2], TEXTS[2:4]), "got 2 pairs of texts"),
    (False, list(zip(TEXTS[:2], TEXTS[2:4])), "got 2 pairs of texts"),
    (True, tf.data.Dataset.from_tensor_slices(TEXTS), "got a dataset of single texts"),
])
def test_pair_mismatch_says_what_it_got(parts, pairs_model, given, says):
    clf = _classifier(parts, text_pairs=pairs_model)
    with pytest.raises(ConfigError, match=says):
        clf.predict(given, verbose=0)


def test_wrong_labels_are_named_before_the_loss(parts):
    clf = _classifier(parts)
    clf.compile()
    with pytest.raises(ConfigError, match="multi_label"):
        clf.fit(TEXTS[:2], [[1, 0], [0, 1]], verbose=0)
    with pytest.raises(ConfigError, match="regression"):
        clf.fit(TEXTS[:2], [0.5, 1.7], verbose=0)
    with pytest.raises(ConfigError, match="2 texts but 3 labels"):
        clf.fit(TEXTS[:2], [0, 1, 1], verbose=0)


# -- 3. multi-label and regression ----------------------------------------------------------
def test_multi_label_trains_and_serves_its_labels(parts, tmp_path):
    """Before: a multi-label model's export applied softmax and argmax."""
    names = ["funny", "sad", "long"]
    y = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1], [0, 1, 1],
                  [1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 1, 0]])
    clf = _classifier(parts, num_classes=3, labels=names, problem="multi_label", threshold=0.4)
    clf.compile(learning_rate=1e-3)   # default: binary cross-entropy on the sigmoids
    history = clf.fit(TEXTS, y, epochs=2, batch_size=4, verbose=0)
    assert {"micro_f1", "macro_f1"} <= set(history.history)
    logits = clf.predict(TEXTS, verbose=0)
    p = 1 / (1 + np.exp(-logits.astype("float64")))
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    result = clf.evaluate(TEXTS, y, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(bce, 1e-4)
    path = str(tmp_path / "tags.keras")    # the loss and the F1 metrics reload with the model
    clf.save(path)
    reloaded = keras.models.load_model(path)
    assert (reloaded.problem, reloaded.threshold) == ("multi_label", 0.4)
    assert reloaded.evaluate(TEXTS, y, verbose=0, return_dict=True) == pytest.approx(result)

    targets = bert_tf.export_model(clf, str(tmp_path / "export"))
    served = tf.saved_model.load(targets["serving"]).signatures["serving_default"](
        text=tf.constant(TEXTS))
    probs = tf.sigmoid(clf.predict(TEXTS, verbose=0)).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), probs, atol=1e-5)
    assert "label" not in served
    got = [[x.decode() for x in row if x] for row in served["labels"].numpy()]
    assert got == [[n for n, p in zip(names, row) if p > 0.4] for row in probs]


def test_regression_trains_and_serves_predictions(parts, tmp_path):
    """Before: a regression model served `probabilities [[1.0]]` and label "0"."""
    scores = np.linspace(0.0, 5.0, len(TEXTS)).astype("float32")
    clf = _classifier(parts, num_classes=None, problem="regression")
    clf.compile(learning_rate=1e-3)   # default: mean squared error
    clf.fit(TEXTS, scores, epochs=2, batch_size=4, verbose=0)
    predictions = clf.predict(TEXTS, verbose=0)
    assert predictions.shape == (8, 1)
    mse = np.mean((predictions[:, 0] - scores) ** 2)
    assert clf.evaluate(TEXTS, scores, verbose=0, return_dict=True)["loss"] == \
        pytest.approx(mse, rel=1e-4)
    targets = bert_tf.export_model(clf, str(tmp_path / "export"))
    served = tf.saved_model.load(targets["serving"]).signatures["serving_default"](
        text=tf.constant(TEXTS))
    assert not {"probabilities", "label", "logits"} & set(served)
    np.testing.assert_allclose(served["predictions"].numpy(), predictions, atol=1e-5)
