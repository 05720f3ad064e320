"""Pre-training data: BERT's masked-LM + next-sentence instances as TFRecords.

Input text is BERT's format: one sentence per line, documents separated by blank
lines (`prepare_text` turns WikiText and plain text into it). Instances are built
as google-research/bert's `create_pretraining_data.py` builds them (in the random
order of Model Garden's port of it, which the tests compare against): segment A from
consecutive sentences of a document, B its true continuation or (50%) a span of
another document, the pair trimmed to fit, then 15% of the tokens chosen for
prediction (80% `[MASK]`, 10% a random token, 10% kept), optionally whole words.
The records carry Google's feature names and dtypes, so files made by either tool
train the other.

Example:
    >>> import os
    >>> from bert_tf.data.pretraining import create_pretraining_data, prepare_text
    >>> prepare_text([os.path.join(data_dir, "wikitext-2", "valid.txt")], f"{tmp}/wiki.txt")
    {'documents': 60, 'sentences': 8137}
    >>> summary = create_pretraining_data([f"{tmp}/wiki.txt"], vocab_file, f"{tmp}/train.tfrecord",
    ...                                   max_seq_length=64, dupe_factor=1, seed=1, progress=False)
    >>> summary["documents"], summary["instances"], summary["outputs"]
    (60, 4337, ['.../train.tfrecord'])
"""
from __future__ import annotations

import dataclasses
import glob
import itertools
import os
import random
import re

import numpy as np
import tensorflow as tf
from keras.utils import Progbar

from bert_tf.data.glue import DataError
from bert_tf.io.atomic import atomic_file, atomic_paths, check_output
from bert_tf.io.text import read_lines, read_text
from bert_tf.errors import ConfigError
from bert_tf.preprocessing.tokenizer import BertTokenizer

FEATURES = {  # Google's names; int64 ids, float weights
    "input_ids": "int", "input_mask": "int", "segment_ids": "int",
    "masked_lm_positions": "int", "masked_lm_ids": "int", "masked_lm_weights": "float",
    "next_sentence_labels": "int",
}


@dataclasses.dataclass
class Instance:
    ids: list[int]            # [CLS] A [SEP] B [SEP], after masking
    segment_ids: list[int]
    positions: list[int]      # masked positions, ascending
    labels: list[int]         # the original ids there
    is_random_next: bool      # NSP label 1: B does not follow A


@dataclasses.dataclass
class MaskingVocab:
    """What masking needs to know of the vocab."""
    size: int
    cls: int
    sep: int
    mask: int
    pad: int
    continuation: np.ndarray  # bool [size]: the piece continues a word ("##...")

    @classmethod
    def from_file(cls, vocab_file: str) -> "MaskingVocab":
        tokens = read_text(vocab_file).split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        index = {t: i for i, t in enumerate(tokens)}
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]", "[PAD]") if t not in index]
        if missing:
            raise DataError(f"{vocab_file}: no {', '.join(missing)} token")
        return cls(len(tokens), index["[CLS]"], index["[SEP]"], index["[MASK]"], index["[PAD]"],
                   np.array([t.startswith("##") for t in tokens]))


# --- text -> documents --------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9<])")


def split_sentences(paragraph: str) -> list[str]:
    """A plain rule: a sentence ends at `.`, `!` or `?` followed by a space and an
    upper-case letter or digit (good enough for WikiText's tokenised prose)."""
    return [s.strip() for s in _SENTENCE_END.split(paragraph.strip()) if s.strip()]


def wikitext_documents(lines: list[str]) -> list[list[str]]:
    """WikiText: a ` = Title = ` line starts an article (a document); ` = = Section = = `
    lines are dropped; each paragraph line is split into sentences."""
    documents: list[list[str]] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if re.fullmatch(r"=( =)* .* (= )*=", line):
            if re.fullmatch(r"= [^=].* =", line):
                documents.append([])
            continue
        if not documents:
            documents.append([])
        documents[-1].extend(split_sentences(line))
    return [d for d in documents if d]


def plain_documents(lines: list[str], lines_per_document: int = 40) -> list[list[str]]:
    """Plain text such as Tiny Shakespeare: blank-line separated blocks (speeches)
    are joined into sentences; every `lines_per_document` sentences make a document."""
    blocks = [" ".join(" ".join(block).split()) for blank, block in
              itertools.groupby(lines, key=lambda line: not line.strip()) if not blank]
    sentences = [s for b in blocks for s in split_sentences(b)]
    return [sentences[i:i + lines_per_document]
            for i in range(0, len(sentences), lines_per_document)]


def write_documents(documents: list[list[str]], out_file: str) -> None:
    with atomic_file(out_file) as f:
        for doc in documents:
            f.write("\n".join(doc) + "\n\n")


def prepare_text(inputs: list[str], out_file: str, fmt: str = "auto",
                 eval_out: str | None = None, eval_every: int = 20,
                 overwrite: bool = False) -> dict:
    """Writes BERT's input format (sentence per line, blank line between documents).
    `fmt`: `wikitext`, `plain`, or `auto` (WikiText if the file has ` = Title = `
    lines). With `eval_out`, every `eval_every`-th document goes there instead (a
    held-out set of whole documents). Existing outputs are replaced only with
    `overwrite`."""
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ConfigError(f"eval_every {eval_every!r}: must be a positive integer")
    for path in [out_file] + ([eval_out] if eval_out else []):
        check_output(path, overwrite)
    documents = []
    for path in inputs:
        if not os.path.exists(path):
            raise DataError(f"{path}: no such file")
        lines = read_lines(path)
        kind = fmt
        if kind == "auto":
            kind = "wikitext" if any(re.fullmatch(r" = [^=].* = ", line) for line in lines) \
                else "plain"
        documents += wikitext_documents(lines) if kind == "wikitext" else plain_documents(lines)
    held_out = [d for i, d in enumerate(documents) if eval_out and i % eval_every == eval_every - 1]
    kept = [d for i, d in enumerate(documents)
            if not (eval_out and i % eval_every == eval_every - 1)]
    write_documents(kept, out_file)
    summary = {"documents": len(kept), "sentences": sum(len(d) for d in kept)}
    if eval_out:
        write_documents(held_out, eval_out)
        summary.update(eval_documents=len(held_out),
                       eval_sentences=sum(len(d) for d in held_out))
    return summary


def read_documents(paths: list[str]) -> list[list[str]]:
    """Documents (lists of sentences) from files in BERT's input format."""
    documents: list[list[str]] = [[]]
    for path in paths:
        for line in read_lines(path):
            line = line.strip()
            if line:
                documents[-1].append(line)
            elif documents[-1]:
                documents.append([])
        if documents[-1]:
            documents.append([])
    return [d for d in documents if d]


def expand_inputs(patterns: list[str]) -> list[str]:
    files = []
    for pattern in patterns:
        for part in pattern.split(","):
            matched = sorted(glob.glob(part))
            if not matched:
                raise DataError(f"--input {part}: no such file")
            files += matched
    return files


def tokenize_documents(documents: list[list[str]], tokenizer, batch_size: int = 4096):
    """Sentences -> lists of WordPiece ids, in-graph in large batches."""
    flat = [s for d in documents for s in d]
    ids: list[list[int]] = []
    for i in range(0, len(flat), batch_size):
        pieces = tokenizer.tokenize(tf.constant(flat[i:i + batch_size]))
        ids += pieces.merge_dims(1, 2).to_list()
    out, k = [], 0
    for d in documents:
        doc = [s for s in ids[k:k + len(d)] if s]
        k += len(d)
        if doc:
            out.append(doc)
    return out


# --- instances ------------------------------------------------------------------------

def truncate_pair(a: list, b: list, max_tokens: int, rng: random.Random) -> None:
    """Trims the longer segment, from the front or the back at random, until they fit."""
    while len(a) + len(b) > max_tokens:
        longer = a if len(a) > len(b) else b
        del longer[0 if rng.random() < 0.5 else -1]


def mask_tokens(ids: list[int], vocab: MaskingVocab, rng: random.Random, masked_lm_prob: float,
                max_predictions: int, whole_word: bool) -> tuple[list, list, list]:
    """BERT's masking. Candidates are the tokens but [CLS]/[SEP] (whole words if
    `whole_word`: a `##` piece joins the word before it), shuffled; they are taken
    until `round(len * prob)` positions (at most `max_predictions`) are chosen, a
    word that would overshoot being skipped. Each chosen candidate becomes [MASK]
    80% of the time, stays 10%, is a random vocab id 10%. The random draws come in
    the order of Model Garden's `create_pretraining_data.py`, so a seed gives the
    same instances as that script. Returns (masked ids, positions, original ids)."""
    candidates: list[list[int]] = []
    previous_special = True
    for i, t in enumerate(ids):
        special = t in (vocab.cls, vocab.sep)
        if not special:
            if whole_word and not previous_special and vocab.continuation[t]:
                candidates[-1].append(i)
            else:
                candidates.append([i])
        previous_special = special
    rng.shuffle(candidates)
    budget = min(max_predictions, max(1, int(round(len(ids) * masked_lm_prob))))
    out = list(ids)
    chosen: list[int] = []
    while candidates and len(chosen) < budget:
        group = candidates.pop()
        if len(chosen) + len(group) > budget:
            continue
        if rng.random() < 0.8:
            replacement = [vocab.mask] * len(group)
        elif rng.random() < 0.5:
            replacement = [ids[i] for i in group]
        else:
            replacement = [rng.randint(0, vocab.size - 1) for _ in group]
        for i, new in zip(group, replacement):
            out[i] = new
        chosen += group
    chosen.sort()
    return out, chosen, [ids[i] for i in chosen]


def document_instances(documents: list[list[list[int]]], index: int, vocab: MaskingVocab,
                       rng: random.Random, max_seq_length: int, short_seq_prob: float,
                       masked_lm_prob: float, max_predictions: int,
                       whole_word: bool) -> list[Instance]:
    """The instances of one document, as BERT makes them (see the module docstring)."""
    document = documents[index]
    max_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    target = rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens
    instances, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            a = [t for s in chunk[:a_end] for t in s]
            b: list[int] = []
            random_next = len(chunk) == 1 or rng.random() < 0.5
            if random_next:
                for _ in range(10):
                    other = rng.randint(0, len(documents) - 1)
                    if other != index:
                        break
                other_doc = documents[other]
                for sentence in other_doc[rng.randint(0, len(other_doc) - 1):]:
                    b.extend(sentence)
                    if len(b) >= target - len(a):
                        break
                i -= len(chunk) - a_end  # the unused sentences start the next chunk
            else:
                b = [t for s in chunk[a_end:] for t in s]
            truncate_pair(a, b, max_tokens, rng)
            if a and b:
                ids = [vocab.cls, *a, vocab.sep, *b, vocab.sep]
                segments = [0] * (len(a) + 2) + [1] * (len(b) + 1)
                ids, positions, labels = mask_tokens(ids, vocab, rng, masked_lm_prob,
                                                     max_predictions, whole_word)
                instances.append(Instance(ids, segments, positions, labels, random_next))
            chunk, length = [], 0
        i += 1
    return instances


def to_example(instance: Instance, max_seq_length: int, max_predictions: int) -> bytes:
    def pad(values, n, fill=0):
        return list(values) + [fill] * (n - len(values))

    n = len(instance.ids)
    values = {
        "input_ids": pad(instance.ids, max_seq_length),
        "input_mask": pad([1] * n, max_seq_length),
        "segment_ids": pad(instance.segment_ids, max_seq_length),
        "masked_lm_positions": pad(instance.positions, max_predictions),
        "masked_lm_ids": pad(instance.labels, max_predictions),
        "masked_lm_weights": pad([1.0] * len(instance.positions), max_predictions, 0.0),
        "next_sentence_labels": [int(instance.is_random_next)],
    }
    feature = {
        k: tf.train.Feature(float_list=tf.train.FloatList(value=v)) if FEATURES[k] == "float"
        else tf.train.Feature(int64_list=tf.train.Int64List(value=v))
        for k, v in values.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_names(out: str, shards: int) -> list[str]:
    if shards == 1:
        return [out]
    return [f"{out}-{i:05d}-of-{shards:05d}" for i in range(shards)]


def create_pretraining_data(inputs: list[str], vocab_file: str, out: str, max_seq_length=128,
                            max_predictions=20, masked_lm_prob=0.15, dupe_factor=10,
                            short_seq_prob=0.1, whole_word_mask=False, seed=12345,
                            shards=1, lower_case=True, progress=True,
                            overwrite=False) -> dict:
    """Reads text, writes shuffled instances round-robin into `shards` TFRecord files
    (written to temporary names and renamed at the end). Existing outputs are
    replaced only with `overwrite`. Returns a summary."""
    if max_seq_length < 5:
        raise ConfigError(f"max_seq_length {max_seq_length}: needs room for "
                          "[CLS] A [SEP] B [SEP]")
    if not 0 < masked_lm_prob < 1:
        raise ConfigError(f"masked_lm_prob {masked_lm_prob}: must be in (0, 1)")
    for name, value in (("max_predictions", max_predictions), ("dupe_factor", dupe_factor),
                        ("shards", shards)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} {value!r}: must be a positive integer")
    for path in shard_names(out, shards):
        check_output(path, overwrite)
    files = expand_inputs(inputs)
    vocab = MaskingVocab.from_file(vocab_file)
    documents = tokenize_documents(read_documents(files), BertTokenizer(vocab_file, lower_case))
    if len(documents) < 2:
        raise DataError(f"{', '.join(files)}: {len(documents)} document(s); next-sentence "
                        "prediction needs at least two (separate documents by blank lines)")
    rng = random.Random(seed)
    rng.shuffle(documents)
    instances: list[Instance] = []
    bar = Progbar(dupe_factor * len(documents), unit_name="document") if progress else None
    for _ in range(dupe_factor):
        for index in range(len(documents)):
            instances += document_instances(documents, index, vocab, rng, max_seq_length,
                                            short_seq_prob, masked_lm_prob, max_predictions,
                                            whole_word_mask)
            if bar and (index % 50 == 0 or index == len(documents) - 1):
                bar.update(len(documents) * _ + index + 1)
    rng.shuffle(instances)
    names = shard_names(out, shards)
    with atomic_paths(names) as temps:
        writers = [tf.io.TFRecordWriter(tmp) for tmp in temps]
        try:
            for k, instance in enumerate(instances):
                writers[k % shards].write(to_example(instance, max_seq_length, max_predictions))
        finally:
            for w in writers:
                w.close()
    summary = {
        "files": files, "outputs": names, "documents": len(documents),
        "sentences": sum(len(d) for d in documents),
        "tokens": sum(len(s) for d in documents for s in d), "instances": len(instances),
        "instance_tokens": sum(len(x.ids) for x in instances),
        "masked": sum(len(x.positions) for x in instances),
        "random_next": round(float(np.mean([x.is_random_next for x in instances])), 4)
        if instances else None,
    }
    return summary


# --- reading --------------------------------------------------------------------------

def parse_features(max_seq_length: int, max_predictions: int) -> dict:
    spec = {}
    for name, kind in FEATURES.items():
        length = {"masked_lm_positions": max_predictions, "masked_lm_ids": max_predictions,
                  "masked_lm_weights": max_predictions, "next_sentence_labels": 1}.get(
                      name, max_seq_length)
        spec[name] = tf.io.FixedLenFeature([length], tf.float32 if kind == "float" else tf.int64)
    return spec


def tf_message(error: tf.errors.OpError) -> str:
    """The first line of a TensorFlow error's message, without the op's `{{...}}` and
    `[Op:...]` decorations: e.g. `corrupted record at 6070`."""
    line = error.message.strip().splitlines()[0]
    return re.sub(r"\{\{.*?\}\}|\s*\[Op:.*$", "", line).strip()


def record_lengths(path: str) -> tuple[int, int]:
    """(max_seq_length, max_predictions) of a TFRecord file, from its first record."""
    try:
        first = [raw.numpy() for raw in tf.data.TFRecordDataset(path).take(1)]
    except tf.errors.OpError as e:
        raise DataError(f"{path}: not a TFRecord file, or truncated "
                        f"({tf_message(e)})") from None
    for raw in first:
        try:
            example = tf.train.Example.FromString(raw)
        except Exception as e:  # protobuf's DecodeError
            raise DataError(f"{path}: its first record is not a tf.train.Example ({e})") from None
        feature = example.features.feature
        missing = [k for k in FEATURES if k not in feature]
        if missing:
            raise DataError(f"{path}: not a BERT pre-training record (no {', '.join(missing)})")
        return (len(feature["input_ids"].int64_list.value),
                len(feature["masked_lm_positions"].int64_list.value))
    raise DataError(f"{path}: no records")


RECORD_BATCH = 4096  # records parsed and checked at a time by `check_records`


def value_limits(seq_length: int, config) -> dict:
    """Feature -> (lowest, highest, why) of the values a record may hold for a model of
    `BertConfig` `config`, its records being `seq_length` long."""
    ids = (0, config.vocab_size - 1, f"the model's vocab_size is {config.vocab_size}")
    return {"input_ids": ids, "masked_lm_ids": ids,
            "input_mask": (0, 1, "a mask is 0 or 1"),
            "segment_ids": (0, config.type_vocab_size - 1,
                            f"the model's type_vocab_size is {config.type_vocab_size}"),
            "masked_lm_positions": (0, seq_length - 1, f"the records are {seq_length} long"),
            "next_sentence_labels": (0, 1, "a next-sentence label is 0 or 1")}


_KINDS = {"int64_list": "integers (int64)", "float_list": "floats", "bytes_list": "bytes",
          None: "nothing"}


def record_problem(raw: bytes, seq_length: int, max_predictions: int) -> str | None:
    """Why one serialized record is not a BERT instance of these lengths (not a
    `tf.train.Example`, a feature missing, of the wrong type or count), or None."""
    try:
        feature = tf.train.Example.FromString(raw).features.feature
    except Exception as e:  # protobuf's DecodeError
        return f"not a tf.train.Example ({e})"
    expected = parse_features(seq_length, max_predictions)
    for name, kind in FEATURES.items():
        if name not in feature:
            return f"no {name}"
        has = feature[name].WhichOneof("kind")
        want = "float_list" if kind == "float" else "int64_list"
        if has != want:
            return f"{name} holds {_KINDS[has]}, not {_KINDS[want]}"
        count = len(getattr(feature[name], want).value)
        if count != expected[name].shape[0]:
            return (f"{name} has {count} values where the first record has "
                    f"{expected[name].shape[0]}")
    return None


def value_problem(values: dict, limits: dict) -> tuple[int, str] | None:
    """The first record of a parsed batch (`{feature: [N, width] array}`) holding a value
    the model cannot take: `(index in the batch, what is wrong)`, or None."""
    bad = {name: (values[name] < low) | (values[name] > high)
           for name, (low, high, _) in limits.items()}
    weights = values["masked_lm_weights"]
    bad["masked_lm_weights"] = ~np.isfinite(weights) | (weights < 0)
    rows = {name: np.flatnonzero(b.any(axis=1)) for name, b in bad.items()}
    found = [(r[0], name) for name, r in rows.items() if len(r)]
    if not found:
        return None
    row, name = min(found)
    value = values[name][row][bad[name][row]][0]
    if name == "masked_lm_weights":
        return row, f"masked_lm_weights has {value} (weights are finite and not negative)"
    low, high, why = limits[name]
    return row, f"{name} has {value}, outside {low}..{high} ({why})"


def check_records(pattern: str, config) -> list[str]:
    """The files matching `pattern`, every record checked up front against the model of
    `BertConfig` `config`, so that bad data is an error naming the file and the
    record (counted from 0) now, not a crash minutes into training or a model
    trained on garbage: each record is a BERT pre-training instance (Google's
    features, of the int64/float types and the lengths of the first record), of
    a length the model takes (`max_position_embeddings`), with ids below its
    `vocab_size`, segment ids below its `type_vocab_size`, masked positions inside
    the record, masks and next-sentence labels 0 or 1, finite weights; and each
    file reads to its end (checksums), with nothing after its last record. The
    check parses every record once (as training does), in batches of
    `RECORD_BATCH`. Returns the files."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord files match")
    lengths = {path: record_lengths(path) for path in files}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{pattern}: the files have records of different lengths "
                        f"(max_seq_length, max_predictions): {lengths}")
    seq_length, max_predictions = lengths[files[0]]
    if seq_length > config.max_position_embeddings:
        raise DataError(f"{files[0]}: records of length {seq_length}, longer than the model's "
                        f"max_position_embeddings ({config.max_position_embeddings})")
    spec = parse_features(seq_length, max_predictions)
    limits = value_limits(seq_length, config)
    for path in files:
        index = size = 0
        try:
            for batch in tf.data.TFRecordDataset(path).batch(RECORD_BATCH):
                raws = batch.numpy()
                try:
                    values = {k: v.numpy() for k, v in tf.io.parse_example(batch, spec).items()}
                except tf.errors.InvalidArgumentError as e:
                    found = next(((i, p) for i, raw in enumerate(raws)
                                  if (p := record_problem(raw, seq_length, max_predictions))),
                                 (0, tf_message(e)))
                    raise DataError(f"{path}, record {index + found[0]}: "
                                    f"{found[1]}") from None
                found = value_problem(values, limits)
                if found:
                    raise DataError(f"{path}, record {index + found[0]}: {found[1]}")
                index += len(raws)
                size += sum(16 + len(raw) for raw in raws)  # length, 2 checksums, data
        except tf.errors.OpError as e:
            raise DataError(f"{path}: a TFRecord is corrupted or the file is truncated "
                            f"({tf_message(e)})") from None
        extra = os.path.getsize(path) - size
        if extra:
            raise DataError(f"{path}: {extra} bytes after its last record (record {index - 1}) "
                            "are not a TFRecord (data appended, or a record cut short)")
    return files


def to_model_inputs(record: dict) -> tuple[dict, dict, dict]:
    """Google's feature names -> (inputs, targets, sample weights) for `fit`."""
    ints = {k: tf.cast(v, tf.int32) for k, v in record.items() if k != "masked_lm_weights"}
    x = {"input_word_ids": ints["input_ids"], "input_mask": ints["input_mask"],
         "input_type_ids": ints["segment_ids"], "masked_lm_positions": ints["masked_lm_positions"]}
    y = {"mlm_logits": ints["masked_lm_ids"], "nsp_logits": ints["next_sentence_labels"][..., 0]}
    w = {"mlm_logits": record["masked_lm_weights"],
         "nsp_logits": tf.ones_like(record["masked_lm_weights"][..., 0])}
    return x, y, w


def remask(record: dict, seed, vocab: MaskingVocab, masked_lm_prob: float) -> dict:
    """Dynamic masking: restores a record's original ids, then draws new positions
    (uniformly among the real tokens but [CLS]/[SEP]) and new 80/10/10 replacements
    from the stateless `seed` (shape [2]). Not whole-word."""
    ids = record["input_ids"]
    weights = record["masked_lm_weights"]
    positions = record["masked_lm_positions"]
    max_predictions = positions.shape[0]
    seq_length = ids.shape[0]
    real = tf.cast(weights > 0, tf.int64)
    change = (record["masked_lm_ids"] - tf.gather(ids, positions)) * real
    ids = ids + tf.scatter_nd(positions[:, None], change, [seq_length])
    mask = record["input_mask"]
    candidate = (mask > 0) & (ids != vocab.cls) & (ids != vocab.sep)
    length = tf.reduce_sum(mask)
    budget = tf.minimum(tf.cast(max_predictions, tf.int64), tf.maximum(
        tf.cast(1, tf.int64), tf.cast(tf.round(tf.cast(length, tf.float32) * masked_lm_prob),
                                      tf.int64)))
    budget = tf.minimum(budget, tf.reduce_sum(tf.cast(candidate, tf.int64)))
    seeds = tf.random.experimental.stateless_split(seed, 3)
    scores = tf.where(candidate, tf.random.stateless_uniform([seq_length], seeds[0]), -1.0)
    top = tf.math.top_k(scores, max_predictions).indices
    keep = tf.range(max_predictions, dtype=tf.int64) < budget
    new_positions = tf.sort(tf.where(keep, tf.cast(top, tf.int64), seq_length))
    keep = new_positions < seq_length
    new_positions = tf.where(keep, new_positions, 0)
    labels = tf.where(keep, tf.gather(ids, new_positions), 0)
    draw = tf.random.stateless_uniform([max_predictions], seeds[1])
    random_ids = tf.random.stateless_uniform([max_predictions], seeds[2], 0, vocab.size, tf.int64)
    replacement = tf.where(draw < 0.8, tf.cast(vocab.mask, tf.int64),
                           tf.where(draw < 0.9, random_ids, labels))
    updates = tf.where(keep, replacement - labels, 0)
    masked_ids = ids + tf.scatter_nd(new_positions[:, None], updates, [seq_length])
    return {**record, "input_ids": masked_ids, "masked_lm_positions": new_positions,
            "masked_lm_ids": labels, "masked_lm_weights": tf.cast(keep, tf.float32)}


def shuffled_passes(records: tf.data.Dataset, seed: int,
                    buffer_size: int = 10_000) -> tf.data.Dataset:
    """`records` repeated, each pass shuffled anew (through a buffer of `buffer_size`):
    the passes' orders follow from `seed` alone, the same for every iteration.

    `records.shuffle(..., reshuffle_each_iteration=True).repeat()` alone is not: its
    passes draw their orders from one generator that all iterations of that dataset
    share, so an iteration's batches depend on how many passes the iterations before it
    began. Keras' `fit` begins one to build the model, whose prefetching reaches into
    later passes when the records are few, as far as thread timing lets it (seen
    2026-12-07 at commit 5b11927: of two runs of one job in one process, the first
    trained on other batches than the second). Made inside `flat_map`, that dataset, and
    its generator, is made anew for every iteration."""
    return tf.data.Dataset.range(1).flat_map(
        lambda _: records.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True).repeat())


def pretraining_dataset(pattern: str, batch_size: int, training: bool = True, seed: int = 0,
                        dynamic_masking: bool = False, vocab: MaskingVocab | None = None,
                        masked_lm_prob: float = 0.15) -> tf.data.Dataset:
    """Batches of `(inputs, targets, sample_weights)` from TFRecord files. For training:
    repeated, each pass over the records shuffled in an order of its own; with
    `dynamic_masking`, masks are drawn anew every pass. The training batches depend on
    `seed` (and TensorFlow's global seed) alone: every iteration of the dataset gives the
    same batches, however far the ones before it went."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise DataError(f"{pattern}: no TFRecord files match")
    seq_length, max_predictions = record_lengths(files[0])
    spec = parse_features(seq_length, max_predictions)
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 4))
    ds = ds.map(lambda raw: tf.io.parse_single_example(raw, spec),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training:
        ds = shuffled_passes(ds, seed)
        if dynamic_masking:
            if vocab is None:
                raise ConfigError("dynamic masking needs the vocab")
            seeds = tf.data.Dataset.random(seed=seed).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda r, s: remask(r, s, vocab, masked_lm_prob),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    ds = ds.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
