"""Pre-training: instances (vs Model Garden's create_pretraining_data.py), dynamic
masking, the MLM + NSP model, a few steps, resume, and the round-trip conversions."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.cli import main as cli
from tests.conftest import DATA_DIR, report
from tests.test_mlm import reference_mlm_logits

WIKI = os.path.join(DATA_DIR, "wikitext-2", "valid.txt")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """BERT's input format from the first ~600 lines of WikiText-2 valid and ~400 of
    Tiny Shakespeare (real text, small enough for CI)."""
    d = tmp_path_factory.mktemp("corpus")
    with open(WIKI, encoding="utf-8") as f:
        (d / "wiki.txt").write_text("".join(f.readlines()[:600]), encoding="utf-8")
    with open(os.path.join(DATA_DIR, "tinyshakespeare", "input.txt"), encoding="utf-8") as f:
        (d / "shakespeare.txt").write_text("".join(f.readlines()[:400]), encoding="utf-8")
    assert cli(["prepare-text", str(d / "wiki.txt"), str(d / "shakespeare.txt"),
                "--out", str(d / "corpus.txt")]) == 0
    return d / "corpus.txt"


def read_records(path):
    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        feature = tf.train.Example.FromString(raw.numpy()).features.feature
        out.append({k: list(v.int64_list.value) or list(v.float_list.value)
                    for k, v in feature.items()})
    return out


def test_prepare_text_documents(corpus):
    text = corpus.read_text(encoding="utf-8")
    documents = [d for d in text.split("\n\n") if d.strip()]
    assert documents[0].startswith("Homarus gammarus , known as the European lobster")
    assert not any(line.startswith(" =") or line.startswith("=") for line in text.splitlines())
    assert any("First Citizen" not in d and "Caius Marcius" in d for d in documents)
    assert len(documents) >= 5


@pytest.mark.parametrize("whole_word", [False, True])
def test_instances_equal_model_gardens(corpus, vocab_file, tmp_path, whole_word):
    """The same text, vocab and seed through Model Garden's create_pretraining_data.py
    (google-research/bert's script as maintained in tf-models-official) and ours:
    the same records, feature for feature."""
    common = dict(max_seq_length=64, max_predictions=10, dupe=2, seed=7)
    theirs = tmp_path / "theirs.tfrecord"
    subprocess.run([sys.executable, "-m", "official.nlp.data.create_pretraining_data",
                    f"--input_file={corpus}", f"--output_file={theirs}",
                    f"--vocab_file={vocab_file}", "--do_lower_case=true",
                    f"--max_seq_length={common['max_seq_length']}",
                    f"--max_predictions_per_seq={common['max_predictions']}",
                    f"--dupe_factor={common['dupe']}", f"--random_seed={common['seed']}",
                    f"--do_whole_word_mask={str(whole_word).lower()}"],
                   check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    ours = tmp_path / "ours.tfrecord"
    assert cli(["create-pretraining-data", "--input", str(corpus), "--vocab", vocab_file,
                "--out", str(ours), "--max-seq-length", str(common["max_seq_length"]),
                "--max-predictions-per-seq", str(common["max_predictions"]),
                "--dupe-factor", str(common["dupe"]), "--seed", str(common["seed"]), "--quiet",
                *(["--whole-word-mask"] if whole_word else [])]) == 0
    a, b = read_records(ours), read_records(theirs)
    same = sum(x == y for x, y in zip(a, b))
    report(f"create-pretraining-data vs Model Garden (whole_word={whole_word}): "
           f"{same} of {len(b)} records identical")
    assert len(a) == len(b) > 100 and same == len(b)


def test_instance_statistics_and_determinism(corpus, vocab_file, tmp_path):
    args = ["create-pretraining-data", "--input", str(corpus), "--vocab", vocab_file,
            "--max-seq-length", "128", "--dupe-factor", "3", "--quiet", "--shards", "2"]
    assert cli([*args, "--out", str(tmp_path / "a.tfrecord"), "--seed", "1"]) == 0
    assert cli([*args, "--out", str(tmp_path / "b.tfrecord"), "--seed", "1"]) == 0
    assert cli([*args, "--out", str(tmp_path / "c.tfrecord"), "--seed", "2"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{x}.tfrecord-0000{i}-of-00002" for x in "abc" for i in (0, 1)]
    shard = "tfrecord-00000-of-00002"
    assert (tmp_path / f"a.{shard}").read_bytes() == (tmp_path / f"b.{shard}").read_bytes()
    assert (tmp_path / f"a.{shard}").read_bytes() != (tmp_path / f"c.{shard}").read_bytes()

    records = read_records(tmp_path / f"a.{shard}") + read_records(
        tmp_path / "a.tfrecord-00001-of-00002")
    vocab = [line.rstrip("\n") for line in open(vocab_file, encoding="utf-8")]
    mask_id = vocab.index("[MASK]")
    real = masked = as_mask = kept = 0
    for r in records:
        assert {len(r["input_ids"]), len(r["input_mask"]), len(r["segment_ids"])} == {128}
        assert {len(r["masked_lm_positions"]), len(r["masked_lm_weights"])} == {20}
        n = sum(r["input_mask"])
        k = int(sum(r["masked_lm_weights"]))
        real += n
        masked += k
        for pos, label in zip(r["masked_lm_positions"][:k], r["masked_lm_ids"][:k]):
            as_mask += r["input_ids"][pos] == mask_id
            kept += r["input_ids"][pos] == label
        assert r["input_ids"][0] == vocab.index("[CLS]") and r["input_ids"][n - 1] == vocab.index(
            "[SEP]")
    nsp = np.mean([r["next_sentence_labels"][0] for r in records])
    report(f"pre-training instances: {len(records)}, masked {masked / real:.3f} of tokens, "
           f"[MASK] {as_mask / masked:.3f}, kept {kept / masked:.3f}, random next {nsp:.3f}")
    assert 0.13 < masked / real < 0.16
    assert 0.77 < as_mask / masked < 0.83 and 0.08 < kept / masked < 0.13
    assert 0.45 < nsp < 0.6


def test_dynamic_masking(corpus, vocab_file, tmp_path):
    """`remask` undoes a record's masks and draws new ones at BERT's rates; the
    tf.data option draws different masks for different seeds (epochs)."""
    from bert_tf.data.pretraining import MaskingVocab, create_pretraining_data, parse_features, \
        pretraining_dataset, remask
    path = str(tmp_path / "d.tfrecord")
    create_pretraining_data([str(corpus)], vocab_file, path, 64, 10, dupe_factor=1,
                            progress=False)
    vocab = MaskingVocab.from_file(vocab_file)
    spec = parse_features(64, 10)
    real = predicted = as_mask = 0
    for i, raw in enumerate(tf.data.TFRecordDataset(path).take(300)):
        record = tf.io.parse_single_example(raw, spec)
        r = {k: v.numpy() for k, v in record.items()}
        k = int(r["masked_lm_weights"].sum())
        original = r["input_ids"].copy()
        original[r["masked_lm_positions"][:k]] = r["masked_lm_ids"][:k]
        new = {k2: v.numpy() for k2, v in remask(record, tf.constant([i, 1], tf.int64), vocab,
                                                 0.15).items()}
        n = int(new["masked_lm_weights"].sum())
        pos = new["masked_lm_positions"][:n]
        assert len(set(pos)) == n and np.all(np.diff(pos) > 0)
        assert np.array_equal(new["masked_lm_ids"][:n], original[pos])
        untouched = np.ones(64, bool)
        untouched[pos] = False
        assert np.array_equal(new["input_ids"][untouched], original[untouched])
        assert not np.isin(original[pos], [vocab.cls, vocab.sep, vocab.pad]).any()
        real += int(r["input_mask"].sum())
        predicted += n
        as_mask += int((new["input_ids"][pos] == vocab.mask).sum())
    report(f"dynamic masking: {predicted / real:.3f} of tokens predicted, "
           f"{as_mask / predicted:.3f} of them [MASK]")
    assert 0.13 < predicted / real < 0.16 and 0.75 < as_mask / predicted < 0.85
    a, b = (next(iter(pretraining_dataset(path, 8, training=True, dynamic_masking=True,
                                          vocab=vocab, seed=seed))) for seed in (3, 4))
    assert not np.array_equal(a[0]["masked_lm_positions"], b[0]["masked_lm_positions"])


@pytest.mark.parametrize("dynamic_masking", [False, True], ids=["static", "dynamic"])
def test_training_batches_do_not_depend_on_earlier_iterations(vocab_file, tmp_path,
                                                              dynamic_masking):
    """The training batches of `pretraining_dataset` are the same however often and however
    far the dataset was iterated before: Keras' `fit` reads a batch (to build the model)
    before it iterates again to train, and `fit_resumable` needs each epoch's batches to
    be the same whenever asked. Each pass over the records holds every record once, in an
    order of its own.

    Before 2026-12-08 (commit f188456) each pass's order came from a generator that all
    iterations of the dataset advanced: a first iteration that reached into the next pass,
    as Keras' prefetching does when the records are few, changed the batches trained on,
    so that a pre-training run depended on thread timing (seen as the resumed run's
    history differing from the uninterrupted run's in test_resume)."""
    from bert_tf.data.pretraining import MaskingVocab, create_pretraining_data, \
        pretraining_dataset
    from tests.test_errors import CORPUS
    (tmp_path / "corpus.txt").write_text(CORPUS)
    records = str(tmp_path / "train.tfrecord")
    assert create_pretraining_data([str(tmp_path / "corpus.txt")], vocab_file, records,
                                   max_seq_length=32, max_predictions=4, dupe_factor=2,
                                   progress=False)["instances"] == 9
    vocab = MaskingVocab.from_file(vocab_file)

    def dataset():
        return pretraining_dataset(records, 4, training=True, seed=3,
                                   dynamic_masking=dynamic_masking, vocab=vocab)

    def rows(ds, batches=9):  # 36 records: 4 passes over the 9
        return [tuple(np.concatenate([x["input_word_ids"][i], x["masked_lm_positions"][i]]))
                for x, _, _ in ds.take(batches).as_numpy_iterator() for i in range(4)]

    fresh = rows(dataset())
    ds = dataset()
    rows(ds, 1)  # as fit's model build
    rows(ds, 5)  # into the third pass
    same = rows(ds) == fresh
    assert same, "the batches changed after earlier iterations of the dataset"
    if not dynamic_masking:  # (dynamic masking masks a record anew in each pass)
        passes = [fresh[i:i + 9] for i in range(0, 36, 9)]
        assert all(len(set(p)) == 9 and sorted(p) == sorted(passes[0]) for p in passes)
        assert len(set(map(tuple, passes))) == 4, "two passes in the same order"


def test_pretraining_logits_match_numpy(minilm_dir):
    """MiniLM has no MLM/NSP heads: they are drawn from a fixed seed; both heads'
    logits match a numpy computation of Google's heads within 1e-4."""
    from bert_tf.config import load_config
    from bert_tf.models import load_tokenizer
    from bert_tf.training.pretrain import build
    model = build(load_config(minilm_dir), minilm_dir, seed=5)
    again = build(load_config(minilm_dir), minilm_dir, seed=5).checkpoint_tensors()
    heads = model.checkpoint_tensors()
    assert all(np.array_equal(heads[k], again[k]) for k in heads)  # the seed fixes the heads
    inputs = load_tokenizer(minilm_dir).preprocess(
        tf.constant(["the quick brown fox jumps over the lazy dog", "paris is in france"]), 16)
    positions = np.array([[1, 4, 6], [2, 3, 0]], np.int32)
    out = model({**inputs, "masked_lm_positions": tf.constant(positions)})
    enc = model.encoder(inputs)
    config = load_config(minilm_dir)
    want_mlm = reference_mlm_logits(heads, enc["sequence_output"].numpy(), positions,
                                    config.layer_norm_eps)
    want_nsp = enc["pooled_output"].numpy() @ heads["cls/seq_relationship/output_weights"].T + \
        heads["cls/seq_relationship/output_bias"]
    d_mlm = np.abs(out["mlm_logits"].numpy() - want_mlm).max()
    d_nsp = np.abs(out["nsp_logits"].numpy() - want_nsp).max()
    report(f"pre-training heads on MiniLM (seeded random heads) vs numpy: MLM max |diff| "
           f"{d_mlm:.1e}, NSP {d_nsp:.1e}")
    assert d_mlm < 1e-4 and d_nsp < 1e-4


@pytest.fixture(scope="module")
def records(corpus, vocab_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("records")
    for name, dupe in (("train", 4), ("eval", 1)):
        assert cli(["create-pretraining-data", "--input", str(corpus), "--vocab", vocab_file,
                    "--out", str(d / f"{name}.tfrecord"), "--max-seq-length", "64",
                    "--max-predictions-per-seq", "10", "--dupe-factor", str(dupe),
                    "--seed", str(dupe), "--quiet"]) == 0
    return d


def pretrain_cmd(vocab_file, records, out, *extra):
    return ["pretrain", "--config", "tiny", "--vocab", vocab_file,
            "--train", str(records / "train.tfrecord"), "--eval", str(records / "eval.tfrecord"),
            "--out", str(out), "--batch-size", "32", "--learning-rate", "1e-3",
            "--warmup-steps", "5", "--quiet", *extra]


@pytest.mark.slow
def test_pretrain_steps_loss_falls_and_round_trips(vocab_file, records, tmp_path):
    import bert_tf
    from bert_tf.io.checkpoint import read_checkpoint
    out = tmp_path / "tiny"
    assert cli(pretrain_cmd(vocab_file, records, out, "--steps", "60", "--steps-per-epoch",
                            "15")) == 0
    m = json.loads((out / "metrics.json").read_text())
    loss = m["history"]["loss"]
    report(f"pre-train BERT-tiny 60 steps: loss {loss[0]:.2f} -> {loss[-1]:.2f}, eval MLM "
           f"accuracy {m['eval_mlm_accuracy']:.3f} (most frequent token "
           f"{m['eval_most_frequent_token_accuracy']:.3f}), NSP {m['eval_nsp_accuracy']:.3f}")
    assert loss[-1] < loss[0] - 1.0
    for key in ("train_mlm_accuracy", "train_nsp_accuracy", "eval_mlm_loss", "eval_nsp_loss"):
        assert key in m, key
    assert (out / "pretraining_curves.png").exists() and any((out / "logs").rglob("*tfevents*"))
    # a model dir with both heads, read by load_model
    tensors = read_checkpoint(str(out / "bert_model.ckpt"))
    assert "cls/seq_relationship/output_weights" in tensors and \
        "cls/predictions/output_bias" in tensors
    pretrainer = bert_tf.load_model(str(out))
    assert isinstance(pretrainer, bert_tf.BertPretrainer) and pretrainer.next_sentence
    # Google's layout and back: every tensor, heads included, unchanged
    assert cli(["convert", "--to", "google", str(out), "--out", str(tmp_path / "google")]) == 0
    assert cli(["convert", "--from", "google", str(tmp_path / "google"),
                "--out", str(tmp_path / "back")]) == 0
    back = read_checkpoint(str(tmp_path / "back" / "bert_model.ckpt"))
    assert sorted(back) == sorted(tensors)
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)
    # the encoder export carries the MLM head as `.mlm`
    targets = bert_tf.export_model(pretrainer, str(tmp_path / "export"), seq_length=16,
                                   preprocessor=bert_tf.load_preprocessor(str(out)))
    loaded = tf.saved_model.load(targets["encoder"])
    x = {"input_word_ids": tf.constant([[101, 2023, 103, 102]]), "input_mask": tf.ones((1, 4), tf.int32),
         "input_type_ids": tf.zeros((1, 4), tf.int32), "masked_lm_positions": tf.constant([[2]])}
    assert loaded.mlm(x, training=False)["mlm_logits"].shape == (1, 1, 30522)
    # a finished run is not overwritten
    assert cli(pretrain_cmd(vocab_file, records, out, "--steps", "60", "--steps-per-epoch",
                            "15")) == 2


def test_bad_pretraining_input(vocab_file, tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("just one document\nwith two lines\n")
    assert cli(["create-pretraining-data", "--input", str(one), "--vocab", vocab_file,
                "--out", str(tmp_path / "x.tfrecord"), "--quiet"]) == 2
    assert "needs at least two" in capsys.readouterr().err
    assert not (tmp_path / "x.tfrecord").exists()
    assert cli(["create-pretraining-data", "--input", str(tmp_path / "missing*.txt"),
                "--vocab", vocab_file, "--out", str(tmp_path / "x.tfrecord")]) == 2
    assert "no such file" in capsys.readouterr().err
    not_records = tmp_path / "bad.tfrecord"
    with tf.io.TFRecordWriter(str(not_records)) as w:
        w.write(tf.train.Example().SerializeToString())
    assert cli(["pretrain", "--config", "tiny", "--vocab", vocab_file, "--train", str(not_records),
                "--out", str(tmp_path / "m"), "--steps", "2"]) == 2
    assert "not a BERT pre-training record" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_check_records_names_the_first_bad_record_of_its_file(corpus, vocab_file, tmp_path,
                                                             monkeypatch):
    """Every record is checked against the model before pre-training claims its folder
    (2026-12-07, commit 1691735: ids past the vocab, positions past the record, NSP labels
    other than 0/1 trained with exit 0 or crashed mid-run): the error names the file and
    the first bad record, counted from 0 in that file, whatever the batch it is read in."""
    from bert_tf.config import BertConfig
    from bert_tf.data import pretraining
    from bert_tf.errors import DataError
    out = str(tmp_path / "r.tfrecord")
    pretraining.create_pretraining_data([str(corpus)], vocab_file, out, max_seq_length=32,
                                        max_predictions=4, dupe_factor=1, shards=2,
                                        progress=False)
    tiny = BertConfig.preset("tiny")
    shards = pretraining.check_records(out + "-*", tiny)
    assert shards == [f"{out}-00000-of-00002", f"{out}-00001-of-00002"]
    raws = [raw.numpy() for raw in tf.data.TFRecordDataset(shards[1])]
    bad = []
    for i, raw in enumerate(raws):
        example = tf.train.Example.FromString(raw)
        feature = example.features.feature
        if i == 3:
            feature["masked_lm_positions"].int64_list.value[1] = 99
        if i == 4:  # a later record, bad in a feature checked first
            feature["input_ids"].int64_list.value[0] = -1
        bad.append(example.SerializeToString())
    with tf.io.TFRecordWriter(shards[1]) as writer:
        for raw in bad:
            writer.write(raw)
    expected = (f"{shards[1]}, record 3: masked_lm_positions has 99, outside 0..31 (the "
                "records are 32 long)")
    for batch in (pretraining.RECORD_BATCH, 2, 3):  # the record in the first, second batch
        monkeypatch.setattr(pretraining, "RECORD_BATCH", batch)
        with pytest.raises(DataError) as e:
            pretraining.check_records(out + "-*", tiny)
        assert str(e.value) == expected, batch
    # the model decides: a vocab of 100 ids makes record 0's ids the first fault
    small = BertConfig.preset("tiny", vocab_size=100)
    with pytest.raises(DataError, match=r"-00000-of-00002, record 0: input_ids has \d+, "
                                        r"outside 0..99 \(the model's vocab_size is 100\)"):
        pretraining.check_records(out + "-*", small)


def test_prepare_text_holds_out_whole_documents(corpus, tmp_path):
    from bert_tf.data.pretraining import prepare_text, read_documents
    summary = prepare_text([str(corpus)], str(tmp_path / "train.txt"), "plain",
                           str(tmp_path / "eval.txt"), eval_every=3)
    train, held = read_documents([str(tmp_path / "train.txt")]), read_documents(
        [str(tmp_path / "eval.txt")])
    assert summary["documents"] == len(train) and summary["eval_documents"] == len(held) > 0
    assert not {tuple(d) for d in train} & {tuple(d) for d in held}


def test_pretrain_no_nsp_trains_the_masked_lm_alone(vocab_file, records, tmp_path):
    """`--no-nsp` beside the same run with NSP (same records, steps and seed): no NSP
    head, loss or metrics; its pooler is the NSP run's initial one, untouched, while
    the NSP run trains it; the MLM losses part; the model dir loads and fine-tunes."""
    import bert_tf
    from bert_tf.config import load_config
    from bert_tf.io.checkpoint import read_checkpoint
    from bert_tf.training.finetune import FinetuneConfig, finetune
    from bert_tf.training.pretrain import build
    runs = {}
    for name, extra in (("nsp", ()), ("mlm", ("--no-nsp",))):
        out = tmp_path / name
        assert cli(pretrain_cmd(vocab_file, records, out, "--steps", "4", "--steps-per-epoch",
                                "2", *extra)) == 0
        runs[name] = (json.loads((out / "metrics.json").read_text()),
                      read_checkpoint(str(out / "bert_model.ckpt")))
    (with_nsp, nsp_tensors), (mlm_only, mlm_tensors) = runs["nsp"], runs["mlm"]
    assert [k for k in [*mlm_only, *mlm_only["history"]] if "nsp" in k] == []
    assert {"train_nsp_loss", "eval_nsp_accuracy"} <= set(with_nsp)
    assert not any(k.startswith("cls/seq_relationship") for k in mlm_tensors)
    assert "cls/seq_relationship/output_weights" in nsp_tensors
    assert sorted(mlm_tensors) == sorted(k for k in nsp_tensors
                                         if not k.startswith("cls/seq_relationship"))
    # the pooler: the seed's initialisation in both runs, trained only by NSP
    initial = build(load_config(str(tmp_path / "nsp")), None, seed=0).encoder.get_layer(
        "pooler").dense.kernel.numpy()
    pooler = "bert/pooler/dense/kernel"
    assert np.array_equal(mlm_tensors[pooler], initial)
    assert np.abs(nsp_tensors[pooler] - initial).max() > 1e-4
    # The same start and data: the first epoch's MLM loss is the same (its first step
    # has learning rate 0, so both runs' second step starts from the same weights too);
    # after that NSP's gradients move the shared encoder and the curves part.
    first, second = mlm_only["history"]["mlm_loss"], with_nsp["history"]["mlm_loss"]
    assert mlm_only["history"]["step_learning_rate"][0] == 0.0
    assert first[0] == second[0] and first[1] != second[1]
    assert mlm_only["history"]["mlm_loss"] == mlm_only["history"]["loss"]
    assert {"train_mlm_accuracy", "eval_mlm_accuracy", "eval_mlm_loss"} <= set(mlm_only)
    model = bert_tf.load_model(str(tmp_path / "mlm"))
    assert isinstance(model, bert_tf.BertPretrainer) and not model.next_sentence
    tuned = finetune(FinetuneConfig(task="sst2", model=str(tmp_path / "mlm"), data_dir=DATA_DIR,
                                    out=str(tmp_path / "sst2"), train_limit=8, max_seq_length=16,
                                    no_export=True, quiet=True))
    assert (tuned["train_examples"], tuned["dev_examples"]) == (8, 872)
    assert np.isfinite(tuned["history"]["loss"][0])
