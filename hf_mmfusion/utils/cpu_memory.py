"""Keep large freed CPU blocks inside the process (glibc only).

glibc serves an allocation above its mmap threshold (at most 32 MiB, however it adapts) with a fresh
``mmap`` and returns it to the kernel on free, so every training step faults in and zeroes its large
tensors again. SSU's graph attention allocates per-edge tensors of hundreds of MiB at batch 128; on two
cores those page faults cost more than the arithmetic (``benchmarks/ssu_graphs.py`` measures both).
Raising the mmap and trim thresholds keeps such blocks for reuse, the effect PyTorch's CPU tuning notes
obtain with jemalloc or tcmalloc. The price: the process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_SWITCH = "HF_MMFUSION_RETAIN_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Make glibc keep freed blocks up to ``threshold_bytes`` in the process; ``True`` if it took effect.

    A no-op returning ``False`` off Linux, under another C library, or when the environment variable
    ``HF_MMFUSION_RETAIN_FREED_MEMORY`` is ``0``.
    """
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    value = int(min(threshold_bytes, 2**31 - 1))
    return bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))


ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def drop_kernel_cache() -> None:
    """Keep no oneDNN primitives between calls (unless ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is set already).

    oneDNN, behind PyTorch's CPU convolutions, caches a compiled primitive per input shape (up to 1,024). A
    batch padded to its longest sequence has a shape of its own, so the cache grows with the number of
    batches: `predict` on 800 MOSEI-shaped records peaked 5-8% higher than on 200 with it, 1% without
    (0.64-0.65 GB against 0.59 GB), while a CLCR training step of 16 such rows took 1.24 s without against
    1.20 s with it (both runs side by side on two shared cores). Read when oneDNN first runs, so this is
    called before any model does."""
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, "0")
