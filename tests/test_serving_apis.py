"""The exports as TF Serving's model server runs them: only the ops it links."""
import json
import os

import pytest

from bert_tf.export.savedmodel import signature_defs
from tests.conftest import report, run_python

REFERENCE = os.path.join(os.path.dirname(__file__), "reference", "tf_serving_ops")


LABELS = ["negative", "positive"]
EMOTIONS = ["joy", "anger", "fear"]


@pytest.fixture(scope="module")
def exports(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """Tiny exports of each kind, by a name: the encoder's three (encoder, preprocessor,
    serving), and the serving exports of a classifier (SST-2's labels), a multi-label
    classifier, a pair regression (as STS-B) and a token classifier."""
    import keras
    import bert_tf
    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("exports")
    pre = bert_tf.load_preprocessor(tiny_model_dir, 16)
    pair_pre = bert_tf.load_preprocessor(tiny_model_dir, 24)

    def encoder():
        return bert_tf.load_encoder(tiny_model_dir)
    models = {
        "encoder": encoder(),
        "classifier": bert_tf.BertClassifier(encoder(), 2, labels=LABELS, preprocessor=pre),
        "multi-label classifier": bert_tf.BertClassifier(
            encoder(), 3, labels=EMOTIONS, problem="multi_label", threshold=0.4,
            preprocessor=pre, pooling="mean"),
        "pair regression": bert_tf.BertClassifier(
            encoder(), problem="regression", text_pairs=True, preprocessor=pair_pre),
        "token classifier": bert_tf.BertTokenClassifier(
            encoder(), ["O", "B-person", "I-person"], preprocessor=pre),
    }
    paths = {}
    for name, model in models.items():
        written = bert_tf.export_model(model, str(base / name.replace(" ", "_")),
                                       preprocessor=pair_pre if "pair" in name else pre)
        if name == "encoder":
            paths.update({f"encoder's {kind}": path for kind, path in written.items()})
        else:
            paths[name] = written["serving"]
    return paths


def graph_ops(export_dir: str) -> set[str]:
    """The op types of every node of a SavedModel's graphs: each meta graph's graph and
    every function of its library (calls of library functions are not ops)."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        library = meta_graph.graph_def.library
        ops |= {node.op for node in meta_graph.graph_def.node}
        for function in library.function:
            ops |= {node.op for node in function.node_def}
        ops -= {function.signature.name for function in library.function}
    return ops


def registered_ops() -> dict[str, list[str]]:
    """The op registry of a fresh process: `core`, TensorFlow's alone, and `text`, the
    names that importing tensorflow_text adds."""
    code = """
import json
import tensorflow as tf
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session as c_api
def names():
    buf = c_api.TF_GetAllOpList()
    try:
        return {op.name for op in op_def_pb2.OpList.FromString(c_api.TF_GetBuffer(buf)).op}
    finally:
        c_api.TF_DeleteBuffer(buf)
core = names()
import tensorflow_text
print(json.dumps({"core": sorted(core), "text": sorted(names() - core)}))
"""
    return json.loads(run_python(code).strip().splitlines()[-1])


def unlinked_ops(ops: dict[str, set[str]], core: set[str], served_text_ops: set[str]):
    """Export name -> its ops (sorted) that are neither `core` nor `served_text_ops`."""
    return {name: sorted(used - core - served_text_ops) for name, used in ops.items()
            if used - core - served_text_ops}


def test_exports_use_only_ops_tf_serving_links(exports):
    """TF Serving's model server links core TensorFlow and tensorflow-text's `ops_lib`
    (tests/reference/tf_serving_ops/SOURCE): an export with any other op (one of another
    library's, or a tensorflow-text op outside `ops_lib`) fails to load there ("Op type
    not registered") although it loads in Python. Catches such an op in any export."""
    with open(os.path.join(REFERENCE, "tensorflow_text_ops.txt"), encoding="utf-8") as f:
        served_text_ops = set(f.read().split())
    registry = registered_ops()
    core = set(registry["core"])
    # The fixture names real tensorflow-text ops (no typo, none taken for core).
    assert served_text_ops <= set(registry["text"]), served_text_ops - set(registry["text"])
    ops = {name: graph_ops(path) for name, path in exports.items()}
    unlinked = unlinked_ops(ops, core, served_text_ops)
    assert not unlinked, f"ops that TF Serving does not link, by export: {unlinked}"
    # The walk reaches the functions that tokenize (the top graphs alone hold none of
    # these), and an op missing from TF Serving's list is named with each export using it.
    text_used = set().union(*ops.values()) & served_text_ops
    assert text_used == {"FastWordpieceTokenizeWithOffsets", "NormalizeUTF8",
                         "RegexSplitWithOffsets"}, text_used
    assert unlinked_ops(ops, core, served_text_ops - {"RegexSplitWithOffsets"}) == {
        name: ["RegexSplitWithOffsets"] for name in exports if name != "encoder's encoder"}
    report(f"TF Serving ops: {len(exports)} exports, only core TensorFlow and tensorflow-text "
           f"ops_lib ops; tensorflow-text ops used: {', '.join(sorted(text_used))}")


# -- the answers as TF Serving's REST API writes them ------------------------------------------

def rest_float(value: float) -> str:
    """A float32 as TF Serving's REST API writes it (tensorflow/serving d7c3b3d,
    tensorflow_serving/util/json_tensor.cc, WriteDecimal): `%g` (absl::StrCat), or
    `%.9g` when that does not read back to the same float32; `.0` after whole numbers."""
    import numpy as np
    value = np.float32(value)
    text = "%g" % value
    if np.float32(float(text)) != value:
        text = "%.9g" % value
    return text + ".0" if "." not in text and "e" not in text else text


def rest_rows(outputs: dict) -> str:
    """The body of TF Serving's REST answer to a row-format ("instances") request,
    from a signature's outputs: json_tensor.cc's MakeRowFormatJsonFromTensors at the
    same commit (rapidjson's PrettyWriter, 4-space indent, each row's arrays on one line;
    one object per row, outputs in key order; bytes outputs as strings)."""
    import numpy as np

    def value(v) -> str:
        if isinstance(v, np.ndarray) and v.ndim:
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, (bytes, np.bytes_)):
            return json.dumps(v.decode("utf-8"))
        if np.issubdtype(np.asarray(v).dtype, np.floating):
            return rest_float(v)
        return str(int(v))
    arrays = {name: np.asarray(t) for name, t in sorted(outputs.items())}
    rows = []
    for i in range(len(next(iter(arrays.values())))):
        members = ",\n".join(f'            "{name}": {value(a[i])}' for name, a in arrays.items())
        rows.append("        {\n" + members + "\n        }")
    return '{\n    "predictions": [\n' + ",\n".join(rows) + "\n    ]\n}"


def sst2_sentence() -> str:
    """The first sentence of SST-2's dev set (GLUE's dev.tsv)."""
    from tests.conftest import data_path
    with open(data_path("SST-2", "dev.tsv"), encoding="utf-8") as f:
        next(f)
        return next(f).split("\t")[0]


def test_serving_default_answers_a_sentence_in_under_1kb(exports):
    """A classifier's `serving_default` returns its answer alone: before, it also
    returned `sequence_output`, `pooled_output` and `input_mask`, and TF Serving's REST
    API answered one sentence with about 100 KB. The vectors come from `embed` and
    `encode`."""
    import tensorflow as tf
    serve = tf.saved_model.load(exports["classifier"])
    text = tf.constant([sst2_sentence()])
    answer = serve.signatures["serving_default"](text=text)
    assert sorted(answer) == ["label", "logits", "probabilities"]
    body = rest_rows(answer)
    assert len(body.encode()) < 1024, body
    parsed = json.loads(body)["predictions"][0]
    assert parsed["label"] in LABELS and len(parsed["probabilities"]) == 2
    # The vectors, from their own signatures, are those of the same call.
    embed = serve.signatures["embed"](text=text)
    encode = serve.signatures["encode"](text=text)
    assert sorted(embed) == ["pooled_output"]
    assert sorted(encode) == ["input_mask", "sequence_output"]
    everything = {**answer, **embed, **encode}
    report(f"TF Serving REST body, one SST-2 dev sentence ({len(text.numpy()[0])} chars), "
           f"tiny classifier: serving_default {len(body.encode())} bytes; with the vectors "
           f"(before 2026-12-08) {len(rest_rows(everything).encode()):,} bytes")


def test_embed_and_encode_are_the_models_vectors(exports, tiny_model_dir):
    """`embed` returns the vector the head sees (here the multi-label model's mean
    pooling, not the pooler) and `encode` the sequence output: each equal to the
    Keras model's own on the same texts, and serving_default's head on them."""
    import numpy as np
    import tensorflow as tf
    texts = tf.constant(["a joyful, fearless ride", "so angry"])
    serve = tf.saved_model.load(exports["multi-label classifier"])
    embed = serve.signatures["embed"](text=texts)["pooled_output"].numpy()
    encode = serve.signatures["encode"](text=texts)
    mask = encode["input_mask"].numpy()
    sequence = encode["sequence_output"].numpy()
    mean = (sequence * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(embed, mean, atol=2e-6)
    assert np.abs(embed - sequence[:, 0]).max() > 1e-3   # not the first token's
    answer = serve.signatures["serving_default"](text=texts)
    np.testing.assert_allclose(answer["probabilities"].numpy(),
                               tf.sigmoid(answer["logits"]).numpy(), atol=1e-6)
    # An encoder's serving_default keeps its three outputs (TF Hub's contract).
    encoder = tf.saved_model.load(exports["encoder's serving"]).signatures
    assert sorted(encoder["serving_default"].structured_outputs) == [
        "input_mask", "pooled_output", "sequence_output"]
    assert sorted(encoder) == ["embed", "encode", "encode_pair", "serving_default"]


# -- TF Serving's Classify and Regress APIs ------------------------------------------------------

def check_classify_signature(signature) -> None:
    """TF Serving's rules for a Classify signature (tensorflow/serving 155a929,
    tensorflow_serving/servables/tensorflow/classifier.cc: GetClassificationSignatureDef,
    PreProcessClassification, PostProcessClassificationResult)."""
    from tensorflow.core.framework import types_pb2
    assert signature.method_name == "tensorflow/serving/classify"
    assert list(signature.inputs) == ["inputs"]            # one input, kClassifyInputs
    assert signature.inputs["inputs"].dtype == types_pb2.DT_STRING
    assert set(signature.outputs) == {"classes", "scores"}  # one or two of these
    assert signature.outputs["classes"].dtype == types_pb2.DT_STRING
    assert signature.outputs["scores"].dtype == types_pb2.DT_FLOAT
    for name in ("classes", "scores"):                     # [batch_size, num_classes]
        assert len(signature.outputs[name].tensor_shape.dim) == 2


def check_regress_signature(signature) -> None:
    """Its rules for a Regress signature (tensorflow/serving 1c4fab7,
    tensorflow_serving/servables/tensorflow/regressor.cc: PreProcessRegression,
    PostProcessRegressionResult)."""
    from tensorflow.core.framework import types_pb2
    assert signature.method_name == "tensorflow/serving/regress"
    assert list(signature.inputs) == ["inputs"] and list(signature.outputs) == ["outputs"]
    assert signature.inputs["inputs"].dtype == types_pb2.DT_STRING
    output = signature.outputs["outputs"]
    assert output.dtype == types_pb2.DT_FLOAT
    dims = [d.size for d in output.tensor_shape.dim]
    assert len(dims) == 1 or dims[1:] == [1], dims  # [batch_size] or [batch_size, 1]


def example(**features) -> "tf.train.Example":
    import tensorflow as tf
    return tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        for name, value in features.items()}))


def serialized_inputs(request):
    """The `inputs` tensor TF Serving feeds a Classify/Regress signature: each example
    of the request's `input` serialised (with `example_list_with_context`, the context's
    features merged into each example)."""
    import tensorflow as tf
    which = request.input.WhichOneof("kind")
    if which == "example_list":
        examples = list(request.input.example_list.examples)
    else:
        with_context = request.input.example_list_with_context
        examples = []
        for e in with_context.examples:
            merged = type(e)()
            merged.CopyFrom(with_context.context)
            merged.MergeFrom(e)
            examples.append(merged)
    return tf.constant([e.SerializeToString() for e in examples])


def test_classify_signature_as_tf_serving_runs_it(exports):
    """A classifier's `classify` signature passes TF Serving's checks, takes a
    `ClassificationRequest`'s examples (tensorflow-serving-api protos) and answers
    what serving_default answers: every label with its probability."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, input_pb2, model_pb2
    texts = ["a gripping, funny film", "tedious and overlong", "it is a movie"]
    for name, labels in (("classifier", LABELS), ("multi-label classifier", EMOTIONS)):
        signature = signature_defs(exports[name])["classify"]
        check_classify_signature(signature)
        request = classification_pb2.ClassificationRequest(
            model_spec=model_pb2.ModelSpec(name="bert", signature_name="classify"),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[example(text=t) for t in texts])))
        serve = tf.saved_model.load(exports[name]).signatures
        out = serve["classify"](inputs=serialized_inputs(request))
        # PostProcessClassificationResult: one Classifications per example.
        result = classification_pb2.ClassificationResult()
        for classes, scores in zip(out["classes"].numpy(), out["scores"].numpy()):
            result.classifications.add(classes=[
                classification_pb2.Class(label=c.decode(), score=s)
                for c, s in zip(classes, scores)])
        assert [[c.label for c in r.classes] for r in result.classifications] == [labels] * 3
        expected = serve["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
        np.testing.assert_allclose([[c.score for c in r.classes]
                                    for r in result.classifications], expected, atol=1e-6)
    # A shared context (example_list_with_context) reaches every example.
    request = classification_pb2.ClassificationRequest(input=input_pb2.Input(
        example_list_with_context=input_pb2.ExampleListWithContext(
            context=example(text=texts[1]), examples=[tf.train.Example()] * 2)))
    out = serve["classify"](inputs=serialized_inputs(request))["scores"].numpy()
    np.testing.assert_allclose(out, expected[[1, 1]], atol=1e-6)
    report("TF Serving Classify: classify signatures pass classifier.cc's checks; "
           "scores equal serving_default's probabilities (single- and multi-label)")


def test_regress_signature_takes_pairs_of_texts(exports):
    """A one-output regression's `regress` signature (texts in `text` and `text_b`)
    passes TF Serving's checks and answers serving_default's predictions."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import input_pb2, regression_pb2
    pairs = [("a man plays a guitar", "a person plays music"), ("cats sleep", "stocks fell")]
    signatures = signature_defs(exports["pair regression"])
    check_regress_signature(signatures["regress"])
    assert "classify" not in signatures
    request = regression_pb2.RegressionRequest(input=input_pb2.Input(
        example_list=input_pb2.ExampleList(examples=[example(text=a, text_b=b)
                                                     for a, b in pairs])))
    serve = tf.saved_model.load(exports["pair regression"]).signatures
    outputs = serve["regress"](inputs=serialized_inputs(request))["outputs"].numpy()
    result = regression_pb2.RegressionResult(
        regressions=[regression_pb2.Regression(value=v) for v in outputs])
    expected = serve["serving_default"](text=tf.constant([a for a, _ in pairs]),
                                        text_b=tf.constant([b for _, b in pairs]))
    np.testing.assert_allclose([r.value for r in result.regressions],
                               expected["predictions"].numpy()[:, 0], atol=1e-6)
    assert outputs[0] != outputs[1]


@pytest.mark.parametrize("case", ["empty", "no text", "int64 text", "no text_b"])
def test_bad_examples_are_named(exports, case):
    """What a Classify/Regress client can get wrong ends in an InvalidArgumentError that
    names the feature, not a crash of the signature."""
    import tensorflow as tf
    bad = {"empty": tf.train.Example(),
           "no text": example(txt="a typo in the feature's name"),
           "int64 text": tf.train.Example(features=tf.train.Features(feature={
               "text": tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))})),
           "no text_b": example(text="only the first text")}[case]
    name, signature = (("pair regression", "regress") if case == "no text_b"
                       else ("classifier", "classify"))
    serve = tf.saved_model.load(exports[name]).signatures[signature]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        serve(inputs=tf.constant([example(text="fine").SerializeToString(),
                                  bad.SerializeToString()]))
    feature = "text_b" if case == "no text_b" else "text"
    message = str(error.value)
    assert f"Feature: {feature} (data type: string) is required" in message or (
        f"Key: {feature}" in message and "Data types don't match" in message), message


def test_method_names_keep_the_fingerprint_true(exports):
    """Writing the method names into saved_model.pb writes its fingerprint again:
    `tf.saved_model.experimental.read_fingerprint` matches the file as it is."""
    import tensorflow as tf
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting as pywrap
    from tensorflow.core.protobuf import fingerprint_pb2
    path = exports["classifier"]
    written = tf.saved_model.experimental.read_fingerprint(path)
    fresh = fingerprint_pb2.FingerprintDef.FromString(pywrap.CreateFingerprintDef(path))
    assert written.saved_model_checksum == fresh.saved_model_checksum


def example_from_json(features: dict) -> "tf.train.Example":
    """A JSON example of a REST classify/regress body as TF Serving reads it
    (json_tensor.cc, MakeExampleFromJsonObject): strings are bytes features."""
    assert all(isinstance(v, str) for v in features.values()), features
    return example(**features)


def test_printed_requests_run_against_their_signatures(exports):
    """`bert-tf export` (and `make run`) print a curl per signature: each body, read as
    TF Serving reads it, runs on that signature. Catches a body with the wrong inputs
    (a pair model's `text_b` missing, a classify body sent to :predict)."""
    import re
    import tensorflow as tf
    from bert_tf.export import serving_instructions
    seen = {}
    for name in ("classifier", "pair regression", "multi-label classifier", "token classifier"):
        text = serving_instructions(os.path.dirname(os.path.dirname(exports[name])), name,
                                    exports[name])
        assert f"--model_base_path={os.path.dirname(exports[name])}" in text
        signatures = tf.saved_model.load(exports[name]).signatures
        calls = re.findall(r"# (\S+) -> .*\n  curl -d '(.*)' localhost:8501/v1/models/"
                           + re.escape(name) + r":(\w+)", text)
        assert calls, text
        for key, body, method in calls:
            body = json.loads(body)
            assert body.get("signature_name", "serving_default") == key
            if method == "predict":
                (instance,) = body["instances"]
                out = signatures[key](**{k: tf.constant([v]) for k, v in instance.items()})
            else:
                (features,) = body["examples"]
                out = signatures[key](inputs=tf.constant(
                    [example_from_json(features).SerializeToString()]))
            assert all(v.shape[0] == 1 for v in out.values()), key
            seen.setdefault(name, []).append(f"{key}:{method}")
    assert seen["classifier"] == ["serving_default:predict", "classify:classify",
                                  "embed:predict", "encode:predict"]
    assert seen["pair regression"] == ["serving_default:predict", "embed:predict",
                                       "encode:predict", "regress:regress"]
    assert "classify:classify" in seen["multi-label classifier"]
    assert seen["token classifier"][0] == "serving_default:predict"


# -- TF Serving's batching parameters ----------------------------------------------------------

def batching_parameters_message():
    """TF Serving's BatchingParameters message (tensorflow/serving 03f8b6b,
    tensorflow_serving/servables/tensorflow/session_bundle_config.proto), built here:
    tensorflow-serving-api does not ship it. Field names, numbers and types as there."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="batching_parameters_under_test.proto", package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
    message = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                   "max_enqueued_batches", "num_batch_threads"], 1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          label=field.LABEL_OPTIONAL, type_name=".google.protobuf.Int64Value")
    message.field.add(name="thread_pool_name", number=5, type=field.TYPE_MESSAGE,
                      label=field.LABEL_OPTIONAL, type_name=".google.protobuf.StringValue")
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_parameters_from_a_measurement(exports, tmp_path):
    """`write_batching_parameters` times the export and writes a file that TF Serving's
    text-format parser reads (unknown or misspelt fields fail), with the rules TF
    Serving checks (allowed sizes increasing, the last = max_batch_size), one comment
    line per timed batch size, and the server flags that use it in the printed
    instructions."""
    import shutil
    from google.protobuf import text_format
    from bert_tf.export import serving_instructions
    from bert_tf.export.batching import write_batching_parameters
    export = str(tmp_path / "serving" / "1")
    shutil.copytree(exports["classifier"], export)
    path, params = write_batching_parameters(export, seconds_per_size=0.2,
                                             batch_sizes=(1, 2, 4, 8))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    parsed = text_format.Parse(text, batching_parameters_message()())
    assert parsed.max_batch_size.value == params["max_batch_size"]
    assert list(parsed.allowed_batch_sizes) == params["allowed_batch_sizes"]
    assert parsed.allowed_batch_sizes[-1] == parsed.max_batch_size.value
    assert list(parsed.allowed_batch_sizes) == sorted(set(parsed.allowed_batch_sizes))
    assert parsed.num_batch_threads.value == os.cpu_count()
    assert parsed.batch_timeout_micros.value == params["batch_timeout_micros"]
    assert not parsed.pad_variable_length_inputs
    timed = [line for line in text.splitlines() if line.startswith("# batch")]
    assert [int(line.split()[2].rstrip(":")) for line in timed] == [1, 2, 4, 8]
    printed = serving_instructions(str(tmp_path), "clf", export)
    assert f"--enable_batching --batching_parameters_file={path}" in printed
    report("batching parameters (tiny classifier, batch 1-8): " + "; ".join(
        line[2:].split(",")[0] + "," + line.split(",")[2] for line in timed)
        + f" -> max_batch_size {params['max_batch_size']}, "
        f"batch_timeout_micros {params['batch_timeout_micros']}")


@pytest.mark.parametrize("case", ["plateau", "no gain", "fast model"])
def test_batching_rule(case):
    """`recommend`: the smallest batch within 10 % of the best throughput; no timeout
    where batching gains nothing; the timeout is one batch of one, within 1-10 ms."""
    from bert_tf.export.batching import recommend
    seconds = {"plateau": {1: 0.004, 2: 0.005, 4: 0.007, 8: 0.011, 16: 0.021, 32: 0.042},
               "no gain": {1: 0.010, 2: 0.020, 4: 0.041, 8: 0.080},
               "fast model": {1: 0.0002, 2: 0.0002, 4: 0.0003, 8: 0.0005}}[case]
    params = recommend({b: [s] * 3 for b, s in seconds.items()}, cpus=4)
    expected = {"plateau": (8, [1, 2, 4, 8], 4000), "no gain": (1, [1], 0),
                "fast model": (8, [1, 2, 4, 8], 1000)}[case]
    assert (params["max_batch_size"], params["allowed_batch_sizes"],
            params["batch_timeout_micros"]) == expected
    assert params["num_batch_threads"] == params["max_enqueued_batches"] == 4
