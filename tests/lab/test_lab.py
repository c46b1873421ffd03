"""The emulated lab end to end: `dpunet lab up/status/exec/check/down` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import dpunet

from dpunet.lab.lab import Lab, Step, down
from dpunet.lab.runner import LabError, list_netns, read_pid
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "labt"


def lab_exec(node: str, *cmd: str, name: str = LAB) -> str:
    return dpunet("lab", "exec", "--name", name, node, "--", *cmd).stdout


def leftovers(name: str) -> list[str]:
    """Everything of lab `name` still on the machine."""
    found = [f"netns {ns}" for ns in list_netns() if ns.startswith(f"{name}-")]
    run_dir = f"/run/dpunet/lab/{name}"
    if Path(run_dir).exists():
        found.append(run_dir)
    if run_dir in Path("/proc/mounts").read_text():
        found.append("mount under " + run_dir)
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmdline = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if run_dir in cmdline:
            found.append(f"process {pid_dir.name}: {cmdline[:80]}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [
        f"root-netns link {line.split(':')[1].strip()}"
        for line in links.splitlines()
        if f"{name}-" in line
    ]
    return found


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    dpunet("lab", "up", "--name", LAB)
    yield LabPlan(LabSpec(name=LAB))
    down(LAB)


def test_every_ovn_controller_registered_a_geneve_chassis(lab: LabPlan) -> None:
    encaps = lab_exec(
        "cp", "ovn-sbctl", "--format=json", "--columns=chassis_name,type,ip", "list", "Encap"
    )
    rows = {(r[0], r[1], r[2]) for r in json.loads(encaps)["data"]}
    assert ("cp", "geneve", "192.0.2.10") in rows
    assert ("dpu1", "geneve", "192.0.2.201") in rows


def test_dpu_has_the_seed_bridges(lab: LabPlan) -> None:
    ports = lab_exec("dpu1", "ovs-vsctl", "list-ports", "brp0").split()
    # The seed's two ports, plus the patch port of host1's gateway (localnet on physnet:brp0).
    assert sorted(ports) == ["p0", "patch-ext_host1_physnet-to-br-int", "pf0hpf"]
    assert lab_exec("dpu1", "ovs-vsctl", "get", "Interface", "brp0", "type").strip() == "internal"
    assert "br-int" in lab_exec("dpu1", "ovs-vsctl", "list-br").split()
    assert (
        lab_exec("dpu1", "ovs-vsctl", "get", "Open_vSwitch", ".", "other_config:hw-offload").strip()
        == '"true"'
    )
    ids = lab_exec("dpu1", "ovs-vsctl", "get", "Open_vSwitch", ".", "external_ids")
    for expected in (
        "host-k8s-nodename=host1",
        "ovn-gw-interface=p0",
        'ovn-gw-nexthop="192.0.2.1"',
    ):
        assert expected in ids
    # The DPU's underlay address moved from p0 to brp0, as in the seed.
    addrs = lab_exec("dpu1", "ip", "-4", "-o", "addr", "show")
    assert any(
        line.split()[1] == "brp0" and "192.0.2.201/24" in line for line in addrs.splitlines()
    )
    assert not any(line.split()[1] == "p0" for line in addrs.splitlines())


def test_check_passes_underlay_and_geneve(lab: LabPlan) -> None:
    proc = dpunet("lab", "check", "--name", LAB, "-o", "json")
    results = json.loads(proc.stdout)
    by_pair = {
        (r["check"].split()[0], r["source"].split()[0], r["target"].split()[0]): r["ok"]
        for r in results
    }
    assert by_pair[("underlay", "dpu1", "192.0.2.1")] is True
    assert by_pair[("underlay", "host1", "192.0.2.1")] is True
    assert by_pair[("geneve", "cp", "dpu1")] is True
    assert all(by_pair.values())
    # The throwaway OVN ports are gone again.
    assert "selftest" not in lab_exec("cp", "ovn-nbctl", "show")
    assert not [ns for ns in list_netns() if ns.startswith(f"{LAB}-probe")]


def test_status_json_lists_nodes_processes_and_vfs(lab: LabPlan) -> None:
    data = json.loads(dpunet("lab", "status", "--name", LAB, "-o", "json").stdout)
    assert data["healthy"] is True
    names = {n["name"] for n in data["nodes"]}
    assert names == {"wire", "ext", "cp", "host1", "dpu1"}
    cp = next(n for n in data["nodes"] if n["name"] == "cp")
    assert {p["name"] for p in cp["processes"]} >= {
        "ovsdb-server",
        "ovs-vswitchd",
        "ovn-northd",
        "ovn-controller",
    }
    nic = data["nics"][0]
    assert [vf["pci"] for vf in nic["vfs"]] == [
        "0000:02:00.3",
        "0000:02:00.4",
        "0000:02:00.5",
        "0000:02:00.6",
    ]
    # VF0 is the management port on both sides (renamed by dpunet-host and dpunet-dpu).
    assert nic["vfs"][0]["netdev"] == "ovn-k8s-mp0"
    assert [vf["representor"] for vf in nic["vfs"]] == ["ovn-k8s-mp0", "pf0vf1", "pf0vf2", "pf0vf3"]
    host1 = next(n for n in data["nodes"] if n["name"] == "host1")
    assert host1["processes"] == [
        {"name": "dpunet-host", "pid": host1["processes"][0]["pid"], "alive": True}
    ]


def test_exec_runs_inside_the_node_with_its_environment(lab: LabPlan) -> None:
    assert (
        lab_exec("host1", "sh", "-c", "echo $DPUNET_SYSFS_ROOT").strip()
        == "/run/dpunet/lab/labt/sys/host1"
    )
    assert "enp2s0f0np0" in lab_exec("host1", "ip", "-o", "link")
    proc = dpunet("lab", "exec", "--name", LAB, "nosuchnode", "--", "true", check=False)
    assert proc.returncode != 0 and "nosuchnode" in proc.stderr and "Traceback" not in proc.stderr


def test_up_on_an_existing_lab_says_what_to_do(lab: LabPlan) -> None:
    proc = dpunet("lab", "up", "--name", LAB, check=False)
    assert proc.returncode != 0
    assert "already exists" in proc.stderr and "dpunet lab down --name labt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        json.loads(dpunet("lab", "status", "--name", LAB, "-o", "json").stdout)["healthy"] is True
    )


def test_a_second_lab_coexists_and_goes_away_cleanly(lab: LabPlan) -> None:
    down("ci2")
    try:
        dpunet("lab", "up", "--name", "ci2", "--vfs", "2")
        data = json.loads(dpunet("lab", "status", "--name", "ci2", "-o", "json").stdout)
        assert data["healthy"] is True and len(data["nics"][0]["vfs"]) == 2
        assert (
            json.loads(dpunet("lab", "status", "--name", LAB, "-o", "json").stdout)["healthy"]
            is True
        )
    finally:
        dpunet("lab", "down", "--name", "ci2")
    assert leftovers("ci2") == []


def test_killed_daemon_shows_in_status(lab: LabPlan) -> None:
    pidfile = lab.ovn_dir(lab.node("dpu1")) / "ovn-controller.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    proc = dpunet("lab", "status", "--name", LAB, "-o", "json", check=False)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    dpu = next(n for n in data["nodes"] if n["name"] == "dpu1")
    controller = next(p for p in dpu["processes"] if p["name"] == "ovn-controller")
    assert controller == {"name": "ovn-controller", "pid": pid, "alive": False}
    assert data["healthy"] is False
    table = dpunet("lab", "status", "--name", LAB, check=False).stdout
    assert "dead" in table and "degraded" in table


class _FailingLab(Lab):
    """A lab whose bring-up fails after the OVS daemons started."""

    def steps(self) -> list[Step]:
        real = super().steps()
        cut = next(i for i, s in enumerate(real) if s.title.startswith("control plane bridge"))

        def boom() -> None:
            raise LabError("injected failure")

        return [*real[:cut], Step("injected failure", boom)]


def test_half_failed_up_cleans_up_after_itself() -> None:
    plan = LabPlan(LabSpec(name="cifail"))
    down(plan.name)
    with pytest.raises(LabError, match="injected failure"):
        _FailingLab(plan).up(lambda title, elapsed: None)
    assert leftovers(plan.name) == []


def test_down_leaves_nothing_behind(lab: LabPlan) -> None:
    dpunet("lab", "down", "--name", LAB)
    assert leftovers(LAB) == []
    again = dpunet("lab", "down", "--name", LAB)
    assert "nothing to remove" in again.stdout
