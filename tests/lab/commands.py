"""Running a command in lab tests: fail the test with its output when it fails."""

from __future__ import annotations

import subprocess
import sys

DPUNET = [sys.executable, "-m", "dpunet.cli.main"]  # the CLI of the interpreter running the tests


def cli(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `argv`; AssertionError with its stdout and stderr unless it exits 0."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def dpunet(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `dpunet ARGS`; with `check`, as `cli` (the test fails unless it exits 0)."""
    if check:
        return cli([*DPUNET, *args], timeout)
    return subprocess.run([*DPUNET, *args], capture_output=True, text=True, timeout=timeout)
