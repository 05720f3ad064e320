"""Writing outputs so that nothing is lost on a fault: every file and folder is
written under a hidden temporary name beside its target and renamed into place when
complete. Temporary names are `.<target>.tmp-<pid>-<random>`, which no user path
has, and they end with the permissions the user's umask gives a new file or folder
(not `mkdtemp`'s 0700), so that a server running as another user can read them.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import re
import shutil
import tempfile

from bert_tf.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prefix(target: str) -> str:
    return f".{os.path.basename(os.path.normpath(target))}.tmp-{os.getpid()}-"


def make_temp_dir(target: str) -> str:
    """A hidden empty folder beside `target`, with a new folder's usual permissions."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_prefix(target), dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


@contextlib.contextmanager
def temporary_dir(target: str):
    """Yields `make_temp_dir(target)`; removes it unless it was renamed away."""
    tmp = make_temp_dir(target)
    try:
        yield tmp
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: str, dst: str) -> None:
    """Renames `src` to `dst`, replacing an existing `dst` only once `src` is complete."""
    if os.path.exists(dst):
        old = make_temp_dir(dst)
        os.rmdir(old)
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(src, dst)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", encoding: str | None = "utf-8"):
    """`open(path, mode)` on a hidden temporary file, renamed to `path` when the block
    ends without error (else removed): `path` is either its old self or complete."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), dir=parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_paths(paths: list[str]):
    """Yields a hidden temporary path for each of `paths` (for writers that open files
    themselves, such as `tf.io.TFRecordWriter`); all are renamed into place when the
    block ends without error, else removed."""
    temps = []
    try:
        for path in paths:
            parent = os.path.dirname(os.path.abspath(path))
            os.makedirs(parent, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_prefix(path), dir=parent)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
            temps.append(tmp)
        yield temps
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


@contextlib.contextmanager
def folder_lock(folder: str):
    """An exclusive lock on `folder` (a hidden `.lock` file in it) between processes on
    this machine, held for the block."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TEMP_NAME = re.compile(r"\.(.+)\.tmp-(\d+)-\w+")


def temp_owner(name: str) -> tuple[str, int] | None:
    """(target name, pid) of a temporary name made here, else None."""
    match = TEMP_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None


def remove_stale_temps(folder: str) -> list[str]:
    """Removes the temporary folders and files in `folder` left by writers that were
    killed: those whose process (the pid in the name) no longer runs on this machine.
    Returns what it removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.tmp-*")):
        owner = temp_owner(os.path.basename(path))
        if owner and not alive(owner[1]):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return removed


def check_output(path: str, overwrite: bool = False, kind: str = "file") -> None:
    """Before any work: `path` can be written. Its folder is (or can be made) writable,
    and `path` is free, or (with `overwrite`) a `kind` ("file" or "folder") we may
    replace. Raises `OutputError` naming the path."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        if kind == "file" and os.path.isdir(path):
            raise OutputError(f"{path} is a folder; the output is a file")
        if kind == "folder" and not os.path.isdir(path):
            raise OutputError(f"{path} is a file; the output is a folder")
        if not overwrite:
            raise OutputError(f"{path} exists; pass overwrite (--overwrite) to replace it")
    check_parent_writable(path)


def check_parent_writable(path: str) -> None:
    """The nearest existing folder above `path` is a folder we may write in (the
    missing ones below it can then be made). Raises `OutputError` naming both."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"{parent} is a file, so {path} cannot be written")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent} is not writable, so {path} cannot be written")
