"""Reading text files with errors that name the file (and, for bad UTF-8, the line)."""
from __future__ import annotations

from bert_tf.errors import DataError


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole file as text. Invalid UTF-8 is a `DataError` naming the file and line;
    a missing file or a folder is the `OSError` naming the path."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 (byte {e.start}: "
                        f"{data[e.start:e.start + 1]!r})") from None
