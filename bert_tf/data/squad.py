"""SQuAD v1.1 as BERT reads it: examples, windowed features, answers from logits, the metric.

Follows google-research/bert `run_squad.py` (as kept in Model Garden's
`official.nlp.data.squad_lib`) step for step, so that the same file, vocab and
logits give the same features and the same predictions (tests compare the two):

- `read_squad`: contexts split on BERT's whitespace (space, tab, CR, LF, U+202F)
  into words, with a character -> word map; for training the first answer's
  word span, and answers whose words do not contain the answer text are skipped
  and counted (as BERT does).
- `make_features`: question tokens (at most `max_query_length`), then the context's
  WordPieces in windows of `max_seq_length` moved by `doc_stride`; each token's
  "max context" window; the answer span narrowed to the WordPieces of the answer
  (BERT's `_improve_answer_span`); a window without the answer points at [CLS].
- `postprocess`: the n-best start/end pairs over all windows of a question, mapped
  back to the original words and cut to the predicted characters
  (BERT's `get_final_text`).
- `squad_v1_scores`: exact match and F1 with the official v1.1 definitions.

Words are tokenised in batches by the in-graph tokenizer (`BertTokenizer`), one
call for all the words of a file, so the WordPieces are BERT's.

Example:
    >>> import os
    >>> from bert_tf.preprocessing.tokenizer import BertTokenizer
    >>> dev_file = os.path.join(data_dir, "SQuAD1.1", "dev-v1.1.json")
    >>> examples, skipped = read_squad(dev_file, articles="38:48")
    >>> len(examples), examples[0].question
    (1988, 'What organization is the IPCC a part of?')
    >>> features = make_features(BertTokenizer(vocab_file), examples, 384, 128, 64)
    >>> features.input_word_ids.shape    # [windows, max_seq_length]
    (1992, 384)
"""
from __future__ import annotations

import collections
import dataclasses
import math
import re
import string

import numpy as np
import tensorflow as tf

from bert_tf.errors import ConfigError, DataError
from bert_tf.io import text as text_io
from bert_tf.preprocessing.tokenizer import BertTokenizer, normalize, split_words


class SquadError(DataError):
    """A malformed SQuAD file: the message names the article and question."""


@dataclasses.dataclass
class SquadExample:
    qas_id: str
    question: str
    context: str
    words: list[str]          # the context split on whitespace
    word_starts: list[int]    # character offset of each word in `context`
    answers: list[str]        # every gold answer text
    start_word: int = -1      # the first answer's word span (training)
    end_word: int = -1
    answer_text: str = ""
    article: int = 0
    place: str = ""           # the file, article and paragraph, for messages


def is_whitespace(c: str) -> bool:
    """BERT's run_squad whitespace: not Unicode's (a no-break space stays in a word)."""
    return c in " \t\r\n" or ord(c) == 0x202F


def split_context(context: str) -> tuple[list[str], list[int], list[int]]:
    """Words, each word's first character offset, and each character's word index
    (of the word before it, for whitespace), as run_squad's `char_to_word_offset`."""
    words, starts, char_to_word = [], [], []
    prev_is_whitespace = True
    for i, c in enumerate(context):
        if is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                words.append(c)
                starts.append(i)
            else:
                words[-1] += c
            prev_is_whitespace = False
        char_to_word.append(len(words) - 1)
    return words, starts, char_to_word


def parse_articles(spec: str | None) -> slice:
    """`"A:B"` -> articles A..B-1 (either side may be empty); None -> all."""
    if not spec:
        return slice(None)
    m = re.fullmatch(r"\s*(\d*)\s*:\s*(\d*)\s*", spec)
    if not m:
        raise SquadError(f"article range {spec!r}: expected A:B, e.g. 0:38")
    a, b = (int(x) if x else None for x in m.groups())
    return slice(a, b)


def read_json(path: str):
    """The JSON value in the file `path`; a missing file, invalid JSON or JSON nested too
    deeply for Python's parser is a SquadError naming the file."""
    try:
        return text_io.read_json(path, SquadError)
    except FileNotFoundError:
        raise SquadError(f"{path}: file not found") from None


def load_articles(path: str, articles: str | None = None) -> list[tuple[int, dict]]:
    """`(index, article)` pairs of a SQuAD file's `data`, the range `articles` only."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise SquadError(f"{path}: expected a JSON object with a list 'data' (SQuAD format)")
    chosen = list(enumerate(data["data"]))[parse_articles(articles)]
    if not chosen:
        raise SquadError(f"{path}: article range {articles!r} selects none of its "
                         f"{len(data['data'])} articles")
    return chosen


def _field(obj, key, kind, where):
    if not isinstance(obj, dict) or key not in obj:
        raise SquadError(f"{where}: missing field {key!r}")
    if not isinstance(obj[key], kind):
        raise SquadError(f"{where}: field {key!r} should be a {kind.__name__}, "
                         f"not {type(obj[key]).__name__}")
    return obj[key]


def read_squad(path: str, articles: str | None = None, training: bool = False):
    """Reads a SQuAD v1.1 file -> `(examples, skipped)`.

    For training, each question's first answer gives its word span, and an answer
    whose words do not contain its text (a wrong `answer_start`) is skipped;
    `skipped` lists those question ids."""
    examples, skipped = [], []
    places = {}  # question id -> its article and paragraph
    for index, article in load_articles(path, articles):
        title = article.get("title", "") if isinstance(article, dict) else ""
        where_article = f"{path}: article {index} ({title!r})"
        for p, paragraph in enumerate(_field(article, "paragraphs", list, where_article)):
            where = f"{where_article}, paragraph {p}"
            context = _field(paragraph, "context", str, where)
            words, starts, char_to_word = split_context(context)
            if not words:
                raise SquadError(f"{where}: the context has no words (it is empty or only "
                                 "whitespace)")
            for qa in _field(paragraph, "qas", list, where):
                qas_id = _field(qa, "id", str, f"{where}, a question")
                place = f"article {index} ({title!r}), paragraph {p}"
                if qas_id in places:  # predictions are keyed by id: one would be lost
                    raise SquadError(f"{path}: question id {qas_id!r} is used twice, in "
                                     f"{places[qas_id]} and in {place}")
                places[qas_id] = place
                where_qa = f"{where_article}, question {qas_id}"
                question = _field(qa, "question", str, where_qa)
                answers = _field(qa, "answers", list, where_qa)
                texts = [_field(a, "text", str, f"{where_qa}, answer {i}")
                         for i, a in enumerate(answers)]
                example = SquadExample(qas_id, question, context, words, starts, texts,
                                       article=index, place=where)
                if training:
                    if not answers:
                        raise SquadError(f"{where_qa}: a training question needs an answer")
                    start = _field(answers[0], "answer_start", int, f"{where_qa}, answer 0")
                    if not _set_answer(example, start, char_to_word):
                        skipped.append(qas_id)
                        continue
                examples.append(example)
    return examples, skipped


def _set_answer(example: SquadExample, start: int, char_to_word: list[int]) -> bool:
    """Sets the first answer's word span; False when the words at `answer_start`
    do not contain the answer text (run_squad's check)."""
    text = example.answers[0]
    end = start + len(text) - 1
    if not text or start < 0 or end >= len(char_to_word):
        return False
    example.start_word, example.end_word = char_to_word[start], char_to_word[end]
    actual = " ".join(example.words[example.start_word:example.end_word + 1])
    if actual.find(" ".join(text.split())) == -1:
        return False
    example.answer_text = text
    return True


# -- features -------------------------------------------------------------------------------

@dataclasses.dataclass
class SquadFeatures:
    """One row per window. Token arrays are `[N, max_seq_length]`; `token_to_word`
    is the context word of each token (-1 outside the context)."""
    input_word_ids: np.ndarray
    input_mask: np.ndarray
    input_type_ids: np.ndarray
    token_to_word: np.ndarray
    max_context: np.ndarray
    start_positions: np.ndarray
    end_positions: np.ndarray
    example_index: np.ndarray

    def __len__(self):
        return len(self.example_index)

    def inputs(self) -> dict:
        return {"input_word_ids": self.input_word_ids, "input_mask": self.input_mask,
                "input_type_ids": self.input_type_ids}


_TRACED = {}


def _traced(owner, name: str, fn):
    """`fn` as a tf.function on string vectors, traced once per (owner, name)."""
    key = (id(owner), name)
    if key not in _TRACED or _TRACED[key][0] is not owner:
        _TRACED[key] = (owner, tf.function(fn, input_signature=[tf.TensorSpec([None], tf.string)]))
    return _TRACED[key][1]


def wordpieces(tokenizer: BertTokenizer, texts: list[str], batch: int = 20_000):
    """The WordPiece ids of each text (BERT's FullTokenizer.tokenize), batched in-graph."""
    fn = _traced(tokenizer, "wordpieces", lambda t: tokenizer.tokenize(t).merge_dims(1, 2))
    out = []
    for i in range(0, len(texts), batch):
        ragged = fn(tf.constant(texts[i:i + batch], tf.string))
        values, splits = ragged.flat_values.numpy(), ragged.row_splits.numpy()
        out += [values[a:b] for a, b in zip(splits[:-1], splits[1:])]
    return out


def doc_spans(num_tokens: int, max_tokens: int, doc_stride: int) -> list[tuple[int, int]]:
    """run_squad's sliding windows over the context tokens: `(start, length)`."""
    spans, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def max_context_windows(spans: list[tuple[int, int]], num_tokens: int) -> np.ndarray:
    """For each context token, the window where it has the most context: the highest
    `min(left, right) + 0.01 * length` (the first window on ties), as run_squad."""
    scores = np.full((len(spans), num_tokens), -np.inf)
    positions = np.arange(num_tokens)
    for s, (start, length) in enumerate(spans):
        end = start + length - 1
        inside = (positions >= start) & (positions <= end)
        score = np.minimum(positions - start, end - positions) + 0.01 * length
        scores[s, inside] = score[inside]
    return np.argmax(scores, axis=0)


def improve_answer_span(doc_ids, start: int, end: int, answer_ids) -> tuple[int, int]:
    """The sub-span of tokens `start..end` that is exactly the answer's WordPieces,
    if there is one (run_squad's `_improve_answer_span`)."""
    answer = list(answer_ids)
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if list(doc_ids[new_start:new_end + 1]) == answer:
                return new_start, new_end
    return start, end


def check_sizes(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """The window sizes leave room for the context, and the stride skips no token."""
    room = max_seq_length - max_query_length - 3
    if room < 1 or doc_stride < 1:
        raise SquadError(f"--max-seq-length {max_seq_length} must exceed --max-query-length "
                         f"{max_query_length} + 3, and --doc-stride ({doc_stride}) be positive")
    if doc_stride > room:
        raise SquadError(f"--doc-stride {doc_stride} is longer than a window's context "
                         f"(at least {room} tokens): tokens between windows would never be seen")


def make_features(tokenizer: BertTokenizer, examples: list[SquadExample], max_seq_length: int,
                  doc_stride: int, max_query_length: int, training: bool = False) -> SquadFeatures:
    """BERT's `convert_examples_to_features` for SQuAD v1.1 (see the module docstring)."""
    check_sizes(max_seq_length, doc_stride, max_query_length)
    cls = tokenizer.special_ids["start_of_sequence_id"]
    sep = tokenizer.special_ids["end_of_segment_id"]
    # Each distinct context's words are tokenised once, all contexts in one batch.
    words_of = {e.context: e.words for e in examples}
    pieces = wordpieces(tokenizer, [w for words in words_of.values() for w in words])
    docs, first = {}, 0
    for context, words in words_of.items():
        word_pieces = pieces[first:first + len(words)]
        first += len(words)
        lengths = [len(p) for p in word_pieces]
        docs[context] = (np.concatenate(word_pieces).astype(np.int32) if word_pieces
                         else np.zeros([0], np.int32),
                         np.cumsum([0] + lengths),                       # word -> first token
                         np.repeat(np.arange(len(words)), lengths))      # token -> word
    for example in examples:
        if not len(docs[example.context][0]):  # no window to answer from
            raise SquadError(f"{example.place or 'question ' + example.qas_id}: the context has "
                             "no WordPiece tokens (only characters BERT's tokenizer drops)")
    questions = wordpieces(tokenizer, [e.question for e in examples])
    answers = wordpieces(tokenizer, [e.answer_text for e in examples]) if training else None

    rows = collections.defaultdict(list)
    windows = {}
    for i, example in enumerate(examples):
        doc_ids, orig_to_tok, tok_to_orig = docs[example.context]
        query = questions[i][:max_query_length]
        max_doc = max_seq_length - len(query) - 3
        tok_start = tok_end = -1
        if training:
            tok_start = int(orig_to_tok[example.start_word])
            tok_end = int(orig_to_tok[example.end_word + 1] - 1)
            tok_start, tok_end = improve_answer_span(doc_ids, tok_start, tok_end, answers[i])
        if (example.context, max_doc) not in windows:  # questions share their context's
            spans = doc_spans(len(doc_ids), max_doc, doc_stride)
            windows = {(example.context, max_doc): (spans, max_context_windows(spans,
                                                                               len(doc_ids)))}
        spans, best = windows[(example.context, max_doc)]
        offset = len(query) + 2
        for s, (start, length) in enumerate(spans):
            ids = np.concatenate([[cls], query, [sep], doc_ids[start:start + length], [sep]])
            n = len(ids)
            to_word = np.full(max_seq_length, -1, np.int32)
            to_word[offset:offset + length] = tok_to_orig[start:start + length]
            is_max = np.zeros(max_seq_length, bool)
            is_max[offset:offset + length] = best[start:start + length] == s
            types = np.zeros(max_seq_length, np.int32)
            types[offset:n] = 1
            rows["input_word_ids"].append(np.pad(ids, (0, max_seq_length - n)))
            rows["input_mask"].append(np.arange(max_seq_length) < n)
            rows["input_type_ids"].append(types)
            rows["token_to_word"].append(to_word)
            rows["max_context"].append(is_max)
            inside = training and tok_start >= start and tok_end <= start + length - 1
            rows["start_positions"].append(tok_start - start + offset if inside else 0)
            rows["end_positions"].append(tok_end - start + offset if inside else 0)
            rows["example_index"].append(i)
    if not rows:
        raise ConfigError("no SQuAD examples to make features from")
    dtypes = {"max_context": bool}
    return SquadFeatures(**{k: np.asarray(v, dtypes.get(k, np.int32)) for k, v in rows.items()})


# -- from logits to answers -------------------------------------------------------------------

def _strip_spaces(text: str):
    chars, to_orig = [], []
    for i, c in enumerate(text):
        if c != " ":
            chars.append(c)
            to_orig.append(i)
    return "".join(chars), to_orig


def final_text(pred_text: str, orig_text: str, basic_tokens: str) -> str:
    """run_squad's `get_final_text`: the characters of `orig_text` (original words)
    that the normalised prediction `pred_text` covers. `basic_tokens` is
    `orig_text` through BERT's BasicTokenizer, joined by spaces. Falls back to
    `orig_text` whenever the alignment fails, as BERT does."""
    start = basic_tokens.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_map = _strip_spaces(orig_text)
    tok_ns, tok_map = _strip_spaces(basic_tokens)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_s_to_ns = {s: i for i, s in enumerate(tok_map)}
    if start not in tok_s_to_ns or end not in tok_s_to_ns:
        return orig_text
    return orig_text[orig_map[tok_s_to_ns[start]]:orig_map[tok_s_to_ns[end]] + 1]


def basic_tokenize(texts: list[str], lower_case: bool = True, batch: int = 20_000) -> list[str]:
    """BERT's BasicTokenizer (cleaning, lower-casing, accents, punctuation splits),
    joined by spaces: the same in-graph ops as the WordPiece tokenizer uses."""
    fn = _traced(None, f"basic-{lower_case}", lambda t: tf.strings.reduce_join(
        split_words(normalize(t, lower_case)), axis=-1, separator=" "))
    out = []
    for i in range(0, len(texts), batch):
        out += [s.decode("utf-8") for s in fn(tf.constant(texts[i:i + batch], tf.string)).numpy()]
    return out


def _top(logits: np.ndarray, n: int) -> np.ndarray:
    return np.argsort(-logits, kind="stable")[:n]


def best_spans(start_logits, end_logits, valid, is_max, n_best: int, max_answer_length: int):
    """run_squad's candidate spans of one window: each of the top `n_best` starts with
    each of the top `n_best` ends, kept when both are context tokens, the start has
    its max context here, and `start <= end < start + max_answer_length`."""
    out = []
    for s in _top(start_logits, n_best):
        if not (valid[s] and is_max[s]):
            continue
        for e in _top(end_logits, n_best):
            if valid[e] and s <= e < s + max_answer_length:
                out.append((float(start_logits[s]), float(end_logits[e]), int(s), int(e)))
    return out


def postprocess(examples: list[SquadExample], features: SquadFeatures, start_logits,
                end_logits, vocab: list[str], n_best_size: int = 20, max_answer_length: int = 30,
                lower_case: bool = True):
    """Logits `[N, L]` (one row per feature) -> `(predictions, nbest)`: the official
    `{qas_id: text}` and, per question, the n-best list of dicts with `text`,
    `probability`, `start_logit`, `end_logit` (run_squad's `write_predictions`)."""
    by_example = collections.defaultdict(list)
    for f, i in enumerate(features.example_index):
        by_example[int(i)].append(f)
    candidates = {}
    for i in range(len(examples)):
        prelim = []
        for f in by_example[i]:
            width = min(len(start_logits[f]), features.input_word_ids.shape[1])
            valid = features.token_to_word[f, :width] >= 0
            for sl, el, s, e in best_spans(np.asarray(start_logits[f][:width]),
                                           np.asarray(end_logits[f][:width]), valid,
                                           features.max_context[f, :width], n_best_size,
                                           max_answer_length):
                prelim.append((sl + el, sl, el, f, s, e))
        prelim.sort(key=lambda x: x[0], reverse=True)  # stable, as run_squad's sorted()
        candidates[i] = prelim

    # The texts get_final_text needs, basic-tokenised in one batch.
    def spans_text(example, f, s, e):
        ids = features.input_word_ids[f, s:e + 1]
        tok_text = " ".join(vocab[t] for t in ids).replace(" ##", "").replace("##", "")
        tok_text = " ".join(tok_text.strip().split())
        first, last = features.token_to_word[f, s], features.token_to_word[f, e]
        return tok_text, " ".join(example.words[first:last + 1])

    texts = {}
    for i, prelim in candidates.items():
        for _, _, _, f, s, e in prelim[:4 * n_best_size]:
            texts[(i, f, s, e)] = spans_text(examples[i], f, s, e)
    origs = sorted({orig for _, orig in texts.values()})
    basic = dict(zip(origs, basic_tokenize(origs, lower_case)))

    predictions, nbest_json = collections.OrderedDict(), collections.OrderedDict()
    for i, example in enumerate(examples):
        seen, nbest = set(), []
        for _, sl, el, f, s, e in candidates[i]:
            if len(nbest) >= n_best_size:
                break
            key = (i, f, s, e)
            if key not in texts:  # beyond the batch above: rare, done one at a time
                texts[key] = spans_text(example, f, s, e)
                basic.setdefault(texts[key][1], basic_tokenize([texts[key][1]], lower_case)[0])
            tok_text, orig = texts[key]
            text = final_text(tok_text, orig, basic[orig])
            if text in seen:
                continue
            seen.add(text)
            nbest.append((text, sl, el))
        if not nbest:  # run_squad's nonce prediction when no span is valid
            nbest.append(("empty", 0.0, 0.0))
        probs = _softmax([sl + el for _, sl, el in nbest])
        nbest_json[example.qas_id] = [
            {"text": t, "probability": p, "start_logit": sl, "end_logit": el}
            for (t, sl, el), p in zip(nbest, probs)]
        predictions[example.qas_id] = nbest[0][0]
    return predictions, nbest_json


def _softmax(scores):
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    return [x / sum(exps) for x in exps]


# -- the official v1.1 metric -------------------------------------------------------------------

def normalize_answer(s: str) -> str:
    """Official v1.1: lower-case, drop punctuation, drop articles, fix whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    same = sum((collections.Counter(pred) & collections.Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_v1_scores(articles: list[dict], predictions: dict[str, str]) -> dict:
    """The official `evaluate-v1.1.py` -> `({"exact_match", "f1"}, unanswered)`:
    percentages, the best over each question's gold answers; a question without a
    prediction scores 0 (`unanswered` counts them)."""
    em = f1 = total = unanswered = 0
    for article in articles:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    unanswered += 1
                    continue
                truths = [a["text"] for a in qa.get("answers") or []
                          if isinstance(a, dict) and isinstance(a.get("text"), str)]
                if not truths:
                    raise SquadError(f"question {qa['id']}: no gold answers to score against")
                prediction = predictions[qa["id"]]
                if not isinstance(prediction, str):
                    raise SquadError(f"question {qa['id']}: the prediction should be a string, "
                                     f"not {type(prediction).__name__}")
                em += max(exact_match_score(prediction, t) for t in truths)
                f1 += max(f1_score(prediction, t) for t in truths)
    if not total:
        raise SquadError("no questions to evaluate")
    scores = {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}
    return scores, unanswered


def evaluate_file(path: str, articles: str | None, predictions: dict) -> tuple[dict, int]:
    """The official v1.1 scores of `predictions` on the questions of `path` (articles
    `A:B`), and how many of those questions have no prediction (they score 0)."""
    return squad_v1_scores([a for _, a in load_articles(path, articles)], predictions)


def squad_eval(data_file: str, predictions_file: str,
               articles: str | None = None) -> tuple[dict, int]:
    """`evaluate_file` on a `predictions.json` file ({question id: answer text})."""
    predictions = read_json(predictions_file)
    if not isinstance(predictions, dict):
        raise SquadError(f"{predictions_file}: expected a JSON object {{question id: answer}}")
    return evaluate_file(data_file, articles, predictions)
