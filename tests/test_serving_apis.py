"""The exports as TF Serving's model server runs them: only the ops it links."""
import json
import os

import pytest

from tests.conftest import report, run_python

REFERENCE = os.path.join(os.path.dirname(__file__), "reference", "tf_serving_ops")


@pytest.fixture(scope="module")
def exports(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """Tiny exports of each kind, by a name: the encoder's three (encoder, preprocessor,
    serving), a pair classifier's and a token classifier's serving exports."""
    import keras
    import bert_tf
    keras.utils.set_random_seed(3)
    base = tmp_path_factory.mktemp("exports")
    pre = bert_tf.load_preprocessor(tiny_model_dir, 16)
    models = {
        "encoder": bert_tf.load_encoder(tiny_model_dir),
        "pair classifier": bert_tf.BertClassifier(
            bert_tf.load_encoder(tiny_model_dir), 3, labels=["a", "b", "c"], text_pairs=True,
            preprocessor=pre),
        "token classifier": bert_tf.BertTokenClassifier(
            bert_tf.load_encoder(tiny_model_dir), ["O", "B-person", "I-person"],
            preprocessor=pre),
    }
    paths = {}
    for name, model in models.items():
        written = bert_tf.export_model(model, str(base / name.replace(" ", "_")),
                                       seq_length=16, preprocessor=pre)
        if name == "encoder":
            paths.update({f"encoder's {kind}": path for kind, path in written.items()})
        else:
            paths[f"{name}'s serving"] = written["serving"]
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
