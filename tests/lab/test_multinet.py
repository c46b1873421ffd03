"""Several dpunet networks in one pod, attached as multus attaches NADs: eth0 from the
primary network, net1 and net2 from two more, each a VF of its own with its own OVN port.

Runs against its own lab (`mnet`, 4 VFs: VF0 is the management port, so exactly three
for the pod).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dpunet.lab import pods, services
from dpunet.lab.lab import Lab, down
from dpunet.lab.runner import ip, list_netns, run
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "mnet"
POD = "multi"
NETWORKS = {"eth0": services.CNI_NETWORK, "net1": "dpunet-net1", "net2": "dpunet-net2"}


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield LabPlan(LabSpec(name=LAB))
    down(LAB)


def host_vfs(plan: LabPlan) -> dict[str, tuple[str | None, str]]:
    """VF PCI address -> (netdev in the host or None, MAC), from `lab status`."""
    return {vf["pci"]: (vf["netdev"], vf["mac"]) for vf in Lab(plan).status()["nics"][0]["vfs"]}


def ports(plan: LabPlan) -> dict[str | None, Any]:
    """The controller's ports on host1 by network (None: the primary)."""
    with services.admin_client(plan) as client:
        return {p.network: p for p in client.list_ports(node="host1")}


def cni(plan: LabPlan, command: str, cid: str, netns: str, ifname: str) -> dict[str, Any]:
    """CNI `command` for one attachment, with its network's config (what multus passes)."""
    host = plan.node("host1")
    config = {**pods.plugin_config(plan, host), "name": NETWORKS[ifname]}
    return pods.invoke_cni(plan, host, command, cid, netns, POD, ifname=ifname, config=config)


def gc(plan: LabPlan, network: str, keep: list[tuple[str, str]]) -> None:
    """CNI GC (spec 1.1) of `network`, keeping the (container id, ifname) pairs `keep`."""
    host = plan.node("host1")
    config = {
        **pods.plugin_config(plan, host),
        "cniVersion": "1.1.0",
        "name": network,
        "cni.dev/valid-attachments": [{"containerID": c, "ifname": i} for c, i in keep],
    }
    pods.invoke_cni(plan, host, "GC", "", "", POD, ifname="", config=config)


def reaches_gateway(netns: str, ifname: str, gateway: str) -> bool:
    proc = run(
        ["ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", ifname, gateway],
        netns=netns, check=False, timeout=10,
    )  # fmt: skip
    return proc.stdout.count("bytes from") > 0


def test_three_networks_in_one_pod(lab: LabPlan) -> None:
    plan = lab
    before = host_vfs(plan)
    netns_name = f"{LAB}-pod-{POD}"
    ip("netns", "add", netns_name)
    netns, cid = f"/run/netns/{netns_name}", secrets.token_hex(32)
    try:
        results = {ifname: cni(plan, "ADD", cid, netns, ifname) for ifname in NETWORKS}
        attached = ports(plan)
        assert set(attached) == {None, "dpunet-net1", "dpunet-net2"}
        assert attached[None].lsp == f"default_{POD}"
        assert attached["dpunet-net1"].lsp == f"dpunet.net1_default_{POD}"  # OVN-K's naming
        assert len({p.ips[0] for p in attached.values()}) == 3
        assert len({p.mac for p in attached.values()}) == 3
        assert {r["interfaces"][0]["name"] for r in results.values()} == set(NETWORKS)
        vfs = {p.pci for p in attached.values() if p.pci}
        assert len(vfs) == 3 and all(host_vfs(plan)[pci][0] is None for pci in vfs)
        gateway = attached[None].gateways[0]
        for ifname in NETWORKS:
            assert reaches_gateway(netns, ifname, gateway), f"{ifname} cannot reach {gateway}"

        net1_vf = attached["dpunet-net1"].pci or ""
        cni(plan, "DEL", cid, netns, "net1")
        assert set(ports(plan)) == {None, "dpunet-net2"}
        assert host_vfs(plan)[net1_vf] == before[net1_vf]  # back under its name and MAC
        for ifname in ("eth0", "net2"):
            assert reaches_gateway(netns, ifname, gateway), f"{ifname} lost its network"

        gc(plan, "dpunet-net2", keep=[])  # net2 is no longer a valid attachment
        assert set(ports(plan)) == {None}
        assert reaches_gateway(netns, "eth0", gateway)

        cni(plan, "DEL", cid, netns, "eth0")
        assert ports(plan) == {}
        assert host_vfs(plan) == before
        records = plan.node_dir(plan.node("host1")) / "state" / "sandboxes"
        assert not list(records.glob("*.json"))
    finally:
        for ifname in NETWORKS:
            cni(plan, "DEL", cid, netns, ifname)
        if netns_name in list_netns():
            ip("netns", "del", netns_name)
