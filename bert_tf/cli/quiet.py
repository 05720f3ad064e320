"""What TensorFlow prints at start-up, kept off the terminal unless `--verbose`.

Importing TensorFlow logs lines about the machine, not the job (no CUDA driver, oneDNN
is on, the CPU's instructions), some at level E ("failed call to cuInit") on machines
without a GPU. TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` when it is imported, so
`quiet_tensorflow` must run before the first TensorFlow import: the `bert-tf` command
calls it once its arguments are parsed, before the command's code is imported.
"""
from __future__ import annotations

import logging
import os


def quiet_tensorflow(verbose: bool) -> None:
    """Unless `verbose`: TensorFlow's C++ log lines off (`TF_CPP_MIN_LOG_LEVEL=3`, where the
    environment does not set it), and its Python loggers' (tensorflow, absl) below ERROR."""
    if verbose:
        from bert_tf import TF_LOG_LEVEL_FROM_USER
        if not TF_LOG_LEVEL_FROM_USER:  # TensorFlow's own default, not bert_tf's
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
