"""The last lines of a job: where each of its outputs went."""
from __future__ import annotations

import os

# What a name in a run dir is, where the name alone does not say.
KNOWN = {"logs": "TensorBoard logs"}


def print_outputs(outputs: dict[str, str | None]) -> None:
    """`outputs:`, then `  NAME  PATH` for each output that was written (a path that is
    None or absent is left out: an optional output the job did without)."""
    written = {name: path for name, path in outputs.items() if path and os.path.exists(path)}
    width = max(map(len, written), default=0)
    print("outputs:")
    for name, path in written.items():
        print(f"  {name:<{width}}  {path}")


def folder_outputs(folder: str, exports: dict[str, str] | None = None,
                   kind: str = "run dir") -> dict[str, str]:
    """A job's folder (`kind`: run, model or report dir) and each thing in it, hidden
    names left out; the export versions by name (`export/serving`) in place of the
    export folder."""
    outputs = {kind: folder}
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        if name == "export" and exports:
            outputs.update({f"export/{kind}": path for kind, path in exports.items()})
        else:
            outputs[KNOWN.get(name, name)] = os.path.join(folder, name)
    return outputs
