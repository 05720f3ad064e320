"""Tagged words from CoNLL-format files (named entities: CoNLL-2003, WNUT-17).

One word a line, its columns split by tabs (or, in a line without a tab, by
whitespace: CoNLL-2003's `EU NNP B-NP B-ORG`); the word is the first column and the
tag the column `tag_column` picks (default the last). A blank line, or one of
whitespace only (WNUT-17's training file separates sentences with a lone tab), ends
a sentence. CoNLL-2003's `-DOCSTART-` lines, each a sentence of its own, are left out.

Tags follow a scheme, `IOB2` by default: `O`, `B-type` or `I-type` (IOB1 files, whose
`I-` tags may start an entity, are read the same: `bert_tf.training.entities` counts
their entities as `conlleval` does); `scheme=None` takes any tags (parts of speech).
A bad file ends in one `DataError` naming the file and line: a line without the tag
column, a tag outside the scheme, an empty sentence (a second blank line in a row),
a file with no sentences.

Example:
    >>> train = read_conll(f"{data_dir}/WNUT-17/wnut17train.conll")  # data_dir: ../shared/data
    >>> len(train), train.words[0][:4], train.tags[0][14:17]
    (3394, ['@paulwalk', 'It', "'s", 'the'], ['B-location', 'I-location', 'I-location'])
    >>> tag_names(train)[:3]
    ['O', 'B-corporation', 'I-corporation']
"""
from __future__ import annotations

import dataclasses
import re

from bert_tf.errors import ConfigError, DataError
from bert_tf.io.text import read_lines

SCHEMES = {"IOB2": re.compile(r"O|[BI]-\S+")}
DOCSTART = "-DOCSTART-"


@dataclasses.dataclass
class TaggedSentences:
    """Sentences as lists of words and, word for word, their tags."""
    words: list[list[str]]
    tags: list[list[str]]
    source: str

    def __len__(self):
        return len(self.words)


def read_conll(path: str, tag_column: int = -1, scheme: str | None = "IOB2") -> TaggedSentences:
    """The sentences of a CoNLL-format file (see the module); `tag_column` counts
    from 0 (the word) or, below 0, from the end."""
    if scheme is not None and scheme not in SCHEMES:
        raise ConfigError(f"tag scheme {scheme!r}: choose one of {list(SCHEMES)} or None")
    if tag_column == 0:
        raise ConfigError("tag_column 0 is the word; the tag is column 1 or after (or -1, "
                          "the last)")
    pattern = SCHEMES.get(scheme)
    lines = read_lines(path)
    # Blank lines after the last word end the file, not empty sentences.
    end = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
    words, tags = [], []
    sentence_words, sentence_tags = [], []
    for number, line in enumerate(lines[:end] + [""], start=1):
        if not line.strip():
            if not sentence_words and number <= end:
                where = "after a blank line" if number > 1 else "at the start"
                raise DataError(f"{path}, line {number}: an empty sentence (a blank line "
                                f"{where})")
            if sentence_words and sentence_words != [DOCSTART]:
                words.append(sentence_words)
                tags.append(sentence_tags)
            sentence_words, sentence_tags = [], []
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
        tag = fields[tag_column] if -len(fields) < tag_column < len(fields) else ""
        if not tag:
            raise DataError(f"{path}, line {number}: no tag (column {tag_column}) in "
                            f"{line.strip()!r:.60}")
        if pattern is not None and fields[0] != DOCSTART and not pattern.fullmatch(tag):
            raise DataError(f"{path}, line {number}: tag {tag!r} is not {scheme} "
                            "(O, B-type or I-type)")
        sentence_words.append(fields[0])
        sentence_tags.append(tag)
    if not words:
        raise DataError(f"{path}: no sentences")
    return TaggedSentences(words, tags, path)


def tag_names(*datasets: TaggedSentences) -> list[str]:
    """The tags of `datasets`, as a model's `labels`: `O` first, then by type, each
    type's `B-` before its `I-` (the order of a tag's first use elsewhere)."""
    seen = {tag for data in datasets for sentence in data.tags for tag in sentence}

    def key(tag):
        prefix, _, kind = tag.partition("-")
        return (tag != "O", kind if kind else tag, prefix)
    return sorted(seen, key=key)
