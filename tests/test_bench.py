"""`bert-tf bench` on a random BERT-tiny: every case runs, the peers that .venv holds
give the same outputs, and the JSON and markdown reports are written. No timing is
asserted: the figures of a smoke run mean nothing."""
import json
import os

import numpy as np
import pytest

from bert_tf.experiments import bench
from tests.conftest import DATA_DIR


def test_forward_flops_count_every_dense_kernel():
    """2 FLOPs per weight of the encoder's matmuls per token, plus attention's 4·l²·H."""
    from bert_tf.config import BertConfig
    from bert_tf.models.encoder import build_encoder, encoder_checkpoint_variables
    config = BertConfig.preset("tiny", vocab_size=50)
    kernels = sum(int(np.prod(v.shape)) for n, v in
                  encoder_checkpoint_variables(build_encoder(config)).items()
                  if n.endswith("kernel"))
    pooler = config.hidden_size ** 2
    layers, h, length = config.num_hidden_layers, config.hidden_size, 10
    expected = 2 * (kernels - pooler) * length + 4 * length ** 2 * h * layers + 2 * pooler
    assert bench.forward_flops(config, [length]) == expected


def test_hf_copy_holds_the_same_weights(tiny_model_dir, tmp_path):
    from bert_tf.io.checkpoint import read_checkpoint
    from bert_tf.io.convert import convert_hf
    hf_dir = bench.write_hf_model(tiny_model_dir, str(tmp_path / "hf"))
    back = read_checkpoint(os.path.join(convert_hf(hf_dir, str(tmp_path / "back")),
                                        "bert_model.ckpt"))
    original = read_checkpoint(os.path.join(tiny_model_dir, "bert_model.ckpt"))
    assert sorted(back) == sorted(original)
    for name, value in original.items():
        np.testing.assert_array_equal(back[name], value)


@pytest.mark.slow
def test_bench_smoke(tmp_path, vocab_file):
    out = tmp_path / "bench"
    args = bench.build_parser().parse_args([
        "--config", "tiny", "--vocab", vocab_file, "--data-dir", DATA_DIR, "--batch-size", "4",
        "--seq-length", "16", "--examples", "24", "--repeats", "1",
        "--peers", "model-garden,tfhub,hf", "--out", str(out)])
    bench.main(args)

    report = json.loads((out / "bench.json").read_text())
    assert {"command", "settings", "machine", "model", "config", "matmul_peak",
            "cases"} <= set(report)
    assert report["matmul_peak"]["gflop_per_s"] > 0
    assert list(report["cases"]) == list(bench.CASES)
    rows = {(case, row["system"]): row for case, result in report["cases"].items()
            for row in result["rows"]}
    for row in rows.values():
        assert row["available"] or row["reason"]   # a peer that cannot run says why
        if row["available"]:
            assert len(row["times_s"]) == 1 and row["throughput"] > 0
            assert row["peak_rss_mib"] > 0 and row["bert_tf_ratio"] > 0
    for key in [("encoder", "bert-tf"), ("encoder", "bert-tf, XLA"),
                ("encoder", "Model Garden BertEncoderV2"),
                ("encoder", "Model Garden BertEncoderV2, XLA"),
                ("e2e", "bert-tf"), ("e2e", "TF Hub-style preprocessor + encoder (pad to 16)"),
                ("train", "bert-tf"), ("train", "Model Garden BertClassifier"),
                ("tokenize", "bert-tf"), ("tokenize", "HF tokenizers BertWordPieceTokenizer")]:
        assert rows[key]["available"], rows[key]
    for (case, system), row in rows.items():
        if case in ("encoder", "e2e", "tokenize") and system != "bert-tf" and row["available"]:
            assert row["outputs_agree"], row
            assert row["max_abs_diff"] <= bench.TOLERANCE
    assert rows[("train", "bert-tf")]["tokens_run_per_real"] >= 1
    assert rows[("encoder", "bert-tf")]["fraction_of_peak"] > 0

    text = (out / "bench.md").read_text()
    for case in bench.CASES:
        assert f"## {case}:" in text
    assert "Model Garden BertEncoderV2, XLA" in text
