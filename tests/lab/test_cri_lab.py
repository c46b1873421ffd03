"""containerd's CRI as the lab's kubelet-side runtime: pod sandboxes on host1 get VFs
through the installed `dpunet-cni`, reach each other and their gateway, and give
everything back on Stop/Remove.

Runs against its own lab (`crilab`); the tests share it and leave it without pods.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import dpunet
from polling import wait_until

from dpunet.cni.wire import ErrorCode
from dpunet.lab import pods, services, svc
from dpunet.lab.cri import api_pb2 as pb
from dpunet.lab.cri.client import CriClient, CriError
from dpunet.lab.cri.engine import node_containerd, sandbox_config
from dpunet.lab.lab import Lab, down
from dpunet.lab.selftest import ping
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "crilab"
GATEWAY = "198.18.1.1"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    dpunet("lab", "up", "--name", LAB)
    plan = LabPlan(LabSpec(name=LAB))
    yield plan
    removed = down(LAB)
    assert {"containerd on host1", "containerd on cp"} <= set(removed)
    assert not _cni_netns(), "lab down left sandbox network namespaces"
    assert not Path("/run/containerd").exists()


@pytest.fixture
def clean(lab: LabPlan) -> Iterator[LabPlan]:
    """Each test ends with no pods and no sandboxes."""
    yield lab
    for pod in pods.load_pods(lab):
        pods.del_pod(lab, pod.name)
    with cri(lab) as client:
        for sandbox in client.list_pod_sandbox():
            client.stop_pod_sandbox(sandbox.id)
            client.remove_pod_sandbox(sandbox.id)


def cri(plan: LabPlan) -> CriClient:
    """A CRI client of host1's containerd (started if it is not running yet)."""
    containerd = node_containerd(plan, plan.node("host1"))
    containerd.ensure_running()
    return containerd.client()


def _cni_netns() -> set[str]:
    return {p.name for p in Path("/run/netns").glob("cni-*")}


def host_vfs(plan: LabPlan) -> dict[str, dict[str, Any]]:
    """VF PCI address -> what `lab status` shows of it (netdev name, MAC)."""
    return {vf["pci"]: vf for vf in Lab(plan).status()["nics"][0]["vfs"]}


def sandbox_records(plan: LabPlan) -> set[str]:
    d = plan.node_dir(plan.node("host1")) / "state" / "sandboxes"
    return {p.stem for p in d.glob("*.json")}


def controller_sandboxes(plan: LabPlan) -> set[str]:
    with services.admin_client(plan) as client:
        return {p.sandbox for p in client.list_ports(node="host1")}


def netns_of(client: CriClient, sandbox_id: str) -> str:
    info = json.loads(client.pod_sandbox_status(sandbox_id, verbose=True).info["info"])
    return next(
        n["path"] for n in info["runtimeSpec"]["linux"]["namespaces"] if n["type"] == "network"
    )


def vf_in(plan: LabPlan, sandbox_id: str) -> str:
    """The PCI address of the VF host1's agent gave a sandbox."""
    record = plan.node_dir(plan.node("host1")) / "state" / "sandboxes" / f"{sandbox_id}.json"
    pci: str = json.loads(record.read_text())["device"]["pci"]
    return pci


def test_two_sandboxes_get_their_own_vfs_and_pass_the_matrix(clean: LabPlan) -> None:
    plan = clean
    a = pods.add_pod(plan, "cria", "host1", "cri")
    b = pods.add_pod(plan, "crib", "host1", "cri")
    c = pods.add_pod(plan, "cric", "cp", "cri")  # cp's own containerd; a veth on its OVS
    assert a.pci and b.pci and a.pci != b.pci
    assert a.ip and b.ip and a.ip != b.ip
    with cri(plan) as client:
        assert client.version().runtime_name == "containerd"
        for pod in (a, b):
            status = client.pod_sandbox_status(pod.container_id).status
            assert status.state == pb.SANDBOX_READY
            assert (status.metadata.name, status.metadata.namespace) == (pod.name, "default")
            assert status.network.ip == pod.ip  # what containerd took from dpunet-cni's result
            assert netns_of(client, pod.container_id) == pod.netns
    for src, dst in ((a, b), (b, a)):
        assert ping(src.netns, dst.ip or "")[0], f"{src.name} -> {dst.name}"
        assert ping(src.netns, GATEWAY)[0], f"{src.name} -> gateway"
    assert c.ip and c.pci is None and ping(c.netns, a.ip or "")[0]
    svc.add_service(plan, "crisvc", 80, ["cria", "crib", "cric"])  # selects them like any pod
    check = dpunet("lab", "check", "--name", LAB, "-o", "json", check=False)
    svc.del_service(plan, "crisvc")
    assert check.returncode == 0, check.stdout + check.stderr
    checks = {r["check"] for r in json.loads(check.stdout)}
    assert {"pod-pod (same node)", "pod-pod (across nodes)", "pod-ext (gateway SNAT)"} <= checks
    assert "service default/crisvc: spread (every backend)" in checks
    host1 = next(n for n in Lab(plan).status()["nodes"] if n["name"] == "host1")
    assert {"name": "containerd", "alive": True} in [
        {"name": p["name"], "alive": p["alive"]} for p in host1["processes"]
    ]


def test_an_empty_vf_pool_fails_with_code_100_and_leaves_nothing(clean: LabPlan) -> None:
    plan = clean
    held = [pods.add_pod(plan, f"full{i}", "host1", "cri") for i in range(3)]  # VF1..VF3
    netns_before, vfs_before = _cni_netns(), host_vfs(plan)
    containerd = node_containerd(plan, plan.node("host1"))
    with cri(plan) as client:
        with pytest.raises(CriError) as failed:
            client.run_pod_sandbox(sandbox_config(containerd, "nofree"))
        assert "no free VF" in failed.value.details
        sandbox_id = re.search(r'sandbox "([0-9a-f]{64})"', failed.value.details)
        assert sandbox_id, failed.value.details
        names = [s.metadata.name for s in client.list_pod_sandbox()]
        assert sorted(names) == sorted(p.name for p in held)  # containerd undid its sandbox
    log = (plan.node_dir(plan.node("host1")) / "dpunet-host.log").read_text()
    add_failures = [
        line for line in log.splitlines() if f"verb=ADD container={sandbox_id[1]}" in line
    ]
    assert add_failures and all(f"code={ErrorCode.NO_DEVICE}" in line for line in add_failures)
    assert sandbox_records(plan) == controller_sandboxes(plan) == {p.container_id for p in held}
    assert _cni_netns() == netns_before
    assert host_vfs(plan) == vfs_before
    # a VF freed by a Stop/Remove is handed out again
    pods.del_pod(plan, held[1].name)
    again = pods.add_pod(plan, "again", "host1", "cri")
    assert again.pci == held[1].pci


def test_stop_twice_is_idempotent_and_stop_remove_give_each_vf_back(clean: LabPlan) -> None:
    plan = clean
    before = host_vfs(plan)
    containerd = node_containerd(plan, plan.node("host1"))
    with cri(plan) as client:
        ids = [client.run_pod_sandbox(sandbox_config(containerd, n)) for n in ("st1", "st2")]
        vfs = [vf_in(plan, i) for i in ids]
        assert len(set(vfs)) == 2
        for vf in vfs:
            assert host_vfs(plan)[vf]["netdev"] is None  # away in the sandbox
        netns = [netns_of(client, i) for i in ids]
        for sandbox_id in ids:
            client.stop_pod_sandbox(sandbox_id)
            client.stop_pod_sandbox(sandbox_id)  # kubelet may stop more than once
            status = client.pod_sandbox_status(sandbox_id).status
            assert status.state == pb.SANDBOX_NOTREADY
        after_stop = host_vfs(plan)
        for vf in vfs:
            assert (after_stop[vf]["netdev"], after_stop[vf]["mac"]) == (
                before[vf]["netdev"],
                before[vf]["mac"],
            )
        assert sandbox_records(plan) == controller_sandboxes(plan) == set()
        assert not {Path(n).name for n in netns} & _cni_netns()
        for sandbox_id in ids:
            client.remove_pod_sandbox(sandbox_id)
            client.remove_pod_sandbox(sandbox_id)  # idempotent too
        assert client.list_pod_sandbox() == []
    wait_until("the VFs unchanged", lambda: host_vfs(plan) == before)
