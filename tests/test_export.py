"""SavedModel exports load and behave where TF Hub and TF Serving models do."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli
from tests.conftest import data_path, report, run_python
from tests.test_tokenizer import EDGE_CASES

TEXTS = ["the movie was wonderful", "a dull , lifeless script that never ends", "Café 中文 x²"]


@pytest.fixture(scope="module")
def minilm_export(minilm_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("exports") / "minilm")
    assert cli(["export", "--model", minilm_dir, "--out", base, "--seq-length", "32"]) == 0
    return base


@pytest.fixture(scope="module")
def tiny_export(tiny_model_dir, tmp_path_factory):
    import bert_tf
    base = str(tmp_path_factory.mktemp("exports") / "tiny")
    bert_tf.export_model(bert_tf.load_encoder(tiny_model_dir), base, seq_length=32,
                         preprocessor=bert_tf.load_preprocessor(tiny_model_dir))
    return base


def test_layout_and_versions(minilm_export, minilm_dir, capsys):
    for name in ("encoder", "preprocessor", "serving"):
        assert os.listdir(os.path.join(minilm_export, name)) == ["1"]
        assert os.path.exists(os.path.join(minilm_export, name, "1", "saved_model.pb"))
    assert os.path.exists(os.path.join(minilm_export, "serving", "1", "assets.extra",
                                       "tf_serving_warmup_requests"))
    # an existing version is refused without --overwrite
    assert cli(["export", "--model", minilm_dir, "--out", minilm_export, "--version", "1"]) == 2
    assert "exists" in capsys.readouterr().err


def test_fresh_process_reproduces_in_process_outputs(minilm_export, minilm_dir):
    import bert_tf
    encoder = bert_tf.load_encoder(minilm_dir)
    inputs = bert_tf.load_preprocessor(minilm_dir, seq_length=32)(tf.constant(TEXTS))
    expected = encoder(inputs)
    code = f"""
import json, numpy as np, tensorflow as tf, tensorflow_text
texts = tf.constant({TEXTS!r})
pre = tf.saved_model.load({minilm_export!r} + "/preprocessor/1")
enc = tf.saved_model.load({minilm_export!r} + "/encoder/1")
srv = tf.saved_model.load({minilm_export!r} + "/serving/1").signatures["serving_default"]
x = pre(texts)
o = enc(x, training=False)
s = srv(text=texts)
sig = enc.signatures["serving_default"](**x)
print(json.dumps({{"ids": x["input_word_ids"].numpy().tolist(),
  "pooled": o["pooled_output"].numpy().tolist(), "seq": o["sequence_output"].numpy().tolist(),
  "default": o["default"].numpy().tolist(), "n_layers": len(o["encoder_outputs"]),
  "sig_pooled": sig["pooled_output"].numpy().tolist(),
  "srv_pooled": s["pooled_output"].numpy().tolist(), "srv_mask": s["input_mask"].numpy().tolist(),
  "srv_seq": s["sequence_output"].numpy().tolist()}}))
"""
    got = json.loads(run_python(code).strip().splitlines()[-1])
    np.testing.assert_array_equal(got["ids"], inputs["input_word_ids"].numpy())
    pooled, seq = expected["pooled_output"].numpy(), expected["sequence_output"].numpy()
    diffs = {k: float(np.abs(np.array(got[k]) - pooled).max())
             for k in ("pooled", "default", "sig_pooled", "srv_pooled")}
    diffs["seq"] = float(np.abs(np.array(got["seq"]) - seq).max())
    # the serving export pads to the batch's longest text: compare real tokens
    srv_seq, mask = np.array(got["srv_seq"]), np.array(got["srv_mask"]).astype(bool)
    diffs["srv_seq"] = float(np.abs(srv_seq[mask] - seq[:, :srv_seq.shape[1]][mask]).max())
    assert not srv_seq[~mask].any()  # the serving export skips padding: zeros there
    report("export parity, fresh process vs in-process (max |diff|): " + ", ".join(
        f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) <= 1e-5 and got["n_layers"] == 6


def test_preprocessor_export_gives_tokenizer_ids(minilm_export, tokenizer):
    texts = EDGE_CASES + [line.split("\t")[0] for line in
                          open(data_path("SST-2", "dev.tsv"), encoding="utf-8").read().splitlines()[1:]]
    pre = tf.saved_model.load(os.path.join(minilm_export, "preprocessor", "1"))
    got = pre(tf.constant(texts))
    want = tokenizer.preprocess(tf.constant(texts), seq_length=32)
    for k in want:
        np.testing.assert_array_equal(got[k].numpy(), want[k].numpy())
    tok = pre.tokenize(tf.constant(texts))
    np.testing.assert_array_equal(tok.flat_values, tokenizer.tokenize(tf.constant(texts)).flat_values)
    special = {k: int(v) for k, v in pre.tokenize.get_special_tokens_dict().items()}
    assert special == {"vocab_size": 30522, "padding_id": 0, "start_of_sequence_id": 101,
                       "end_of_segment_id": 102, "mask_id": 103}
    pair = pre.bert_pack_inputs([tok[:4], tok[4:8]], seq_length=20)
    want = tokenizer.pack_inputs([tok[:4], tok[4:8]], 20)
    np.testing.assert_array_equal(pair["input_type_ids"], want["input_type_ids"])
    report(f"preprocessor export: {len(texts)} texts (edge cases + SST-2 dev), ids identical")


def test_saved_model_cli_lists_signatures(minilm_export):
    cli_path = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli_path, "show", "--all", "--dir",
                          os.path.join(minilm_export, "serving", "1")],
                         capture_output=True, text=True, timeout=300).stdout
    assert "signature_def['serving_default']" in out and "signature_def['encode_pair']" in out
    for name in ("text", "pooled_output", "sequence_output", "input_mask"):
        assert f"['{name}']" in out
    out = subprocess.run([cli_path, "show", "--all", "--dir",
                          os.path.join(minilm_export, "encoder", "1")],
                         capture_output=True, text=True, timeout=300).stdout
    for name in ("input_word_ids", "input_mask", "input_type_ids"):
        assert f"inputs['{name}'] tensor_info:\n        dtype: DT_INT32" in out
    assert "outputs['pooled_output']" in out and "outputs['sequence_output']" in out
    assert "CaseFold" not in out


def test_encoder_export_has_no_text_ops(minilm_export):
    from tensorflow.core.protobuf import saved_model_pb2
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(minilm_export, "encoder", "1", "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    ops = {n.op for g in [sm.meta_graphs[0].graph_def] for n in g.node}
    ops |= {n.op for fn in sm.meta_graphs[0].graph_def.library.function for n in fn.node_def}
    text_ops = sorted(o for o in ops if "UTF8" in o or "Wordpiece" in o or "RegexSplit" in o)
    assert not text_ops


def test_exports_store_each_weight_once(minilm_export, minilm_dir):
    """The encoder export tracked the Keras model beside TF Hub's `.variables` list and
    saved every weight twice (174 MB for 87 MB of MiniLM): the checkpoints must hold
    exactly the model's variables (weights and dropout seeds), once, beside the
    checkpoint's own scalars."""
    import bert_tf
    encoder = bert_tf.load_encoder(minilm_dir)
    # the encoder export is fine-tunable (dropout seeds too); the serving one only serves
    want = {"encoder": sum(int(np.prod(v.shape)) for v in encoder.variables),
            "serving": encoder.count_params()}
    for name, params in want.items():
        shapes = tf.train.load_checkpoint(os.path.join(
            minilm_export, name, "1", "variables", "variables")).get_variable_to_shape_map()
        stored = sum(int(np.prod(s)) for k, s in shapes.items() if k.split("/")[0] not in
                     ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter", "do_lower_case"))
        assert stored == params, (name, stored, params)


def test_warmup_records_run(minilm_export):
    """The export's warm-up requests are batches of the first 1, 2, ..., n warm-up texts,
    and each runs on the serving signature."""
    from tensorflow_serving.apis import prediction_log_pb2
    from bert_tf.models.serving import WARMUP_TEXTS
    path = os.path.join(minilm_export, "serving", "1", "assets.extra", "tf_serving_warmup_requests")
    fn = tf.saved_model.load(os.path.join(minilm_export, "serving", "1")).signatures["serving_default"]
    sizes = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        assert list(inputs) == ["text"]
        texts = [t.decode() for t in inputs["text"]]
        assert texts == WARMUP_TEXTS[:len(texts)]
        out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["pooled_output"].shape == (len(texts), 384)
        sizes.append(len(texts))
    assert sizes == list(range(1, len(WARMUP_TEXTS) + 1)) and len(WARMUP_TEXTS) >= 3


def test_serving_refuses_wrong_dtype_and_survives_bad_utf8(minilm_export):
    fn = tf.saved_model.load(os.path.join(minilm_export, "serving", "1")).signatures["serving_default"]
    out = fn(text=tf.constant([b"caf\xc3 ok\xff", b"fine"]))
    assert out["pooled_output"].shape == (2, 384)
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        fn(text=tf.constant([1, 2]))
    with pytest.raises(TypeError):
        fn(texts=tf.constant(["x"]))


def test_hub_keras_layer_fine_tunes(tiny_export):
    """TF Hub's Reusable SavedModel contract, from a tf_keras model."""
    import tensorflow_hub as hub
    import tf_keras
    rows = open(data_path("SST-2", "train.tsv"), encoding="utf-8").read().splitlines()[1:65]
    texts = tf.constant([r.split("\t")[0] for r in rows])
    labels = np.array([int(r.split("\t")[1]) for r in rows])
    pre = tf.saved_model.load(os.path.join(tiny_export, "preprocessor", "1"))
    inputs = {k: v.numpy() for k, v in pre(texts).items()}
    layer = hub.KerasLayer(os.path.join(tiny_export, "encoder", "1"), trainable=True)
    model_inputs = {k: tf_keras.Input((None,), dtype=tf.int32, name=k) for k in inputs}
    pooled = layer(model_inputs)["pooled_output"]
    model = tf_keras.Model(model_inputs, tf_keras.layers.Dense(2)(pooled))
    encoder_vars = {v.name for v in layer.trainable_variables}
    assert len(layer.trainable_variables) == 39 and len(model.trainable_variables) == 41
    before = [v.numpy().copy() for v in layer.trainable_variables]
    model.compile(tf_keras.optimizers.Adam(1e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = model.evaluate(inputs, labels, verbose=0)
    model.fit(inputs, labels, epochs=8, batch_size=16, verbose=0)
    last = model.evaluate(inputs, labels, verbose=0)
    changed = sum(not np.array_equal(b, v.numpy()) for b, v in zip(before, layer.trainable_variables))
    report(f"hub.KerasLayer fine-tune (tiny encoder, 64 SST-2 examples, 8 epochs): loss "
           f"{first:.3f} -> {last:.3f}, {changed}/{len(before)} encoder weights changed")
    assert last < first and changed == len(before) and encoder_vars
    a = layer(inputs, training=True)["pooled_output"]
    b = layer(inputs, training=True)["pooled_output"]
    c = layer(inputs, training=False)["pooled_output"]
    assert np.abs(a - b).max() > 1e-4 and np.array_equal(c, layer(inputs)["pooled_output"])


def test_tfsm_layer_loads_serving_export(tiny_export):
    import keras
    text = keras.Input(shape=(), dtype="string", name="text")
    layer = keras.layers.TFSMLayer(os.path.join(tiny_export, "serving", "1"),
                                   call_endpoint="serving_default")
    model = keras.Model(text, layer(text)["pooled_output"])
    assert model(tf.constant(["hello", "world again"])).shape == (2, 128)


def test_serving_label_is_the_most_probable_class(tiny_model_dir):
    """The quick (not slow) check of the serving `label`: a tiny classifier's serving
    function (the one the export saves) gives for each text the name of its most
    probable class, and the model's probabilities. Catches a label taken from the
    wrong position (argmin, an off-by-one, the labels reversed) or the wrong logits."""
    import keras
    import bert_tf
    keras.utils.set_random_seed(5)
    names = ["neg", "mixed", "pos"]
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 3, labels=names,
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 16))
    texts = ["the movie was wonderful", "a dull , lifeless script", "it's fine .",
             "great acting", "i left early", "no opinion", "what a mess", "loved it"]
    # A head whose most probable class differs between texts: random directions from
    # the texts' mean pooled vector (the untrained encoder's are much alike).
    pooled = clf.encoder(clf.preprocessor(tf.constant(texts)))["pooled_output"].numpy()
    kernel = np.random.default_rng(1).normal(size=(128, 3)).astype("float32") * 100
    dense = clf.get_layer("classifier")
    dense.kernel.assign(kernel)
    dense.bias.assign(-pooled.mean(0) @ kernel)
    _, signatures, _ = clf.serving_module(clf.preprocessor.tokenizer, 16)
    out = signatures["serving_default"](text=tf.constant(texts))
    probabilities = tf.nn.softmax(clf(clf.preprocessor(tf.constant(texts)))).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), probabilities, atol=1e-4)
    want = [names[i] for i in probabilities.argmax(1)]
    assert [x.decode() for x in out["label"].numpy()] == want
    assert len(set(want)) >= 2, want  # a label that ignored the text would not pass


@pytest.mark.slow
def test_interrupted_export_leaves_base_as_it_was(tiny_model_dir, tmp_path, monkeypatch):
    """An export that fails at its last step (the warm-up requests, after all three
    SavedModels were written to temporary folders) leaves no version 2 and no temporary
    folder. The existing version 1 is a stand-in (its folders are all an export looks at),
    which saves an export."""
    import bert_tf
    from bert_tf import export
    encoder = bert_tf.load_encoder(tiny_model_dir)
    preprocessor = bert_tf.load_preprocessor(tiny_model_dir)
    base = tmp_path / "base"
    for name in export.EXPORTS:
        (base / name / "1" / "variables").mkdir(parents=True)
        (base / name / "1" / "saved_model.pb").write_bytes(b"version 1")
    (base / ".lock").touch()  # as exports before 2026-12-07 (commit 1691735) left it
    before = sorted(str(p.relative_to(base)) for p in base.rglob("*"))

    def fail(*args, **kwargs):
        raise RuntimeError("simulated crash while writing warm-up requests")
    monkeypatch.setattr(export, "write_warmup_requests", fail)
    with pytest.raises(RuntimeError, match="simulated"):
        export.export_model(encoder, str(base), seq_length=16, preprocessor=preprocessor)
    after = sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    assert after == before  # no version 2 of any export, no temporary folders
    assert (base / "serving" / "1" / "saved_model.pb").read_bytes() == b"version 1"


@pytest.mark.slow
def test_pair_serving_export_matches_the_reference_end_to_end(minilm_dir, tmp_path):
    """`encode_pair` (text, text_b) in a fresh export against transformers' BertModel on
    the same pairs: the preprocessor export packs HF's three id arrays exactly, the
    encoder export and the serving signature give HF's outputs. Catches a pair packed in
    the wrong order or with wrong type ids, a serving path that drops `text_b`, and
    padding that leaks into the outputs."""
    import bert_tf
    from tests.conftest import REFERENCE_DIR
    ref = np.load(os.path.join(REFERENCE_DIR, "minilm_outputs.npz"))
    with open(os.path.join(REFERENCE_DIR, "minilm_texts.json"), encoding="utf-8") as f:
        pairs = json.load(f)["pair"]
    a, b = tf.constant([p[0] for p in pairs]), tf.constant([p[1] for p in pairs])
    length = ref["pair_input_word_ids"].shape[1]  # HF pads to the longest pair
    base = str(tmp_path / "export")
    bert_tf.export_model(bert_tf.load_encoder(minilm_dir), base, seq_length=64,
                         preprocessor=bert_tf.load_preprocessor(minilm_dir))
    pre = tf.saved_model.load(os.path.join(base, "preprocessor", "1"))
    enc = tf.saved_model.load(os.path.join(base, "encoder", "1"))
    srv = tf.saved_model.load(os.path.join(base, "serving", "1")).signatures["encode_pair"]

    packed = pre.bert_pack_inputs([pre.tokenize(a), pre.tokenize(b)], seq_length=length)
    for name in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(packed[name].numpy(), ref[f"pair_{name}"], err_msg=name)
    assert ref["pair_input_type_ids"].any()  # the reference pairs do have a segment B
    encoded = enc(packed, training=False)
    served = srv(text=a, text_b=b)
    np.testing.assert_array_equal(served["input_mask"].numpy(), ref["pair_input_mask"])
    real = ref["pair_input_mask"].astype(bool)
    diffs = {
        "encoder export pooled": np.abs(encoded["pooled_output"].numpy()
                                        - ref["pair_pooled_output"]).max(),
        "encoder export sequence": np.abs(encoded["sequence_output"].numpy()[real]
                                          - ref["pair_sequence_output"][real]).max(),
        "serving pooled": np.abs(served["pooled_output"].numpy()
                                 - ref["pair_pooled_output"]).max(),
        "serving sequence": np.abs(served["sequence_output"].numpy()[real]
                                   - ref["pair_sequence_output"][real]).max(),
    }
    report("pairs end to end (MiniLM, encode_pair vs transformers, 3 pairs, max |diff|): "
           + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    assert max(diffs.values()) < 1e-4, diffs
    # text_b matters: the same texts as singles give other vectors
    single = tf.saved_model.load(os.path.join(base, "serving", "1")).signatures[
        "serving_default"](text=a)["pooled_output"].numpy()
    assert np.abs(single - ref["pair_pooled_output"]).max() > 1e-2


def _bfloat16_matmuls(signature) -> int:
    """MatMul / BatchMatMul nodes on bfloat16 tensors in a signature's graph."""
    graph = signature.graph.as_graph_def()
    nodes = [n for f in graph.library.function for n in f.node_def] + list(graph.node)
    return sum(n.op in ("MatMul", "BatchMatMulV2") and n.attr["T"].type == tf.bfloat16.as_datatype_enum
               for n in nodes)


def test_bfloat16_note_says_when_it_will_serve_slower(tiny_model_dir, tmp_path, monkeypatch,
                                                     capsys):
    """`export --precision bfloat16` on a CPU without bfloat16 instructions says it will
    serve slower and why, and exports anyway; where the hardware has them it says
    nothing. (The export itself is stubbed out here: the slow
    test_bfloat16_export_computes_in_bfloat16_and_answers_in_float32 checks it.)"""
    from bert_tf import cli as cli_module
    calls = []
    monkeypatch.setattr("bert_tf.export.export_model",
                        lambda *args, **kwargs: calls.append(kwargs["precision"])
                        or {"serving": "not/written"})
    # (nothing is written, so there are no signatures to print curls for)
    monkeypatch.setattr("bert_tf.export.serving_instructions", lambda *args: "")
    args = ["export", "--model", tiny_model_dir, "--out", str(tmp_path / "x")]
    monkeypatch.setattr(cli_module, "bfloat16_support", lambda: (False, "CPU X has no bf16 (test)"))
    assert cli(args + ["--precision", "bfloat16"]) == 0
    err = capsys.readouterr().err
    assert "slower than float32" in err and "CPU X has no bf16 (test)" in err, err
    assert cli(args) == 0                                   # float32: nothing to say
    assert "slower" not in capsys.readouterr().err
    monkeypatch.setattr(cli_module, "bfloat16_support", lambda: (True, "CPU Y has amx_bf16"))
    assert cli(args + ["--precision", "bfloat16"]) == 0
    assert "slower" not in capsys.readouterr().err
    assert calls == ["bfloat16", "float32", "bfloat16"]


@pytest.mark.slow
def test_bfloat16_export_computes_in_bfloat16_and_answers_in_float32(tiny_model_dir, tmp_path,
                                                                     monkeypatch, capsys):
    """`export --precision bfloat16`: the encoder and serving exports run their matmuls on
    bfloat16 tensors (a flag that changed nothing fails here: the float32 export has none),
    the encoder export keeps float32 variables and the serving export stores bfloat16 ones,
    both answer in float32 and agree with the float32 export of the same
    weights; on a CPU without bfloat16 instructions the command says it will be slower and
    why, and exports anyway (test_bfloat16_note_says_when_it_will_serve_slower checks the
    note where the hardware has bfloat16, without exporting)."""
    import keras
    import bert_tf
    from bert_tf import cli as cli_module
    from bert_tf.errors import ConfigError
    keras.utils.set_random_seed(3)
    clf = bert_tf.BertClassifier(bert_tf.load_encoder(tiny_model_dir), 2, labels=["neg", "pos"],
                                 preprocessor=bert_tf.load_preprocessor(tiny_model_dir, 32))
    model_dir = clf.save_model_dir(str(tmp_path / "clf"))
    base = str(tmp_path / "exports")
    monkeypatch.setattr(cli_module, "bfloat16_support", lambda: (False, "CPU X has no bf16 (test)"))
    assert cli(["export", "--model", model_dir, "--out", base, "--precision", "bfloat16"]) == 0
    err = capsys.readouterr().err
    assert "slower than float32" in err and "CPU X has no bf16 (test)" in err, err
    assert cli(["export", "--model", model_dir, "--out", base]) == 0              # version 2: fp32
    with pytest.raises(ConfigError, match="precision 'float16'"):
        bert_tf.export_model(clf, str(tmp_path / "x"), precision="float16")

    texts = tf.constant(["the movie was wonderful", "a dull , lifeless script", "It's fine."])
    ids = tf.saved_model.load(os.path.join(base, "preprocessor", "2"))(texts)
    out, matmuls, dtypes = {}, {}, {}
    for version, precision in (("1", "bf16"), ("2", "fp32")):
        signatures = tf.saved_model.load(os.path.join(base, "serving", version)).signatures
        serve = signatures["serving_default"]
        encoder = tf.saved_model.load(os.path.join(base, "encoder", version))
        out[precision] = {"serving": {**serve(text=texts), **signatures["embed"](text=texts)},
                          "call": encoder(ids),
                          "encoder": encoder.signatures["serving_default"](**ids)}
        matmuls[precision] = (_bfloat16_matmuls(serve),
                              _bfloat16_matmuls(encoder.signatures["serving_default"]))
        for part in out[precision].values():
            for key, value in part.items():
                for t in tf.nest.flatten(value):
                    assert t.dtype in (tf.float32, tf.int32, tf.string), (version, key, t.dtype)
        for kind in ("serving", "encoder"):
            reader = tf.train.load_checkpoint(os.path.join(base, kind, version, "variables",
                                                           "variables"))
            shapes = reader.get_variable_to_shape_map()
            sizes = dtypes[kind, precision] = {}
            for name, dtype in reader.get_variable_to_dtype_map().items():
                if dtype.is_floating:
                    sizes[dtype] = sizes.get(dtype, 0) + int(np.prod(shapes[name]))
    # The encoder export keeps float32 variables (a TF Hub user fine-tunes them); the
    # serving export stores its weights in bfloat16 (half the bytes read per request).
    # (The classifier head stays float32 in both: its logits are computed in float32.)
    assert set(dtypes["encoder", "bf16"]) == set(dtypes["encoder", "fp32"]) == {tf.float32}
    assert set(dtypes["serving", "fp32"]) == {tf.float32}, dtypes
    assert dtypes["serving", "bf16"][tf.bfloat16] > 0.99 * dtypes["serving", "fp32"][tf.float32]
    assert dtypes["serving", "bf16"].get(tf.float32, 0) <= 128 * 2 + 2, dtypes  # the head only
    assert matmuls["fp32"] == (0, 0) and min(matmuls["bf16"]) >= 2 * 7, matmuls
    worst = {}
    for part, key in (("serving", "pooled_output"), ("serving", "probabilities"),
                      ("call", "pooled_output"), ("encoder", "sequence_output")):
        a, b = out["bf16"][part][key].numpy(), out["fp32"][part][key].numpy()
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        worst[f"{part}.{key}"] = (float(np.abs(a - b).max()), float(cosine.min()))
        assert 0 < worst[f"{part}.{key}"][0] < 0.1 and cosine.min() > 0.999, (part, key, worst)
    report("export --precision bfloat16 (tiny classifier): bf16 matmuls in serving / encoder "
           f"graphs {matmuls['bf16']} (fp32 export {matmuls['fp32']}); vs fp32 export max |diff|, "
           "min cosine: " + ", ".join(f"{k} {d:.1e} {c:.5f}" for k, (d, c) in worst.items()))


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="answers for the GPU")
def test_bfloat16_support_reads_the_cpu_flags(monkeypatch):
    """bf16 is native only with AMX / AVX-512 BF16 / ARM BF16 and oneDNN on; otherwise the
    answer is no and says why (a check that always said yes, or ignored
    TF_ENABLE_ONEDNN_OPTS=0, fails here)."""
    from bert_tf import hardware

    def cpu(flags):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda: [
            "model name\t: Test CPU", f"flags\t\t: fpu sse2 avx2 fma {flags}"])
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    cpu("avx512f amx_tile amx_bf16")
    assert hardware.bfloat16_support() == (True, "CPU Test CPU has amx_bf16")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    native, why = hardware.bfloat16_support()
    assert not native and "TF_ENABLE_ONEDNN_OPTS=0" in why, why
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    cpu("")
    native, why = hardware.bfloat16_support()
    assert not native and "Test CPU has no bfloat16 instructions" in why and "avx2 fma" in why


@pytest.mark.parametrize("version", [0, -1, 2 ** 63, 10 ** 20, True])
def test_export_versions_out_of_range_are_refused_before_any_work(version, tiny_model_dir,
                                                                  tmp_path):
    """TF Serving reads version folders as 64-bit integers: 1 to 2**63 - 1 (a bool is no
    version). Refused before the model is copied or anything is written."""
    import bert_tf
    from bert_tf.errors import ConfigError
    encoder = bert_tf.load_encoder(tiny_model_dir)
    with pytest.raises(ConfigError, match=rf"version {version} \(--version\)"):
        bert_tf.export_model(encoder, str(tmp_path / "e"), version=version,
                             preprocessor=bert_tf.load_preprocessor(tiny_model_dir))
    assert os.listdir(tmp_path) == []
