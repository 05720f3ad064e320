"""`bench` on a random BERT-tiny: every case runs, the peers that .venv holds give the
same outputs, and the JSON and markdown reports are written. No timing is asserted:
the figures of a smoke run mean nothing."""
import argparse
import importlib.util
import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import bert_tf
from bert_tf.cli.experiments import add_bench_parser, bench_config
from bert_tf.config import BertConfig
from bert_tf.experiments import bench
from bert_tf.experiments.bench import BenchConfig
from bert_tf.io.checkpoint import read_checkpoint
from bert_tf.models import BertEncoder
from tests.conftest import DATA_DIR


def test_forward_flops_count_every_dense_kernel():
    """2 FLOPs per weight of the encoder's matmuls per token, plus attention's 4·l²·H."""
    config = BertConfig.preset("tiny", vocab_size=50)
    kernels = sum(int(np.prod(v.shape)) for n, v in
                  BertEncoder.from_bert_config(config).checkpoint_variables().items()
                  if n.endswith("kernel"))
    pooler = config.hidden_size ** 2
    layers, h, length = config.num_hidden_layers, config.hidden_size, 10
    expected = 2 * (kernels - pooler) * length + 4 * length ** 2 * h * layers + 2 * pooler
    assert bench.forward_flops(config, [length]) == expected


def test_hf_copy_holds_the_same_weights(tiny_model_dir, tmp_path):
    from bert_tf.models.convert import convert_hf
    hf_dir = bench.write_hf_model(tiny_model_dir, str(tmp_path / "hf"))
    back = read_checkpoint(os.path.join(convert_hf(hf_dir, str(tmp_path / "back")),
                                        "bert_model.ckpt"))
    original = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    assert sorted(back) == sorted(original)
    for name, value in original.items():
        np.testing.assert_array_equal(back[name], value)


def test_workers_can_be_found():
    """The commands `Bench.run` launches: bert-tf's worker module (this module, run
    with -m) and the peers' scripts."""
    spec = importlib.util.find_spec(bench.WORKER_MODULE)
    assert spec is not None and os.path.samefile(spec.origin, bench.__file__)
    for script in ("model_garden.py", "keras_hub_bert.py", "hf_bert.py", "tfhub_pipeline.py"):
        assert os.path.exists(os.path.join(bench.BENCHMARKS_DIR, script)), script


@pytest.mark.parametrize("changes,message", [
    ({"suite": ["encoder", "decoder"]}, r"suite: unknown \['decoder'\]"),
    ({"suite": []}, "suite is empty"),
    ({"peers": ["hf", "onnx"]}, r"peers: unknown \['onnx'\]"),
    ({"peers": "hf"}, "list of names"),
    ({"config": "huge"}, "config 'huge'"),
    ({"repeats": 0}, "repeats must be at least 1, not 0"),
    ({"examples": -5}, "examples must be at least 1"),
])
def test_bad_config_raises(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        BenchConfig(out=str(tmp_path / "bench"), **changes)


def test_missing_model_dir_raises_before_writing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model dir"):
        bench.bench(BenchConfig(out=str(tmp_path / "bench"), model=str(tmp_path / "none")))
    assert not (tmp_path / "bench").exists()


def test_the_command_gives_the_same_config(tmp_path):
    config = BenchConfig(out=str(tmp_path), suite=["train", "encoder"], peers=[],
                         config="tiny", vocab="/v/vocab.txt", batch_size=4, seq_length=16,
                         examples=24, repeats=1)
    assert config.settings()["suite"] == "train,encoder" and config.settings()["peers"] == ""
    argv = shlex.split(bench.command_line(config))
    assert argv[:2] == ["bert-tf", "bench"]
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    assert bench_config(parser.parse_args(argv[1:])) == config


def test_cli_bench_bad_suite_exits_2(tmp_path, capsys):
    from bert_tf.cli import main as cli
    assert cli(["bench", "--out", str(tmp_path / "bench"), "--suite", "encoder,decoder"]) == 2
    assert "unknown ['decoder']" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def bench_smoke_job(folder: str) -> str:
    """The smoke run: every case on a random BERT-tiny with the peers .venv holds, into
    FOLDER/bench, and what `bench` returned in FOLDER/returned.json. A process of its
    own started with the tests (conftest.py, Background): it is more than 20 processes
    one after another, and the rest of the suite leaves a core for them."""
    out, vocab = os.path.join(folder, "bench"), os.path.join(DATA_DIR, "bert_vocab", "uncased",
                                                             "vocab.txt")
    return f"""
import json
from bert_tf.experiments import bench
from bert_tf.experiments.bench import BenchConfig
returned = bench.bench(BenchConfig(
    config="tiny", vocab={vocab!r}, data_dir={DATA_DIR!r}, batch_size=4, seq_length=16,
    examples=24, repeats=1, latency_requests=20, peers=["model-garden", "tfhub", "hf-bf16"],
    out={out!r}))
with open({os.path.join(folder, "returned.json")!r}, "w") as f:
    json.dump(returned, f)
"""


@pytest.mark.slow
@pytest.mark.background(job=bench_smoke_job)
def test_bench_smoke(background):
    background.wait()
    out = Path(background.folder) / "bench"
    returned = json.loads((Path(background.folder) / "returned.json").read_text())

    report = json.loads((out / "bench.json").read_text())
    assert report == json.loads(json.dumps(returned))
    assert {"command", "settings", "machine", "model", "config", "matmul_peak",
            "cases"} <= set(report)
    assert report["command"].startswith("bert-tf bench --out ")
    assert report["settings"]["suite"] == ",".join(bench.CASES)
    assert report["matmul_peak"]["gflop_per_s"] > 0
    assert list(report["cases"]) == list(bench.CASES)
    rows = {(case, row["system"]): row for case, result in report["cases"].items()
            for row in result["rows"]}
    for (case, _), row in rows.items():
        assert row["available"] or row["reason"]   # a peer that cannot run says why
        if row["available"] and case == "latency":
            assert set(row["shapes"]) == {"short-1", "short-8", "long-1", "long-8"}, row
            for values in row["shapes"].values():
                assert 0 < values["p50_ms"] <= values["p99_ms"], row
        elif row["available"]:
            assert len(row["times_s"]) == 1 and row["throughput"] > 0
            assert row["peak_rss_mib"] > 0 and row["bert_tf_ratio"] > 0
    for key in [("encoder", "bert-tf"), ("encoder", "bert-tf, XLA"), ("encoder", "bert-tf, bfloat16"),
                ("e2e", "bert-tf, bfloat16"), ("latency", "bert-tf"), ("latency", "bert-tf, bfloat16"),
                ("encoder", "Model Garden BertEncoderV2"),
                ("encoder", "Model Garden BertEncoderV2, XLA"),
                ("e2e", "bert-tf"), ("e2e", "TF Hub-style preprocessor + encoder (pad to 16)"),
                ("train", "bert-tf"), ("train", "Model Garden BertClassifier"),
                ("tokenize", "bert-tf")]:
        assert rows[key]["available"], rows[key]
    for (case, system), row in rows.items():
        if case in ("encoder", "e2e", "tokenize") and system != "bert-tf" and row["available"]:
            assert row["outputs_agree"], row
            if row["approximate"]:  # bfloat16: the same model in lower precision
                assert row["mean_cosine"] >= bench.MIN_COSINE and 0 < row["max_abs_diff"] < 0.1
            else:
                assert row["max_abs_diff"] <= bench.TOLERANCE
    # bert-tf's bfloat16 rows serve the bfloat16 export (version 2), whose variables are
    # stored in bfloat16; its fp32 rows version 1, in float32
    for case in ("e2e", "latency"):
        assert "export --precision bfloat16" in rows[(case, "bert-tf, bfloat16")]["detail"]
        assert "precision" not in rows[(case, "bert-tf")]["detail"]
    for version, dtype in (("1", tf.float32), ("2", tf.bfloat16)):
        stored = tf.train.load_checkpoint(str(out / "work" / "export" / "serving" / version /
                                              "variables" / "variables")).get_variable_to_dtype_map()
        kernels = {d for k, d in stored.items() if "kernel" in k or "embeddings" in k}
        assert kernels == {dtype}, (version, kernels)
    # the latency requests: the shapes asked for, every system the same requests
    requests = json.loads((out / "work" / "latency-requests.json").read_text())["requests"]
    assert {k: len(v) for k, v in requests.items()} == {
        k: 20 + 20 for k in ("short-1", "short-8", "long-1", "long-8")}
    assert all(len(r) == int(k.split("-")[1]) for k, v in requests.items() for r in v)
    tokenizer = bert_tf.load_tokenizer(report["model"])

    def tokens(texts):  # with [CLS] and [SEP]
        return tokenizer.tokenize(tf.constant(texts)).merge_dims(-2, -1).row_lengths().numpy() + 2
    assert all(abs(n - 16) <= 2 for n in tokens([r[0] for r in requests["short-1"]]))
    assert tokens([r[0] for r in requests["long-1"]]).min() > 16   # cut to 16 by each system
    # HF under bf16 autocast runs only where the CPU computes bf16 (else: why not)
    reason = rows[("latency", "HF BertModel, bfloat16 autocast")].get("reason", "")
    assert any(why in reason for why in ("bfloat16 instructions", "compute capability",
                                         "requirements-hf")), reason
    assert rows[("train", "bert-tf")]["tokens_run_per_real"] >= 1
    assert rows[("encoder", "bert-tf")]["fraction_of_peak"] > 0

    text = (out / "bench.md").read_text()
    for case in bench.CASES:
        assert f"## {case}:" in text
    assert "Model Garden BertEncoderV2, XLA" in text


HF_PYTHON = os.environ.get("BERT_TF_HF_PYTHON")
ST_PYTHON = os.environ.get("BERT_TF_ST_PYTHON")


@pytest.mark.slow
@pytest.mark.skipif(not ST_PYTHON, reason="sentence-transformers peers (ONNX Runtime, OpenVINO) "
                    "not run: set BERT_TF_ST_PYTHON to the python of an environment made from "
                    "benchmarks/requirements-st.txt (docs/benchmarks.md, Running the benchmark)")
def test_bench_sentence_transformers_peers(tmp_path, vocab_file):
    """The ONNX Runtime (fp32, int8) and OpenVINO rows run in their own environment:
    fp32 rows agree with bert-tf within the tolerance, the int8 row within a cosine of
    0.99; a broken script or environment fails here by name."""
    out = tmp_path / "bench"
    report_ = bench.bench(BenchConfig(
        config="tiny", vocab=vocab_file, data_dir=DATA_DIR, batch_size=4, seq_length=16,
        examples=24, repeats=1, latency_requests=20, peers=list(bench.ST_PEERS),
        suite=["encoder", "e2e", "latency"], st_python=ST_PYTHON, out=str(out)))
    rows = {(case, row["system"]): row for case, result in report_["cases"].items()
            for row in result["rows"] if row["peer"] in bench.ST_PEERS}
    assert len(rows) == 9, sorted(rows)
    for (case, system), row in rows.items():
        assert row["available"], (case, system, row.get("reason"))
        if case == "latency":
            assert row["shapes"]["long-8"]["p50_ms"] > 0
        elif row["precision"] == "int8":
            assert 0.99 < row["mean_cosine"] < 1 and row["max_abs_diff"] > 1e-4, row
        else:
            assert row["outputs_agree"], row


@pytest.mark.slow
@pytest.mark.skipif(not HF_PYTHON, reason="HF peer (PyTorch transformers, tokenizers) not run: "
                    "set BERT_TF_HF_PYTHON to the python of an environment made from "
                    "benchmarks/requirements-hf.txt (docs/benchmarks.md, Running the benchmark)")
def test_bench_hf_peer(tmp_path, vocab_file):
    """The HF rows run, in their own environment, and agree with bert-tf: a broken HF
    script or environment fails here by name instead of being reported unavailable."""
    out = tmp_path / "bench"
    report_ = bench.bench(BenchConfig(
        config="tiny", vocab=vocab_file, data_dir=DATA_DIR, batch_size=4, seq_length=16,
        examples=24, repeats=1, peers=["hf"], suite=["encoder", "e2e", "tokenize"],
        hf_python=HF_PYTHON, out=str(out)))
    rows = {(case, row["system"]): row for case, result in report_["cases"].items()
            for row in result["rows"] if row["system"].startswith("HF")}
    assert sorted(rows) == [("e2e", "HF tokenizer + BertModel"),
                            ("encoder", "HF transformers BertModel"),
                            ("tokenize", "HF tokenizers BertWordPieceTokenizer")]
    for key, row in rows.items():
        assert row["available"], (key, row.get("reason"))
        assert row["outputs_agree"], (key, row)
