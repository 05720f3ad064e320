"""What this machine's processors can do, for the paths whose speed depends on it.

`cpu_flags()` reads the vector and matrix units that decide which kernels are fast
(lscpu's flags: AVX2, AVX-512, AMX; on ARM the `Features` line); `bfloat16_support()`
says whether bfloat16 arithmetic runs natively here, and why (or why not):

    >>> from bert_tf.hardware import bfloat16_support
    >>> native, reason = bfloat16_support()
    >>> isinstance(native, bool), reason.startswith(("CPU", "GPU"))
    (True, True)
"""
from __future__ import annotations

import os
import platform

# Instructions that compute in bfloat16 (x86: AVX-512 BF16 and AMX; ARM: the BF16
# extension). Without them a bfloat16 matmul is emulated in float32 plus conversions,
# slower than plain float32.
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# The flags worth recording beside a timing.
_RECORDED = ("avx", "amx", "fma", "bf16", "asimd", "sve", "i8mm")


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    for line in _cpuinfo():
        if line.startswith(("model name", "Model name")):
            return line.split(":", 1)[1].strip()
    return name


def cpu_flags(all_flags: bool = False) -> list[str]:
    """The CPU's feature flags from /proc/cpuinfo (sorted): by default those that decide
    which kernels are fast (AVX*, AMX*, FMA, BF16, ARM's ASIMD/SVE/I8MM); [] where
    unknown (not Linux)."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            flags = line.split(":", 1)[1].split()
            return sorted(f for f in flags if all_flags or any(k in f for k in _RECORDED))
    return []


def _cpuinfo() -> list[str]:
    if not os.path.exists("/proc/cpuinfo"):
        return []
    with open("/proc/cpuinfo") as f:
        return f.read().splitlines()


def bfloat16_support() -> tuple[bool, str]:
    """(True, why) where bfloat16 computes natively on the device TensorFlow runs on
    (a GPU of compute capability 8.0 or more; else the CPU's AMX / AVX-512 BF16 / ARM
    BF16), else (False, why). `why` names the device and the flags it found."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = details.get("compute_capability") or (0, 0)
        name = details.get("device_name", gpus[0].name)
        return (tuple(capability) >= (8, 0),
                f"GPU {name}, compute capability {'.'.join(map(str, capability))} "
                f"(bfloat16 natively from 8.0)")
    flags = set(cpu_flags(all_flags=True))
    native = sorted(flags & set(BF16_FLAGS))
    if native and os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return False, (f"CPU {cpu_name()} has {', '.join(native)}, but TF_ENABLE_ONEDNN_OPTS=0 "
                       "turns off the oneDNN kernels that use them: TensorFlow's own "
                       "bfloat16 kernels run slower than float32")
    if native:
        return True, f"CPU {cpu_name()} has {', '.join(native)}"
    return False, (f"CPU {cpu_name()} has no bfloat16 instructions (none of "
                   f"{', '.join(BF16_FLAGS)}; it has {' '.join(cpu_flags()) or 'no flags read'}): "
                   "TensorFlow converts to float32 and back around each op, so bfloat16 runs "
                   "slower than float32 here")
