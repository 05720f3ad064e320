"""Reading text files with errors that name the file (and, for bad UTF-8, the line)."""
from __future__ import annotations

import errno

import tensorflow as tf

from bert_tf.errors import DataError


def read_bytes(path: str) -> bytes:
    """The whole file (local, or any file system TensorFlow reads: `gs://`, ...). A
    missing file or a folder is the `OSError` naming the path."""
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
