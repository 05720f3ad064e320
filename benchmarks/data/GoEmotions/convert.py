"""GoEmotions (simplified split) -> TSVs with a header row for `bert_tf.data.glue.read_tsv`.

Input (in `original/`, byte-for-byte as published, see SOURCE): `train.tsv`, `dev.tsv`
(no header; columns text, comma-separated emotion ids, comment id) and `emotions.txt`
(one emotion name a line; line i is id i).

Output: `train.tsv`, `dev.tsv` with header `text<TAB>labels`, `labels` the emotion
names comma-separated in the original id order (e.g. `admiration,joy`). The comment
id column is dropped.

Quoting: the published files were written with CSV quoting (a text holding `"` is
wrapped in `"` with inner quotes doubled), the way pandas, TFDS and HF `datasets`
read them. This script unquotes with the `csv` module, as they do, and writes the
texts with NO quoting (split on tabs only, like GLUE). It refuses a text holding a
tab or a line break, so every output line is one example.

Usage (python3, standard library only):
    python3 benchmarks/data/GoEmotions/convert.py            # original/ -> this folder
    python3 convert.py --src DIR --out DIR --splits train dev test
"""
import argparse
import csv
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHED = {"train": 43410, "dev": 5426, "test": 5427}   # goemotions/README.md
BREAKS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def convert(src: str, out: str, split: str, names: list[str]) -> int:
    path = os.path.join(src, f"{split}.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    rows = list(csv.reader(io.StringIO(raw, newline=""), delimiter="\t"))
    if len(rows) != raw.count("\n"):
        sys.exit(f"{path}: {len(rows)} records but {raw.count(chr(10))} lines "
                 "(a quoted field spans lines?)")
    lines = ["text\tlabels"]
    for number, row in enumerate(rows, start=1):
        if len(row) != 3:
            sys.exit(f"{path}, line {number}: {len(row)} fields, expected 3")
        text, ids, _comment_id = row
        if any(c in text for c in BREAKS):
            sys.exit(f"{path}, line {number}: the text holds a tab or line break")
        if not text.strip():
            sys.exit(f"{path}, line {number}: empty text")
        try:
            labels = [names[int(i)] for i in ids.split(",")]
        except (ValueError, IndexError):
            sys.exit(f"{path}, line {number}: bad emotion ids {ids!r}")
        lines.append(f"{text}\t{','.join(labels)}")
    with open(os.path.join(out, f"{split}.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
    n = len(lines) - 1
    expected = PUBLISHED.get(split)
    note = "" if expected is None else (" (published %d: %s)" % (expected, "ok" if n == expected
                                                                  else "MISMATCH"))
    print(f"{split}: {n} examples{note}")
    return n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", default=os.path.join(HERE, "original"))
    p.add_argument("--out", default=HERE)
    p.add_argument("--splits", nargs="+", default=["train", "dev"])
    args = p.parse_args()
    with open(os.path.join(args.src, "emotions.txt"), encoding="utf-8") as f:
        names = f.read().split()
    if len(names) != 28:
        sys.exit(f"emotions.txt: {len(names)} names, expected 28")
    os.makedirs(args.out, exist_ok=True)
    for split in args.splits:
        convert(args.src, args.out, split, names)


if __name__ == "__main__":
    main()
