"""Entity-level precision, recall and F1 of BIO (IOB2) tags, as CoNLL's `conlleval`
and `seqeval`'s default mode count them (plain Python, no TensorFlow).

An entity is a run of tags of one type: `B-type` starts one, `I-type` continues it.
As `conlleval` (and so `seqeval.metrics` without `mode="strict"`), the reading is
lenient: an `I-type` after `O`, or after a tag of another type, starts an entity too
(so IOB1 files, whose `I-` tags start entities, count the same). Sentences are
read one after another with an `O` between them, so no entity spans two.

A predicted entity is correct when a true one has the same type, start and end;
precision is correct / predicted, recall correct / true (micro averages over all
types; 0 where the count under the fraction is 0, as `seqeval` gives).

Example:
    >>> entities(["B-person", "I-person", "O", "I-location", "B-location"])
    [('person', 0, 2), ('location', 3, 4), ('location', 4, 5)]
    >>> scores = entity_scores([["B-person", "I-person", "O"]], [["B-person", "O", "O"]])
    >>> scores["precision"], scores["recall"], scores["f1"]
    (0.0, 0.0, 0.0)
"""
from __future__ import annotations


def _split(tag: str) -> tuple[str, str]:
    """`B-person` -> `("B", "person")`; `O` -> `("O", "")`."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence's tags: `(type, start, end)`, `end` exclusive
    (a slice of the words), in order."""
    found, start, kind = [], None, ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, tag_kind = _split(tag)
        starts = prefix == "B" or (prefix == "I" and (start is None or tag_kind != kind))
        if start is not None and (prefix == "O" or starts):
            found.append((kind, start, i))
            start = None
        if starts:
            start, kind = i, tag_kind
    return found


def _entity_set(sentences: list[list[str]]) -> set[tuple[int, str, int, int]]:
    return {(n, *entity) for n, tags in enumerate(sentences) for entity in entities(tags)}


def _scores(true: set, predicted: set) -> dict:
    correct = len(true & predicted)
    precision = correct / len(predicted) if predicted else 0.0
    recall = correct / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "true_entities": len(true),
            "predicted_entities": len(predicted), "correct_entities": correct}


def entity_scores(true: list[list[str]], predicted: list[list[str]]) -> dict:
    """Precision, recall and F1 of the entities in `predicted` against `true` (lists of
    sentences' tags, word for word), micro-averaged over the types, with the counts
    (`true_entities`, `predicted_entities`, `correct_entities`) and the same for each
    type under `by_type`.

    Raises:
        ValueError: the two differ in their number of sentences or of a sentence's tags.
    """
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} sentences of true tags but {len(predicted)} predicted")
    for n, (a, b) in enumerate(zip(true, predicted)):
        if len(a) != len(b):
            raise ValueError(f"sentence {n}: {len(a)} true tags but {len(b)} predicted")
    true_set, predicted_set = _entity_set(true), _entity_set(predicted)
    scores = _scores(true_set, predicted_set)
    kinds = sorted({e[1] for e in true_set | predicted_set})
    scores["by_type"] = {kind: _scores({e for e in true_set if e[1] == kind},
                                       {e for e in predicted_set if e[1] == kind})
                         for kind in kinds}
    return scores
