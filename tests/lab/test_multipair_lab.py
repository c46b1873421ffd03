"""A lab of two host/DPU pairs (issue 17, kept small for CI; the full run is four pairs
of 16 VFs, docs/performance.md): `lab up` brings the pairs up side by side and records
each pair's time, `lab check` passes on every pair, and a burst over both pairs through
`dpunet bench pod-setup` gets every pod to its gateway, dpunet's and the floor's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dpunet.lab.lab import Lab, down, up_times
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "mpair"
VFS = 4  # VF0 is the management port: 3 pods per pair


def dpunet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[LabPlan, str]]:
    down(LAB)
    proc = dpunet("lab", "up", "--name", LAB, "--hosts", "2", "--vfs", str(VFS))
    try:
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        yield LabPlan(LabSpec(name=LAB, hosts=2, vfs=VFS)), proc.stdout
    finally:
        down(LAB)


def free_vfs(plan: LabPlan) -> dict[str, int]:
    return {
        nic["host"]: sum(1 for vf in nic["vfs"] if vf["netdev"] and vf["index"])
        for nic in Lab(plan).status()["nics"]
    }


def test_up_times_each_pair_and_check_passes_on_both(lab: tuple[LabPlan, str]) -> None:
    _, out = lab
    times = up_times(LAB)
    assert times is not None and set(times["pairs"]) == {"host1", "host2"}
    for pair in times["pairs"].values():
        assert pair["busy_s"] > 0
        assert 0 < pair["ready_s"] <= times["total_s"]
    steps = {s["title"]: s for s in times["steps"]}
    assert steps["dpunet-host on host2"]["pair"] == "host2"
    assert steps["OVN central (NB, SB, northd) on cp"]["pair"] is None
    assert "per pair, its own steps: host1" in out and "host2" in out
    check = dpunet("lab", "check", "--name", LAB, "-o", "json")
    assert check.returncode == 0, check.stdout + check.stderr
    rows = json.loads(check.stdout)
    geneve = {r["target"] for r in rows if r["check"] == "geneve"}
    assert geneve >= {"dpu1 (OVN port)", "dpu2 (OVN port)"}


def test_burst_over_both_pairs_reaches_every_gateway(
    lab: tuple[LabPlan, str], tmp_path: Path
) -> None:
    plan, _ = lab
    before = free_vfs(plan)
    assert before == {"host1": VFS - 1, "host2": VFS - 1}
    proc = subprocess.run(
        [
            sys.executable, "-m", "dpunet.cli.bench_cmds", "pod-setup", "--lab", LAB,
            "--pods", "1", "--rounds", "1", "--burst", "--out-dir", str(tmp_path), "-o", "json",
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    one, first_burst, everywhere = doc["results"]["runs"]
    assert "pairs" not in one and "pairs" not in first_burst  # the first pair's runs as before
    assert first_burst["pods"] == VFS - 1
    pods = 2 * (VFS - 1)
    assert everywhere["pairs"] == {"host1": VFS - 1, "host2": VFS - 1}
    assert everywhere["pods"] == everywhere["concurrency"] == pods
    for mode in ("dpunet", "floor", "floor_sb"):
        assert everywhere[mode]["errors"] == [], mode
        assert everywhere[mode]["ready_ms"]["n"] == pods, mode  # each pod answered its gateway
        assert everywhere[mode]["pods_per_s"] > 0
        for host in ("host1", "host2"):
            mine = everywhere["per_pair"][host][mode]
            assert mine["ready_ms"]["n"] == VFS - 1 and mine["errors"] == 0
            assert mine["ready_ms"]["p99"] >= mine["ready_ms"]["median"] > 0
    assert everywhere["ratio_p99"] > 0 and everywhere["ratio_median"] > 0
    # the phases count the ADDs of both pairs' host agents
    assert everywhere["phases_mean_s"]["host_agent"]["ADD:claim"]["count"] == pods
    assert set(doc["results"]["lab_up"]["pairs"]) == {"host1", "host2"}
    assert doc["params"]["hosts"] == 2
    assert (tmp_path / "pod-setup-pairs.png").exists() and not (tmp_path / "pod-setup.png").exists()
    assert free_vfs(plan) == before  # every VF of both pairs back
