"""DPU reboot recovery (lab `dpurb`): with three pods running (two on host1's VFs, one on
cp), `lab reboot dpu1` kills every DPU process, resets the NIC function (representors back
under their original names, down), loses its kernel state (brp0 and its address gone),
the run directories (and, in the second test, OVS's conf.db) and boots the DPU again: the
boot unit `lab up` installed with `dpu setup --install-unit` runs again (its ExecStart,
the lab having no systemd) and provisions brp0 and its address with no change by hand.
The pods get their network back without being recreated: same sandboxes, addresses and
VFs in the same namespaces; nothing leaks on the DPU, in OVN or at the controller; the DPU
lease is renewed by the new agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_until

from dpunet.lab import pods, services
from dpunet.lab.checks import CheckResult
from dpunet.lab.daemons import sbctl, vsctl
from dpunet.lab.lab import Lab, down
from dpunet.lab.runner import read_pid, run
from dpunet.lab.selftest import pod_checks
from dpunet.lab.topology import LabPlan, LabSpec
from dpunet.setup import units

pytestmark = pytest.mark.lab

LAB = "dpurb"
# the matrix must pass again within this long after the reboot starts (measured: a few
# seconds, docs/reliability.md); generous for a loaded machine
RECOVERED_WITHIN = 60.0
PODS = (("a1", "host1"), ("a2", "host1"), ("c1", "cp"))


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = LabPlan(LabSpec(name=LAB))
    for name, node in PODS:
        pods.add_pod(plan, name, node, "netns")
    yield plan
    down(LAB)


def pod_link(pod: pods.Pod) -> dict[str, Any]:
    """The pod's eth0 as its namespace sees it (a VF's ifalias names the VF)."""
    link = json.loads(run(["ip", "-j", "link", "show", "dev", "eth0"], netns=pod.netns).stdout)[0]
    return {k: link.get(k) for k in ("ifindex", "ifalias", "address", "mtu")}


def dpu_netdevs(plan: LabPlan) -> list[str]:
    """Every netdev of dpu1 (representors, uplink, OVS's taps), sorted, duplicates kept."""
    out = run(["ip", "-j", "link", "show"], netns=plan.node("dpu1").netns).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def ovs_ports(plan: LabPlan) -> dict[str, list[str]]:
    """Ports of dpu1's bridges, sorted, duplicates kept."""
    dpu = plan.node("dpu1")
    return {
        bridge: sorted(vsctl(plan, dpu, "list-ports", bridge).split())
        for bridge in vsctl(plan, dpu, "list-br").split()
    }


def snapshot(plan: LabPlan) -> dict[str, Any]:
    """What must be the same after the reboot."""
    with services.admin_client(plan) as client:
        ports = sorted((p.model_dump() for p in client.list_ports()), key=lambda p: p["lsp"])
    return {
        "pods": pods.load_pods(plan),
        "pod links": {p.name: pod_link(p) for p in pods.load_pods(plan)},
        "host VFs": Lab(plan).status()["nics"][0]["vfs"],
        "controller ports": ports,
        "dpu netdevs": dpu_netdevs(plan),
        "ovs ports": ovs_ports(plan),
        "chassis": sbctl(plan, "--bare", "--columns=name", "list", "Chassis").split(),
        "dpu1 encaps": sbctl(
            plan, "--bare", "--columns=ip", "find", "Encap", "chassis_name=dpu1"
        ).split(),
    }


def failing_checks(plan: LabPlan) -> list[CheckResult]:
    results = pod_checks(plan)
    assert len(results) == 12  # 6 pod pairs, and node -> pod and pod -> ext for 3 pods
    return [r for r in results if not r.ok]


@pytest.mark.parametrize("lose_ovs_db", [False, True], ids=["conf.db kept", "conf.db lost"])
def test_pods_get_their_network_back_after_a_dpu_reboot(lab: LabPlan, lose_ovs_db: bool) -> None:
    plan = lab
    assert failing_checks(plan) == []
    before = snapshot(plan)
    dpu = plan.node("dpu1")
    agent_pid = read_pid(plan.node_dir(dpu) / "dpunet-dpu.pid")
    unit = plan.unit_root(dpu) / units.UNIT_DIR / "dpunet-dpu-setup.service"
    command = units.exec_start(unit.read_text())
    assert command[1:3] == ["dpu", "setup"] and "--address" in command
    assert (plan.unit_root(dpu) / units.UNIT_DIR / "multi-user.target.wants" / unit.name).exists()

    started = time.monotonic()
    Lab(plan).reboot("dpu1", lambda title, elapsed: None, lose_ovs_db=lose_ovs_db)
    booted = time.monotonic() - started
    last: list[CheckResult] = []

    def matrix_passes() -> bool:
        last[:] = failing_checks(plan)
        return not last

    try:
        wait_until("the pods' connectivity matrix", matrix_passes, RECOVERED_WITHIN)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still failing: {last}") from None
    recovered = time.monotonic() - started
    # brp0 is a new tap (OVS 3.5 makes it with checksum offload on); the setup unit
    # turned the offload off
    brp0 = run(["ethtool", "-k", "brp0"], netns=dpu.netns).stdout
    assert "tx-checksumming: off" in brp0, brp0

    def lease_renewed_since_reboot() -> bool:
        with services.admin_client(plan) as client:
            lease = client.get_node("host1").dpu_lease
        assert lease is not None
        since_reboot = time.monotonic() - started
        return lease.state == "held" and (lease.renewed_ago or since_reboot) < since_reboot

    wait_until("the DPU lease renewed by the rebooted agent", lease_renewed_since_reboot)
    assert read_pid(plan.node_dir(plan.node("dpu1")) / "dpunet-dpu.pid") != agent_pid
    after = snapshot(plan)
    for key, value in before.items():
        assert after[key] == value, key
    print(f"dpu1 reboot ({'conf.db lost' if lose_ovs_db else 'conf.db kept'}): booted in "
          f"{booted:.2f}s, matrix passing {recovered:.2f}s after the reboot started")  # fmt: skip
