"""The DPU daemon's glibc heap settings (this test machine runs glibc)."""

from __future__ import annotations

import subprocess
import sys


def test_arena_limit_and_trim_apply_on_glibc() -> None:
    # A fresh interpreter: the arena limit is process-wide.
    code = (
        "from dpunet.dpu import heap\n"
        "assert heap.limit_arenas(1) is True\n"
        # holes of free pages between blocks still in use: only a trim hands them back
        "blocks = [bytearray(100_000) for _ in range(300)]\n"
        "del blocks[::2]\n"
        "print(heap.trim())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
