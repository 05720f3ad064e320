"""Reading text files with errors that name the file (and, for a bad line, the line).

Lines are split on `\\n` only (a `\\r` before it is dropped): `str.splitlines` would
also split on U+2028, `\\x0b`, `\\x0c`, `\\x1c`-`\\x1e` and `\\x85`, and a file of N lines
would give more than N texts. `iter_lines` is the one line splitter of bert-tf
(`embed`, `predict`, `prepare-text`, `create-pretraining-data`, Beam's readers): it
reads a file, a pipe or stdin as a stream, holding at most `MAX_LINE_BYTES` of a line.
"""
from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys

import tensorflow as tf

from bert_tf.errors import DataError

# The longest line read (a line is one text, or a paragraph of a corpus): longer lines
# are refused rather than held, so a file with no line ends (`/dev/zero` through a
# pipe, a binary file) cannot fill the memory.
MAX_LINE_BYTES = 1 << 20
_CHUNK = 1 << 16
_BOM = b"\xef\xbb\xbf"


class LineError(DataError):
    """One line that is not a text: too long, binary (a NUL byte) or not UTF-8. The
    message names the fault; callers add the file and line."""


def open_binary(path: str):
    """A binary file object for `path`: a local file or pipe (read as a stream), `-`
    for stdin, or any file system TensorFlow reads (`gs://`, ...). A device (`/dev/zero`,
    `/dev/urandom`) or a socket is a `DataError`; a missing file or a folder is the
    `OSError` naming the path."""
    if path == "-":
        return _Unclosed(sys.stdin.buffer)
    if "://" in path:
        return io.BytesIO(_read_gfile(path))
    check_readable_kind(path)
    return open(path, "rb")


def check_readable_kind(path: str) -> None:
    """A local `path` is a regular file or a pipe (a FIFO, `<(command)`): not a folder,
    a device or a socket."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
        raise DataError(f"{path}: a device or socket, not a text file (give a file or a pipe)")


def iter_lines(f):
    """`(number, line)` for each line of the binary file object `f`: `line` is its
    bytes without the `\\n` (or `\\r\\n`) and, on line 1, without a UTF-8 byte-order
    mark; or None for a line longer than `MAX_LINE_BYTES`, given as soon as it is
    that long (a stream with no line end, such as `/dev/zero`, is read no further by
    a caller that stops there), its bytes skipped to its end, never held. Numbers are
    the file's physical lines, from 1; a final line without `\\n` counts, an empty
    file has none."""
    number, pending, skipping = 0, bytearray(), False
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            if pending and not skipping:
                yield number + 1, _line(pending, number + 1)
            return
        pending += chunk
        start, end = 0, pending.find(b"\n")
        while end >= 0:
            if skipping:   # the end of the line given as too long
                skipping = False
            else:
                number += 1
                yield number, _line(pending[start:end], number)
            start, end = end + 1, pending.find(b"\n", end + 1)
        del pending[:start]
        if len(pending) > MAX_LINE_BYTES + 1 and not skipping:   # room for a "\r"
            number += 1
            yield number, None
            skipping = True
        if skipping:
            pending.clear()


def _line(raw: bytearray, number: int) -> bytes | None:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    return None if len(raw) > MAX_LINE_BYTES else bytes(raw)


def decode_line(raw: bytes | None) -> str:
    """The text of a line from `iter_lines`; a `LineError` for a line that is too long,
    holds a NUL byte (binary data, or UTF-16 text) or is not valid UTF-8."""
    if raw is None:
        raise LineError(f"longer than {MAX_LINE_BYTES} bytes (binary data, or no line ends?)")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise LineError(f"a NUL byte (byte {nul}): binary data, not text (UTF-16 text? "
                        "save it as UTF-8)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineError(f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") \
            from None


def read_lines(path: str) -> list[str]:
    """The lines of a text file, a pipe or stdin (`-`), split on `\\n` only (see
    `iter_lines`). A bad line (`decode_line`) is a `DataError` naming the file and line."""
    name = "<stdin>" if path == "-" else path
    lines = []
    with open_binary(path) as f:
        for number, raw in iter_lines(f):
            try:
                lines.append(decode_line(raw))
            except LineError as e:
                raise DataError(f"{name}, line {number}: {e}") from None
    return lines


def read_bytes(path: str) -> bytes:
    """The whole file (local, a pipe, or any file system TensorFlow reads: `gs://`, ...).
    A missing file or a folder is the `OSError` naming the path, a device a `DataError`."""
    if "://" in path:
        return _read_gfile(path)
    with open_binary(path) as f:
        return f.read()


def _read_gfile(path: str) -> bytes:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.NotFoundError:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None
    except tf.errors.OpError as e:
        if tf.io.gfile.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path) from None
        raise OSError(errno.EIO, e.message.strip().splitlines()[0], path) from None


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The whole file as text. Invalid UTF-8 is a `DataError` naming the file and line."""
    data = read_bytes(path)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}, line {line}: not valid UTF-8 (byte {e.start}: "
                        f"{data[e.start:e.start + 1]!r})") from None


def read_json(path: str, error=DataError):
    """The JSON value in the file at `path`. Invalid JSON, or JSON nested too deeply
    for Python's parser (a `RecursionError`), is an `error` naming the file (and the
    line); invalid UTF-8 a `DataError` naming the line.

    >>> import json
    >>> _ = open("deep.json", "w").write("[" * 100000 + "]" * 100000)
    >>> read_json("deep.json")
    Traceback (most recent call last):
    bert_tf.errors.DataError: deep.json: JSON nested too deeply to read
    """
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: "
                    f"{e.msg})") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to read") from None


class _Unclosed:
    """A file object that a `with` block leaves open (stdin)."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        return False
