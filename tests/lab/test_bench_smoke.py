"""A small smoke run of every `dpunet bench` command in a lab of its own: each produces
its JSON and plot, and leaves the lab as it found it. (Full runs: docs/performance.md.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dpunet.bench import cpu
from dpunet.bench.controller import FLOOR_ROUTER_PORT, FLOOR_SWITCH, NODE_PREFIX, STANDIN
from dpunet.lab import daemons, services
from dpunet.lab.lab import Lab, down
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "bnst"


def bench(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.bench_cmds", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    plan = LabPlan(LabSpec(name=LAB, vfs=3))
    try:
        Lab(plan).up(lambda title, elapsed: None)
        yield plan
    finally:
        down(LAB)


def free_vf_count(plan: LabPlan) -> int:
    return sum(1 for vf in Lab(plan).status()["nics"][0]["vfs"] if vf["netdev"] and vf["index"])


def test_pod_setup_and_podman(lab: LabPlan, tmp_path: Path) -> None:
    before = free_vf_count(lab)
    doc = bench(
        "pod-setup", "--lab", LAB, "--pods", "1", "--rounds", "1", "--no-burst",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    (run,) = doc["results"]["runs"]
    assert run["dpunet"]["ready_ms"]["n"] == 1 and run["dpunet"]["errors"] == []
    assert run["floor"]["ready_ms"]["n"] == 1 and run["floor"]["errors"] == []
    assert run["floor_sb"]["ready_ms"]["n"] == 1 and run["floor_sb"]["errors"] == []
    assert "wait_sb_up" in run["floor_sb"]["steps_mean_ms"]
    assert run["ratio_median_floor_sb"] > 0
    assert run["ratio_median"] > 0
    assert run["phases_mean_s"]["host_agent"]["ADD:claim"]["count"] == 1
    assert run["phases_mean_s"]["controller"]["wait_up"]["count"] == 1
    assert set(run["floor"]["steps_mean_ms"]) >= {"nb_lsp_txn", "wait_nb_up", "host_device_add"}
    assert doc["machine"]["cpus"] >= 1
    assert (tmp_path / "pod-setup.json").exists() and (tmp_path / "pod-setup.png").exists()
    podman = bench("podman", "--lab", LAB, "--repeat", "1", "--out-dir", str(tmp_path))
    assert (
        podman["results"]["dpunet_ms"]["n"] == 1 and podman["results"]["host_device_ms"]["n"] == 1
    )
    assert free_vf_count(lab) == before  # every VF back, the emulated NIC still knows them


def containerds(plan: LabPlan) -> list[str]:
    """The lab's containerd directories, and the command lines of its containerd and
    shim processes."""
    found = [str(d) for d in plan.run_dir.glob("*/containerd*")]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if "containerd" in Path(argv[0].decode()).name and any(
            str(plan.run_dir).encode() in arg for arg in argv
        ):
            found.append(b" ".join(argv).decode())
    return found


def cgroups(plan: LabPlan) -> list[Path]:
    """The sandbox cgroups of the lab's containerds (a leftover sandbox keeps its own),
    in every cgroup hierarchy."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    hierarchies = [Path(m[1]) for m in mounts if m[2] in ("cgroup", "cgroup2")]
    return [d for h in hierarchies for d in h.glob(f"dpunet-lab-{plan.name}-*")]


def test_cri_leaves_nothing_behind(lab: LabPlan, tmp_path: Path) -> None:
    before = free_vf_count(lab)
    assert containerds(lab) == []
    doc = bench("cri", "--lab", LAB, "--repeat", "1", "--out-dir", str(tmp_path))
    results = doc["results"]
    assert results["dpunet_ms"]["n"] == 1 and results["host_device_ms"]["n"] == 1
    assert results["containerd"].startswith("containerd ")
    assert results["ratio_median"] > 0
    assert (tmp_path / "cri.json").exists() and (tmp_path / "cri.png").exists()
    assert free_vf_count(lab) == before  # every VF back, the emulated NIC still knows them
    assert containerds(lab) == [] and cgroups(lab) == []  # it started both: both stopped
    host1 = lab.node_dir(lab.node("host1")) / "state" / "sandboxes"
    assert list(host1.glob("*.json")) == []
    with services.admin_client(lab) as client:
        assert client.list_ports(node="host1") == []


def test_controller_leaves_nothing_behind(lab: LabPlan, tmp_path: Path) -> None:
    doc = bench(
        "controller", "--lab", LAB, "--ports", "10", "--sample", "5", "--concurrency", "2",
        "--out-dir", str(tmp_path),
    )  # fmt: skip
    (level,) = doc["results"]["levels"]
    assert level["existing_ports"] == 10 and level["put_ms"]["n"] == 5
    assert level["floor"]["up_ms"]["n"] == 5
    assert level["floor_sb"]["up_ms"]["n"] == 5 and level["ratio_rate_vs_floor_sb"] > 0
    assert level["nb_transactions"] >= 1 and level["nb_writes_per_transaction"] >= 1
    # each timed phase began once OVN had caught up with the one before
    assert set(level["settle_s"]) == {"put", "floor", "floor_sb"}
    # where each phase's CPU went: every lab daemon is metered, and those that used any
    # are listed (the kernel counts in 10 ms ticks: in 5 ports a daemon may show none)
    metered = cpu.snapshot(lab).processes
    assert {"cp/dpunet-controller", "cp/ovn-northd", "dpu1/ovn-controller", "bench"} <= set(metered)
    for usage in (level["cpu"], level["floor"]["cpu"]):
        assert usage["ms_per_port"] and set(usage["ms_per_port"]) <= set(metered)
        assert all(ms > 0 for ms in usage["ms_per_port"].values())
        assert usage["total_ms_per_port"] >= max(usage["ms_per_port"].values())
    with services.admin_client(lab) as client:
        assert not [n for n in client.list_nodes() if n.name.startswith(NODE_PREFIX)]
        assert not [p for p in client.list_ports() if p.namespace == "bench"]
    assert STANDIN not in daemons.sbctl(lab, "--bare", "--columns=name", "list", "Chassis")
    # the floor's switch and its port on ovn_cluster_router are gone too
    routers = daemons.nbctl(lab, "--bare", "--columns=name", "list", "Logical_Router_Port")
    switches = daemons.nbctl(lab, "--bare", "--columns=name", "list", "Logical_Switch")
    assert FLOOR_ROUTER_PORT not in routers and FLOOR_SWITCH not in switches


def test_memory_and_shim(lab: LabPlan, tmp_path: Path) -> None:
    doc = bench("memory", "--lab", LAB, "--cycles", "3", "--every", "2", "--out-dir", str(tmp_path))
    results = doc["results"]
    assert results["pods"] == 2 and results["errors"] == []
    cycles = results["cycles"]
    assert [s["cycle"] for s in cycles["samples"]] == [0, 2, 3] and cycles["errors"] == []
    assert cycles["samples"][-1]["rss_mb"]["dpu1/dpunet-dpu"] > 0
    assert cycles["growth_vs_idle_mb"]["dpu1/dpunet-dpu"] is not None
    assert results["idle"]["dpu1/dpunet-dpu"]["rss_mb"] > 0
    assert results["all_vfs_in_use"]["host1/dpunet-host"]["rss_mb"] > 0
    shim = bench("shim", "--repeat", "3", "--out-dir", str(tmp_path))
    assert shim["results"]["summaries_ms"]["dpunet-cni VERSION"]["n"] == 3
    assert (tmp_path / "shim.png").exists()


def test_policy_leaves_nothing_behind(lab: LabPlan, tmp_path: Path) -> None:
    doc = bench(
        "policy", "--lab", LAB, "--pods", "20", "--policies", "4", "--sample", "2",
        "--concurrency", "2", "--out-dir", str(tmp_path),
    )  # fmt: skip
    results = doc["results"]
    assert results["objects"]["port_groups"] >= 4 and results["objects"]["acls"] >= 8
    apply, floor = results["apply"], results["floor_apply"]
    assert 0 < apply["api_s"] <= apply["northd_s"] <= apply["enforced_s"]
    assert 0 < floor["commit_s"] <= floor["enforced_s"]
    for case in ("pod_add_no_policy", "pod_add_with_policies", "floor_pod_add"):
        assert results[case]["enforced_ms"]["n"] == 2, case
    assert results["chassis"] and STANDIN not in results["chassis"]
    assert (tmp_path / "policy.json").exists() and (tmp_path / "policy.png").exists()
    with services.admin_client(lab) as client:
        assert client.list_policies() == []
        assert not [n for n in client.list_nodes() if n.name.startswith(NODE_PREFIX)]
    for table in ("Port_Group", "Address_Set", "ACL"):
        assert daemons.nbctl(lab, "--bare", "--columns=_uuid", "list", table).strip() == "", table
