"""Shared fixtures of the lab tests (root, namespaces, real OVS/OVN)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from dpunet.lab.lab import down
from dpunet.lab.topology import LabPlan, LabSpec

SHARED_LAB = "shared"


@pytest.fixture(scope="session")
def shared_lab() -> Iterator[LabPlan]:
    """One default lab (cp, host1, dpu1, ext; 4 VFs) for every test module that only
    needs a running lab and leaves it as it found it."""
    down(SHARED_LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", SHARED_LAB],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"dpunet lab up failed:\n{proc.stdout}\n{proc.stderr}")
    yield LabPlan(LabSpec(name=SHARED_LAB))
    down(SHARED_LAB)
