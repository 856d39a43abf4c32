"""glibc heap controls: keep large CPU tensors on the heap instead of fresh mmap pages, and trim it on demand.

glibc serves blocks above its mmap threshold (128 KiB at start, adapting upwards only as mmapped blocks are freed)
with new mappings and returns freed heap tops to the OS past its trim threshold. A training step allocates and frees
tens of MB of activations, so until the thresholds adapt every step page-faults and zeroes that memory again:
measured on the 2-core CI machine (28x28, h=64, 5 blocks, batch 32), an eager CPU train step took 367 ms cold and
196 ms once the heap was reused. Raising both thresholds up front gives the steady state from the first step.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's cap on 64-bit
TRIM_THRESHOLD = 2**31 - 1  # int argument: the largest it takes (2 GiB)


def _glibc(name: str):
    """The glibc function ``name``, or None on other C libraries."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_heap() -> bool:
    """Raise glibc's mmap/trim thresholds; True when applied (False on other C libraries: nothing changes)."""
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok


def trim_heap() -> None:
    """Hand freed heap pages back to the OS now (glibc ``malloc_trim``), e.g. before measuring RSS growth."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
