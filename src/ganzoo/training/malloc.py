"""Fixed glibc malloc thresholds for CPU training processes.

On CPU every tensor comes from the C library's ``malloc``. With glibc's defaults a large freed
block is handed back to the operating system (``munmap``, or a trim of the heap top) and mapped
again at the next step, so each step pays page faults, and how many depends on the process's
allocation history (glibc raises its mmap threshold as it sees blocks freed). Fresh ``ganzoo
train`` processes ran faster with the thresholds below than with glibc's defaults (figures:
docs/training.md, "Host memory on CPU").

The values are those of a ``GLIBC_TUNABLES`` setting (``mmap_threshold``, ``trim_threshold``,
``top_pad``), applied in-process with ``mallopt(3)`` because tunables are read only at process
start. A fixed mmap threshold also turns off glibc's dynamic adjustment of it. Freed memory up
to ``trim_threshold`` stays with the process for reuse instead of going back to the system.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameter numbers, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {
    _M_MMAP_THRESHOLD: 32 << 20,  # glibc's upper bound on 64-bit; larger blocks still mmap
    _M_TRIM_THRESHOLD: 1 << 30,
    _M_TOP_PAD: 256 << 20,
}


def steady_malloc() -> bool:
    """Fix glibc's malloc thresholds for this process; True if they were set.

    Does nothing off Linux, without glibc's ``mallopt``, or when ``GLIBC_TUNABLES`` is set
    (the user chose the allocator's settings). Process-wide and not undone: for processes that
    are a training run, as ``ganzoo train`` is on CPU.
    """
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Every call is made; glibc returns 1 for each value it accepted.
    return all([mallopt(param, value) == 1 for param, value in SETTINGS.items()])
