"""``ganzoo.training.malloc``: the fixed glibc thresholds ``ganzoo train`` sets on CPU, seen
through glibc's own accounting in fresh processes (mallinfo2: bytes in mmapped blocks)."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

import _train_helpers as helpers

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"),
    reason="glibc >= 2.33 (mallinfo2) only")

# Allocates 16 MiB with malloc and prints how many bytes of it glibc mapped separately:
# all of it with the defaults (128 KiB mmap threshold in a fresh process), none once the
# threshold is fixed at 32 MiB.
PROBE = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                             "usmblks", "fsmblks", "uordblks", "fordblks",
                                             "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
if sys.argv[1] == "steady":
    from ganzoo.training.malloc import steady_malloc
    print(steady_malloc())
before = libc.mallinfo2().hblkhd
block = libc.malloc(16 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def _probe(mode: str, **env) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          env={**{k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"},
                               **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_steady_malloc_keeps_blocks_below_32_mib_on_the_heap():
    assert int(_probe("default")[-1]) >= 16 << 20  # the probe sees an mmapped block
    applied, mapped = _probe("steady")
    assert applied == "True" and int(mapped) == 0


def test_the_users_glibc_tunables_win():
    applied, mapped = _probe("steady", GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert applied == "False" and int(mapped) >= 16 << 20


def test_ganzoo_train_sets_it_for_a_cpu_run(tmp_path, monkeypatch):
    from ganzoo.train import main
    from ganzoo.training import malloc

    calls = []
    monkeypatch.setattr(malloc, "steady_malloc", lambda: calls.append(1) or True)
    unregister = helpers.register_toys()
    try:
        assert main(["--model", "toytrain_gan", "--dataset", "toytrain_images", "-o",
                     str(tmp_path / "run"), "--no-progress", "--batch-size", "8",
                     "--max-steps", "1", "--cpu"]) == 0
    finally:
        unregister()
    assert calls == [1]
