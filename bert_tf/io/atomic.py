"""Writing outputs so that nothing is lost on a fault: every file and folder is
written under a hidden temporary name beside its target and renamed into place when
complete. Temporary names are `.<target>.tmp-<pid>-<random>`, which no user path
has, and they end with the permissions the user's umask gives a new file or folder
(not `mkdtemp`'s 0700), so that a server running as another user can read them.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import sys
import tempfile

from bert_tf.errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Temporary names keep at most this many characters of their target's name, so that a
# target whose name is near the file system's limit (255 bytes) still has one.
TEMP_NAME_CHARS = 40


def _prefix(target: str) -> str:
    name = os.path.basename(os.path.normpath(target))[:TEMP_NAME_CHARS]
    return f".{name}.tmp-{os.getpid()}-"


class DiskFullError(OSError):
    """The disk (or the user's quota) is full: `filename` is the user's output path."""


def is_disk_full(error: BaseException) -> bool:
    """`error` is a writer's "the disk is full": an `OSError` ENOSPC or EDQUOT, numpy's
    short write ("51200 requested and 10208 written") or TensorFlow's
    `ResourceExhaustedError` (which its file writers raise for ENOSPC)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT) or \
            re.fullmatch(r"\d+ requested and \d+ written", str(error)) is not None
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.ResourceExhaustedError)


@contextlib.contextmanager
def disk_full_names(path: str, temps: dict[str, str] | None = None):
    """Within the block, a full disk (`is_disk_full`) raises `DiskFullError` naming the
    user's output: `temps[tmp]` for the temporary file or folder the error names,
    else `path`."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if not is_disk_full(e):
            raise
        named = path
        for tmp, target in (temps or {}).items():
            if tmp in f"{getattr(e, 'filename', '')} {e}":
                named = target
        raise DiskFullError(errno.ENOSPC, os.strerror(errno.ENOSPC), named) from e


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
        with disk_full_names(target, {tmp: target}):
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
        with disk_full_names(path, {tmp: path}), \
                open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
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
        with disk_full_names(paths[0], dict(zip(temps, paths))):
            yield temps
        for tmp, path in zip(temps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.remove(tmp)


@contextlib.contextmanager
def folder_lock(folder: str):
    """An exclusive lock on `folder` itself between processes on this machine, held for
    the block. It leaves no file behind (until 2026-12-07, commit 1691735, a `.lock`
    file in `folder` took the lock and stayed)."""
    os.makedirs(folder, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    limit = os.pathconf(parent, "PC_NAME_MAX")
    for name in os.path.relpath(path, parent).split(os.sep):
        if len(os.fsencode(name)) > limit:
            raise OutputError(f"{path}: the name is too long ({len(os.fsencode(name))} bytes; "
                              f"the file system allows {limit})")


# ---- outputs that are inputs, or each other ---------------------------------------------

def same_path(a: str, b: str) -> bool:
    """`a` and `b` are one file or folder: the same real path (`./X`, symlinks, `..`),
    or for two that exist, the same inode (hard links)."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def within(path: str, folder: str) -> bool:
    """`path` is `folder` or lies under it (real paths)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return same_path(path, folder) or real.startswith(top.rstrip(os.sep) + os.sep)


def _shard_of(path: str, prefix: str) -> bool:
    """`path` is one of the files an output prefix names: `PREFIX-SSSSS-of-NNNNN.*`
    or `PREFIX.errors-*` (Beam's sharded outputs)."""
    real, top = os.path.realpath(path), os.path.realpath(prefix)
    if os.path.dirname(real) != os.path.dirname(top):
        return False
    name = re.escape(os.path.basename(top))
    return re.fullmatch(rf"{name}(-\d{{5,}}-of-\d{{5,}}|\.errors-).*",
                        os.path.basename(real)) is not None


def check_distinct(outputs: list[tuple[str, str, str]],
                   inputs: list[tuple[str, str]] = ()) -> None:
    """Before any work: no output is another output or one of the inputs, and no
    input lies inside an output folder (which the command may replace whole).
    Paths are compared as the files they are (`same_path`), not as strings.

    Args:
        outputs: `(flag, path, kind)`: kind `"file"` (the path itself), `"folder"`
            (the path and everything under it) or `"prefix"` (the files
            `PATH-SSSSS-of-NNNNN.*` and `PATH.errors-*`).
        inputs: `(flag, path)` of every file or folder the command reads.

    Raises `OutputError` naming both flags and paths.
    """
    def hits(output, path):
        _, target, kind = output
        if kind == "folder":
            return within(path, target)
        if kind == "prefix":
            return _shard_of(path, target)
        return same_path(path, target)

    for i, output in enumerate(outputs):
        flag, target, kind = output
        for other in outputs[i + 1:]:
            if hits(output, other[1]) or hits(other, target):
                raise OutputError(f"{flag} {target} and {other[0]} {other[1]} are the same "
                                  "file; give each output its own name")
        for in_flag, path in inputs:
            if not hits(output, path):
                continue
            if kind == "prefix":
                raise OutputError(f"the input {in_flag} {path} is one of the files {flag} "
                                  f"{target} writes; choose another {flag}")
            if kind == "file" or same_path(path, target):
                raise OutputError(f"{flag} {target} is the input {in_flag} {path}; the output "
                                  f"would replace it: choose another {flag}")
            raise OutputError(f"the input {in_flag} {path} is inside {flag} {target}, which "
                              f"this command writes; choose another {flag} or move the input")


def check_own_folder(folder: str, marker: str, what: str, flag: str = "--out") -> None:
    """Before any work: `folder` is free, empty, or a `what` written before (it holds
    `marker`), so writing into it touches no one else's files. Raises `OutputError`
    naming the folder."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{flag} {folder} is a file, not a folder")
    if os.path.isdir(folder) and os.listdir(folder) and \
            not os.path.exists(os.path.join(folder, marker)):
        raise OutputError(f"{flag} {folder} exists and is not {what} (no {marker} in it); "
                          f"choose another {flag}")


def check_replaceable(folder: str, files: str, what: str) -> None:
    """Before `folder` is replaced (overwrite): it holds only the files `what` writes,
    the relative paths that the regular expression `files` matches (and temporary
    names of ours), so replacing it loses none of the user's files. Raises
    `OutputError` naming the first other file."""
    if not os.path.lexists(folder):
        return
    if os.path.islink(folder) or not os.path.isdir(folder):
        raise OutputError(f"{folder} is not a folder {what} wrote; --overwrite replaces only "
                          "those: move it away or choose another output")
    for root, dirs, names in os.walk(folder):
        for name in sorted(dirs + names):
            rel = os.path.relpath(os.path.join(root, name), folder)
            if not re.fullmatch(files, rel) and not temp_owner(name):
                raise OutputError(f"{os.path.join(folder, rel)} is not a file of {what}, and "
                                  f"--overwrite replaces {folder} only when it holds nothing "
                                  "else: move the file away or choose another output")
