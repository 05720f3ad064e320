"""The Keras-native API: every layer and model class serialises (config, `.keras`,
Google-name model dirs), raw text goes into Keras models through `BertPreprocessor`,
and a classifier built in Python exports and serves the same probabilities."""
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.config import BertConfig
from bert_tf.layers import (AttentionPooling, BertEmbeddings, BertPooler, MaskedPooling,
                            NextSentenceHead, SpanLogits, TransformerBlock)
from tests.conftest import ROOT, data_path, report
from tests.harness import assert_same_outputs, run_checkpoint_test, run_serialization_test

TINY = BertConfig.preset("tiny")


def _inputs(batch=3, seq=9, vocab=TINY.vocab_size):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab, (batch, seq)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    types = np.zeros_like(ids)
    types[:, 4:] = 1
    return {"input_word_ids": ids * mask, "input_mask": mask, "input_type_ids": types * mask}


X = _inputs()
H = np.random.default_rng(1).normal(size=(3, 9, TINY.hidden_size)).astype("float32")
MASK = X["input_mask"]


def _layer_cases():
    seq = keras.Input((None, TINY.hidden_size))
    mask = keras.Input((None,), dtype="int32")
    ids = keras.Input((None,), dtype="int32")
    return [
        ("embeddings", lambda: BertEmbeddings(TINY.vocab_size, TINY.hidden_size),
         lambda l: l(X["input_word_ids"], X["input_type_ids"]) if not isinstance(l, keras.Model)
         else l([X["input_word_ids"], X["input_type_ids"]]), [ids, keras.Input((None,),
                                                                             dtype="int32")]),
        ("transformer", lambda: TransformerBlock(TINY.hidden_size, 2, 64),
         lambda l: l(H, MASK) if not isinstance(l, keras.Model) else l([H, MASK]), [seq, mask]),
        ("transformer_skip", lambda: TransformerBlock(TINY.hidden_size, 2, 64, skip_padding=True),
         lambda l: l(H, MASK) if not isinstance(l, keras.Model) else l([H, MASK]), [seq, mask]),
        ("pooler", lambda: BertPooler(TINY.hidden_size), lambda l: l(H), seq),
        ("mean", lambda: MaskedPooling("mean_sqrt_len"),
         lambda l: l(H, MASK) if not isinstance(l, keras.Model) else l([H, MASK]), [seq, mask]),
        ("attention", lambda: AttentionPooling(),
         lambda l: l(H, MASK) if not isinstance(l, keras.Model) else l([H, MASK]), [seq, mask]),
        ("nsp", lambda: NextSentenceHead(TINY.hidden_size), lambda l: l(H[:, 0]),
         keras.Input((TINY.hidden_size,))),
        ("span", lambda: SpanLogits(),
         lambda l: l(H, MASK, X["input_type_ids"]) if not isinstance(l, keras.Model)
         else l([H, MASK, X["input_type_ids"]]), [seq, mask, keras.Input((None,), dtype="int32")]),
    ]


@pytest.mark.parametrize("case", _layer_cases(), ids=lambda c: c[0])
def test_layers_serialise(case, tmp_path):
    _, make, call, inputs = case
    run_serialization_test(make(), call, tmp_path, wrap_inputs=inputs)


def test_preprocessor_serialises(vocab_file, tmp_path):
    pre = bert_tf.BertPreprocessor(vocab_file, seq_length=16)
    texts = tf.constant(["Hello, world!", "a much longer sentence " * 5])
    run_serialization_test(pre, lambda p: p(texts), tmp_path,
                           wrap_inputs=keras.Input(shape=(), dtype="string"))


@pytest.fixture(scope="module")
def tiny_parts(tiny_model_dir):
    return (bert_tf.load_encoder(tiny_model_dir),
            bert_tf.load_preprocessor(tiny_model_dir, seq_length=16))


def _model_cases(encoder, preprocessor):
    keras.utils.set_random_seed(2)
    positions = np.array([[1, 2], [0, 3], [2, 2]], "int32")
    with_positions = {**X, "masked_lm_positions": positions}
    return {
        "encoder": (encoder, lambda m: m(X)),
        "classifier": (bert_tf.BertClassifier(encoder, 3, pooling="attention",
                                              preprocessor=preprocessor, labels=["a", "b", "c"]),
                       lambda m: m(X)),
        "classifier_multi_label": (
            bert_tf.BertClassifier(encoder, 3, preprocessor=preprocessor, labels=["x", "y", "z"],
                                   problem="multi_label", threshold=0.3, text_pairs=True),
            lambda m: m(X)),
        "classifier_regression": (
            bert_tf.BertClassifier(encoder, problem="regression", num_outputs=2, pooling="mean",
                                   preprocessor=preprocessor), lambda m: m(X)),
        "span": (bert_tf.BertSpanModel(encoder, preprocessor), lambda m: m(X)),
        "pretrainer": (bert_tf.BertPretrainer(encoder), lambda m: m(with_positions)),
    }


@pytest.mark.parametrize("name", ["encoder", "classifier", "classifier_multi_label",
                                  "classifier_regression", "span", "pretrainer"])
def test_models_serialise_and_keep_google_names(name, tiny_parts, tmp_path):
    encoder, preprocessor = tiny_parts
    model, call = _model_cases(encoder, preprocessor)[name]
    reloaded = run_serialization_test(model, call, tmp_path)
    if getattr(model, "preprocessor", None) is not None:
        assert reloaded.preprocessor.get_config() == preprocessor.get_config()
    from_dir = run_checkpoint_test(model, call, tmp_path, preprocessor)
    if isinstance(model, bert_tf.BertClassifier):  # the head's kind survives the model dir
        keys = ("problem", "threshold", "labels", "text_pairs", "pooling", "num_classes")
        assert [getattr(from_dir, k) for k in keys] == [getattr(model, k) for k in keys]


def test_heads_leave_the_encoder_as_it_was(tiny_parts):
    """Building a head never changes the encoder given to it; the unused pooler is the
    head's business (left out of its trainable variables)."""
    encoder, preprocessor = tiny_parts
    before = [v.trainable for v in encoder.weights]
    clf = bert_tf.BertClassifier(encoder, 2, pooling="mean")
    span = bert_tf.BertSpanModel(encoder)
    assert [v.trainable for v in encoder.weights] == before
    assert encoder.get_layer("pooler").trainable
    pooler = {id(v) for v in encoder.get_layer("pooler").weights}
    for model in (clf, span):
        assert not pooler & {id(v) for v in model.trainable_variables}
        assert pooler <= {id(v) for v in model.non_trainable_variables}
    with_pooler = bert_tf.BertClassifier(encoder, 2)
    assert pooler <= {id(v) for v in with_pooler.trainable_variables}


def test_classifier_fits_and_predicts_text(tiny_parts):
    """`fit`/`evaluate`/`predict` on Python lists of strings, single texts and pairs,
    with `compile()`'s default recipe; the same texts through the layers by hand
    give the same logits."""
    encoder, preprocessor = tiny_parts
    texts = ["a good film", "a bad film", "great acting", "dull and long"] * 4
    labels = [1, 0, 1, 0] * 4
    clf = bert_tf.BertClassifier(encoder, 2, preprocessor=preprocessor)
    clf.compile()
    history = clf.fit(texts, labels, epochs=3, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 3
    assert clf.optimizer.iterations.numpy() == 12  # 4 batches × 3 epochs
    schedule = clf.optimizer.get_config()["learning_rate"]["config"]  # BERT's recipe
    assert schedule == {"peak": 5e-5, "total_steps": 12, "warmup_steps": 1,
                        "warmup_proportion": 0.1}
    logits = clf.predict(texts[:3], verbose=0)
    np.testing.assert_allclose(logits, clf(preprocessor(tf.constant(texts[:3]))), atol=1e-5)
    for same in (np.array(texts[:3]), tf.constant(texts[:3]), [t.encode() for t in texts[:3]]):
        np.testing.assert_array_equal(clf.predict(same, verbose=0), logits)
    right = np.mean(np.argmax(clf.predict(texts, verbose=0), -1) == np.array(labels))
    assert clf.evaluate(texts, labels, verbose=0, return_dict=True)["accuracy"] == \
        pytest.approx(right)

    pairs = bert_tf.BertClassifier(encoder, 2, preprocessor=preprocessor, text_pairs=True)
    pairs.compile()
    a, b = texts[:8], texts[8:]
    pairs.fit((a, b), labels[:8], epochs=1, batch_size=4, verbose=0)
    got = pairs.predict((a[:2], b[:2]), verbose=0)
    want = pairs(preprocessor((tf.constant(a[:2]), tf.constant(b[:2]))))
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="text_pairs"):
        pairs.predict(a, verbose=0)


@pytest.mark.slow
def test_keras_recipe_on_sst2(minilm_dir, tmp_path):
    """TF Hub's "classify text with BERT" recipe in Keras 3: raw strings -> preprocessor
    -> encoder -> Dropout -> Dense, `fit` on 256 SST-2 sentences; `.keras` round trip;
    and the same model as a `BertClassifier` served through the exported SavedModel."""
    import tensorflow_text  # noqa: F401  (registers the serving export ops)
    from bert_tf.data.glue import read_tsv
    train = read_tsv(data_path("SST-2", "train.tsv"), "sentence", None, "label")
    texts, labels = train.texts_a[:256], np.array([int(x) for x in train.labels[:256]])
    keras.utils.set_random_seed(0)
    # 32 tokens hold 241 of the 256 sentences whole (their median is 10): twice the
    # steps a second of 64, and the loss falls as far (0.68 -> 0.48 at 64, 2026-12-07)
    pre = bert_tf.load_preprocessor(minilm_dir, seq_length=32)
    enc = bert_tf.load_encoder(minilm_dir)
    text = keras.Input(shape=(), dtype="string")
    x = keras.layers.Dropout(0.1)(enc(pre(text))["pooled_output"])
    model = keras.Model(text, keras.layers.Dense(2)(x))
    model.compile(optimizer=keras.optimizers.Adam(5e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(tf.constant(texts), labels, epochs=3, batch_size=32, verbose=0)
    loss = history.history["loss"]
    report(f"Keras recipe, MiniLM, 256 SST-2 sentences, 3 epochs: loss "
           f"{' -> '.join(f'{v:.3f}' for v in loss)}")
    assert loss[-1] < loss[0] - 0.05
    path = str(tmp_path / "recipe.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    probe = tf.constant(texts[:16])
    assert_same_outputs(model.predict(probe, verbose=0), reloaded.predict(probe, verbose=0))

    clf = bert_tf.BertClassifier(enc, 2, preprocessor=pre, labels=["negative", "positive"])
    clf.compile()
    clf.fit(texts[:64], labels[:64], epochs=1, verbose=0)
    targets = bert_tf.export_model(clf, str(tmp_path / "export"))
    serve = tf.saved_model.load(targets["serving"]).signatures["serving_default"]
    served = serve(text=probe)
    want = tf.nn.softmax(clf.predict(texts[:16], verbose=0)).numpy()
    diff = np.abs(served["probabilities"].numpy() - want).max()
    report(f"BertClassifier exported with export_model vs predict: max |diff| "
           f"probabilities {diff:.1e}")
    assert diff < 1e-5
    assert [x.decode() for x in served["label"].numpy()] == \
        [["negative", "positive"][i] for i in want.argmax(-1)]


def readme_snippets_job(folder: str) -> str:
    """README's "In Python" snippets and the python blocks of the guides under docs/
    (`python_snippets`, tests/test_docs.py), with MiniLM's path put in, run in a fresh
    interpreter in the empty folder FOLDER/work; MiniLM is converted into FOLDER/minilm
    first (as the `minilm_dir` fixture does), in a process of its own. Started with the
    tests (conftest.py, Background): two minutes of one process, beside the suite."""
    import textwrap
    from tests.test_docs import python_snippets
    minilm, work = os.path.join(folder, "minilm"), os.path.join(folder, "work")
    convert = ("from bert_tf.models.convert import convert_hf\n"
               "from pipelines.minilm import minilm_source_dir\n"
               f"convert_hf(minilm_source_dir(), {minilm!r})\n")
    code = python_snippets().replace("saved_models/minilm", minilm)
    home = os.path.join(folder, "bert-tf-home")   # presets convert here, not into ~/.cache
    code = f"import os\nos.environ['BERT_TF_HOME'] = {home!r}\nos.makedirs({work!r})\n" \
        f"os.chdir({work!r})\n{code}\n" \
        "print(sorted(n for n in os.listdir('saved_models/mine') if not n.startswith('.')), " \
        "clf.predict(['a wonderful film']).shape, tags.loss.name, sts.loss.name, " \
        "sts.predict(('a cat sleeps', 'a cat is asleep')).shape, clf.optimizer.iterations.numpy())\n" \
        "probs = serving(tf.constant(['a wonderful film']))['probabilities'].numpy()\n" \
        "label = model.signatures['serving_default'](text=tf.constant(['a wonderful film']))" \
        "['label'].numpy()[0].decode()\n" \
        "print('docs:', pairs['pooled_output'].shape, pooled.shape.as_list(), probs.shape, " \
        "abs(probs.sum() - 1) < 1e-5, label == ['negative', 'positive'][probs.argmax()])"
    return textwrap.dedent(f"""
        import subprocess, sys
        for program in ({convert!r}, {code!r}):
            proc = subprocess.run([sys.executable, "-c", program], capture_output=True,
                                  text=True, cwd={ROOT!r})
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            if proc.returncode:
                sys.exit(proc.returncode)
        """)


@pytest.mark.slow
@pytest.mark.background(job=readme_snippets_job)
def test_readme_keras_snippets_run(background):
    """README's "In Python" snippets and the guides' python blocks run as written
    (`readme_snippets_job`)."""
    out = background.wait()
    work = Path(background.folder) / "work"
    # the second fit (2 batches) continued the first's optimizer (1 batch)
    assert "['encoder', 'preprocessor', 'serving'] (1, 2) binary_crossentropy " \
        "mean_squared_error (1, 1) 3" in out
    # docs/serving.md on the export README's snippets wrote: the three ways to load it agree
    assert "docs: (1, 384) [None, 384] (1, 2) True True" in out
    assert (work / "runs" / "mine" / "model" / "bert_model.ckpt.index").exists()
