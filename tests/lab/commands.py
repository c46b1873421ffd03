"""Running a command in lab tests: fail the test with its output when it fails."""

from __future__ import annotations

import subprocess


def cli(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `argv`; AssertionError with its stdout and stderr unless it exits 0."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc
