"""Probes: text (see tests/probes/__init__.py for the form of a case).

Text inputs that are not text: devices (`/dev/zero` read as empty and wrote "0
vectors" before 2026-12-07, commit 1691735; Beam would read it forever), binary data,
a line past `MAX_LINE_BYTES`, stdin that is not UTF-8; and Beam output prefixes with
glob characters, which Beam's temporary files cannot be found by."""
import io
import sys


def _embed(fx, tmp, source, *extra):
    return ["embed", "--model", fx.model, source, "--output", str(tmp / "v.npy"), *extra]


def _embed_beam(fx, tmp, source, output=None):
    return ["embed", "--model", fx.model, source, "--output", output or str(tmp / "v"),
            "--runner", "direct"]


def _predict(fx, tmp, source, output=None):
    return ["predict", "--export", fx.folder, source, "--output", output or str(tmp / "p")]


def _prepare(fx, tmp, source):
    return ["prepare-text", source, "--out", str(tmp / "c.txt")]


def _create(fx, tmp, source):
    return ["create-pretraining-data", "--input", source, "--vocab", fx.vocab, "--out",
            str(tmp / "r.tfrecord"), "--quiet"]


def _file(tmp, name, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


def _stdin(data: bytes) -> str:
    """`-`, with `data` on stdin (pytest puts its own stdin back before the next test)."""
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    return "-"


def _long_line():
    """Line 2 is 2 MiB, past `bert_tf.io.text.MAX_LINE_BYTES` (1 MiB)."""
    return b"a short line\n" + b"x" * (2 << 20) + b"\n"


PROBES = {}
for _name, _argv in (("embed", _embed), ("embed --runner", _embed_beam), ("predict", _predict),
                     ("prepare-text", _prepare), ("create-pretraining-data", _create)):
    for _device in ("/dev/zero", "/dev/urandom"):
        PROBES[f"text-{_name} {_device}"] = (
            lambda fx, tmp, argv=_argv, device=_device: argv(fx, tmp, device),
            (_device, "a device"))
for _name, _argv in (("embed", _embed), ("prepare-text", _prepare),
                     ("create-pretraining-data", _create)):
    PROBES[f"text-{_name} NUL bytes"] = (
        lambda fx, tmp, argv=_argv: argv(fx, tmp, _file(tmp, "utf16.txt",
                                                        "a line\n".encode("utf-16-le"))),
        ("utf16.txt, line 1", "NUL byte"))
    PROBES[f"text-{_name} long line"] = (
        lambda fx, tmp, argv=_argv: argv(fx, tmp, _file(tmp, "long.txt", _long_line())),
        ("long.txt, line 2", "longer than"))
PROBES.update({
    "text-embed stdin latin-1": (
        lambda fx, tmp: _embed(fx, tmp, _stdin(b"caf\xe9\nna\xefve\n")),
        ("<stdin>, line 1", "UTF-8", "xe9")),
    "text-embed stdin NUL bytes": (
        lambda fx, tmp: _embed(fx, tmp, _stdin(b"ok\nbinary\x00data\n")),
        ("<stdin>, line 2", "NUL byte")),
    "text-predict glob output": (
        lambda fx, tmp: _predict(fx, tmp, fx.text, str(tmp / "bp-[x]*")),
        ("bp-[x]*", "glob")),
    "text-embed --runner glob output": (
        lambda fx, tmp: _embed_beam(fx, tmp, fx.text, str(tmp / "v?")),
        ("v?", "glob")),
    "text-predict glob output folder": (
        lambda fx, tmp: _predict(fx, tmp, fx.text, str(tmp / "out[1]" / "p")),
        ("out[1]", "glob")),
})
