"""Kubernetes mode of the controller: Node objects -> registrations, the pod-networks
annotation (pure), and the Lease and Event writers against kmock (a real HTTP server)."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import kmock
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Node, Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from pydantic import ValidationError

from dpunet.contract.api import PortInfo, Route
from dpunet.contract.policy import Protocol
from dpunet.controller.config import ControllerConfig
from dpunet.controller.k8s.events import EventRecorder
from dpunet.controller.k8s.leader import LeaderElector
from dpunet.controller.k8s.policies import policy_spec
from dpunet.controller.k8s.sources import (
    NodeProblem,
    NodeSource,
    is_dpu,
    matches,
    node_spec,
    pod_networks,
    pod_policy_meta,
)
from dpunet.controller.nbcommands import EnsureDesired
from dpunet.controller.nodes import NodeService
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import Desired, NodeRecord, NodeRole

NEXT_HOP = IPv4Address("192.0.2.1")


def node(name: str, ip: str | None = "192.0.2.101", labels: Any = None, **notes: str) -> Node:
    addresses = [{"type": "InternalIP", "address": ip}] if ip else []
    return Node.from_dict(
        {
            "metadata": {"name": name, "labels": labels or {}, "annotations": notes},
            "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}, *addresses]},
        }
    )


def test_dpu_host_node_spec_from_labels_and_annotations() -> None:
    obj = node(
        "host1",
        labels={"k8s.ovn.org/dpu-host": ""},
        **{
            "k8s.ovn.org/node-chassis-id": "dpu1",
            "dpunet.io/mgmt-port": '{"pf_mac": "02:00:00:00:01:00", "vf_num": 0}',
            "dpunet.io/gateway-next-hop": "192.0.2.254",
            "k8s.ovn.org/node-primary-ifaddr": '{"ipv4": "192.0.2.101/24"}',
            "k8s.ovn.org/l3-gateway-config": '{"default": {"mac-address": "02:00:00:00:01:00"}}',
        },
    )
    spec = node_spec(obj, NEXT_HOP, 28)
    assert spec.gateway_mac == "02:00:00:00:01:00"  # the GR shares the host PF's MAC
    assert (spec.role, spec.chassis, spec.node_ip, spec.next_hop) == (
        NodeRole.DPU_HOST, "dpu1", IPv4Interface("192.0.2.101/24"), IPv4Address("192.0.2.254"),
    )  # fmt: skip
    assert (spec.mgmt_pf_mac, spec.mgmt_vf_num) == ("02:00:00:00:01:00", 0)
    record = NodeRecord(
        name="host1",
        role=spec.role,
        chassis="dpu1",
        node_ip=spec.node_ip,
        next_hop=spec.next_hop,
        subnet=IPv4Network("10.233.64.0/24"),
        join_ip=IPv4Address("100.64.0.2"),
        gateway_mac="02:00:00:00:01:00",
        mgmt_pf_mac="02:00:00:00:01:00",
        mgmt_vf_num=0,
    )
    assert matches(record, spec)
    assert not matches(record, node_spec(node("host1"), NEXT_HOP, 24))


def test_the_mac_the_dpu_reported_wins_over_l3_gateway_config() -> None:
    """`dpunet.io/gateway-mac` (the host PF's MAC, from the DPU's registration) is the
    gateway router's MAC even when OVN-Kubernetes' annotation says another."""
    l3 = '{"default": {"mac-address": "02:00:00:00:09:09"}}'
    notes = {"k8s.ovn.org/l3-gateway-config": l3, "dpunet.io/gateway-mac": "02:00:00:00:01:00"}
    assert node_spec(node("cp", **notes), NEXT_HOP, 24).gateway_mac == "02:00:00:00:01:00"
    only_l3 = node("cp", **{"k8s.ovn.org/l3-gateway-config": l3})
    assert node_spec(only_l3, NEXT_HOP, 24).gateway_mac == "02:00:00:00:09:09"


def test_full_node_defaults() -> None:
    spec = node_spec(node("cp", "192.0.2.10"), NEXT_HOP, 24)
    assert (spec.role, spec.chassis, str(spec.node_ip), spec.next_hop) == (
        NodeRole.FULL, "cp", "192.0.2.10/24", NEXT_HOP,
    )  # fmt: skip
    assert is_dpu(node("dpu1", labels={"k8s.ovn.org/dpu": ""}))
    assert not is_dpu(node("cp"))


@pytest.mark.parametrize(
    ("obj", "next_hop", "problem"),
    [
        (node("h", labels={"k8s.ovn.org/dpu-host": ""}), NEXT_HOP, "node-chassis-id"),
        (node("cp"), None, "next-hop"),
        (node("cp", ip=None), NEXT_HOP, "InternalIP"),
        (node("cp", **{"k8s.ovn.org/node-primary-ifaddr": "10.0.0.1"}), NEXT_HOP, "ifaddr"),
        (node("cp", **{"dpunet.io/gateway-next-hop": "198.51.100.1"}), None, "next_hop"),
        (
            node("h", labels={"k8s.ovn.org/dpu-host": ""}, **{
                "k8s.ovn.org/node-chassis-id": "d", "dpunet.io/mgmt-port": "[0]",
            }),
            NEXT_HOP,
            "mgmt-port",
        ),
        (node("cp", **{"k8s.ovn.org/l3-gateway-config": "{}"}), NEXT_HOP, "l3-gateway-config"),
        (
            node("cp", **{"k8s.ovn.org/l3-gateway-config": '{"default": {"mac-address": "x"}}'}),
            NEXT_HOP,
            "gateway_mac",
        ),
        (node("cp", **{"dpunet.io/gateway-mac": "01:00:5e:00:00:01"}), NEXT_HOP, "multicast"),
        (node("x" * 70), NEXT_HOP, "node name"),
        (node("join"), NEXT_HOP, "reserved"),
    ],
)  # fmt: skip
def test_incomplete_nodes_are_pending(obj: Node, next_hop: Any, problem: str) -> None:
    with pytest.raises(NodeProblem, match=problem):
        node_spec(obj, next_hop, 24)


class RecordingNb:
    """NB as the node service writes it: every write's desired states, recorded."""

    def __init__(self) -> None:
        self.writes: list[tuple[Desired, ...]] = []
        self.port_rows = None  # no kept LSPs: the command would read the switch's ports

    async def write(self, make: Any, **_: Any) -> int:
        command = make(None)
        assert isinstance(command, EnsureDesired)
        self.writes.append(command.desired)
        return 1

    def gateway_macs(self, node: str) -> list[str | None]:
        """Per write of `node`'s objects: the MAC of rtoe-GR_<node> (None: no router)."""
        out = []
        for desired in self.writes:
            for d in desired:
                if d.scope == node:
                    ports = {p.name: p.mac for r in d.routers for p in r.ports}
                    out.append(ports.get(f"rtoe-GR_{node}"))
        return out


async def _no_repair(node: str) -> int:
    return 0


def test_a_gateway_router_is_created_only_with_the_node_mac() -> None:
    """Kubernetes mode (issue 13): a full node without `dpunet.io/gateway-mac` or
    `l3-gateway-config` is registered (switch, management port) without GR_<node>; the
    annotation its dpunet-node's report brings creates the router with that MAC, never
    another; a dpu-host whose DPU registered without the host PF's MAC waits alike, and a
    Node whose annotation goes away keeps the known MAC."""
    breth0, pf = "02:00:00:00:0c:01", "02:00:00:00:01:00"

    async def scenario() -> None:
        cfg = ControllerConfig(nb_remotes=["unix:/nonexistent"], cluster_cidr="198.18.0.0/16")
        state = ClusterState(cfg)
        await state.gate.open()
        nb = RecordingNb()
        service = NodeService(cfg, nb, state, _no_repair, lambda: None)  # type: ignore[arg-type]
        source = NodeSource(None, service, state, NEXT_HOP, 24, 1.0)  # type: ignore[arg-type]
        source.synced = True
        host_labels = {"k8s.ovn.org/dpu-host": ""}
        source.objects = {
            "cp": node("cp", "192.0.2.10"),
            "host1": node("host1", labels=host_labels, **{"k8s.ovn.org/node-chassis-id": "d1"}),
        }
        await source.sync()
        assert nb.gateway_macs("cp") == [None] and nb.gateway_macs("host1") == [None]
        assert state.nodes["cp"].gateway_mac is None
        await source.sync()  # nothing new: nothing written
        assert len(nb.writes) == 2
        source.objects["cp"] = node("cp", "192.0.2.10", **{"dpunet.io/gateway-mac": breth0})
        l3 = json.dumps({"default": {"mac-address": pf}})
        source.objects["host1"] = node(
            "host1", labels=host_labels,
            **{"k8s.ovn.org/node-chassis-id": "d1", "k8s.ovn.org/l3-gateway-config": l3},
        )  # fmt: skip
        await source.sync()
        assert nb.gateway_macs("cp") == [None, breth0]
        assert nb.gateway_macs("host1") == [None, pf]
        source.objects["cp"] = node("cp", "192.0.2.10")  # the annotation removed by hand
        await source.sync()
        assert len(nb.writes) == 4 and state.nodes["cp"].gateway_mac == breth0

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_pod_networks_has_ovn_kubernetes_shape() -> None:
    port = PortInfo(
        namespace="default", name="p", node="host1", uid="u", sandbox="s", ifname="eth0",
        pci=None, pf_mac=None, vf_num=None, lsp="default_p", mac="0a:58:0a:e9:40:05",
        ips=["10.233.64.5/24"], gateways=["10.233.64.1"],
        routes=[Route(dst="0.0.0.0/0", gw=".1"), Route(dst="10.96.0.0/12", gw="10.233.64.1")],
        mtu=1400, up=True,
    )  # fmt: skip
    assert json.loads(pod_networks(port)) == {
        "default": {
            "ip_addresses": ["10.233.64.5/24"],
            "mac_address": "0a:58:0a:e9:40:05",
            "gateway_ips": ["10.233.64.1"],
            "routes": [{"dest": "10.96.0.0/12", "nextHop": "10.233.64.1"}],
            "ip_address": "10.233.64.5/24",
            "gateway_ip": "10.233.64.1",
            "role": "primary",
        }
    }


def client_of(server: kmock.RawHandler) -> AsyncClient:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "k", "cluster": {"server": str(server.url)}}],
            "users": [{"name": "u", "user": {"token": "t0123456789"}}],
            "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
            "current-context": "k",
        }
    )
    return AsyncClient(config=config)


def elector(client: AsyncClient, identity: str) -> LeaderElector:
    return LeaderElector(client, "dpunet", "lease", identity, 1.0, 0.6, 0.1)


LEASE = ("coordination.k8s.io/v1/leases", "dpunet", "lease")


@pytest.mark.asyncio
async def test_lease_expires_then_a_candidate_takes_over(kmock: kmock.KubernetesEmulator) -> None:
    client = client_of(kmock)
    first, second = elector(client, "a"), elector(client, "b")
    await asyncio.wait_for(first.acquire(), 2)
    holding = asyncio.create_task(first.hold())
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(1.5)  # longer than the lease, but "a" renews
    assert not waiting.done() and kmock.objects[LEASE]["spec"]["holderIdentity"] == "a"
    holding.cancel()  # "a" stops renewing without releasing (as if killed)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(waiting, 3)
    assert asyncio.get_running_loop().time() - started < 1.0 + 0.3
    assert kmock.objects[LEASE]["spec"]["holderIdentity"] == "b"
    assert kmock.objects[LEASE]["spec"]["leaseTransitions"] == 1
    await second.release()
    assert kmock.objects[LEASE]["spec"].get("holderIdentity") is None
    await asyncio.wait_for(elector(client, "c").acquire(), 0.5)  # a released Lease is free
    await client.close()


@pytest.mark.asyncio
async def test_repeated_event_bumps_the_count(kmock: kmock.KubernetesEmulator) -> None:
    client = client_of(kmock)
    recorder = EventRecorder(client, "ctl-1")
    for _ in range(3):
        await recorder.pod("default", "p", "uid-p", "DPUTimeout", "timed out")
    await recorder.pod("default", "p", "uid-p", "NoVirtualFunction", "no VF")
    events = [kmock.objects[key] for key in kmock.objects if key[0] == kmock.resource("v1/events")]
    by_reason = {e["reason"]: e for e in events}
    assert set(by_reason) == {"DPUTimeout", "NoVirtualFunction"}
    timeout = by_reason["DPUTimeout"]
    assert timeout["count"] == 3 and timeout["type"] == "Warning"
    assert timeout["involvedObject"] == {
        "apiVersion": "v1", "kind": "Pod", "namespace": "default", "name": "p", "uid": "uid-p",
    }  # fmt: skip
    writes = [r.method for r in kmock if r.url.path.startswith("/api/v1/namespaces/default/events")]
    assert writes == ["POST", "PATCH", "PATCH", "POST"]
    await client.close()


def test_pod_policy_meta_takes_labels_and_named_container_ports() -> None:
    pod = Pod.from_dict(
        {
            "metadata": {"name": "web", "namespace": "a", "labels": {"b": "2", "a": "1"}},
            "spec": {
                "containers": [
                    {"name": "c1", "ports": [
                        {"name": "http", "containerPort": 8080},  # protocol defaults to TCP
                        {"containerPort": 9000},  # no name: not a named port
                        {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    ]},
                    {"name": "c2",
                     "ports": [{"name": "sig", "containerPort": 7, "protocol": "SCTP"}]},
                ]
            },
        }
    )  # fmt: skip
    meta = pod_policy_meta(pod)
    assert meta.labels == (("a", "1"), ("b", "2"))
    assert meta.ports == (
        ("dns", Protocol.UDP, 53), ("http", Protocol.TCP, 8080), ("sig", Protocol.SCTP, 7),
    )  # fmt: skip
    assert pod_policy_meta(Pod.from_dict({"metadata": {"name": "x"}})).ports == ()


def test_a_network_policy_dpunet_cannot_use_is_refused_with_a_reason() -> None:
    def obj(spec: dict[str, Any]) -> NetworkPolicy:
        return NetworkPolicy.from_dict({"metadata": {"name": "p", "namespace": "a"}, "spec": spec})

    assert policy_spec(obj({"podSelector": {}})).types()
    with pytest.raises(ValidationError, match="endPort"):
        policy_spec(obj({"podSelector": {}, "ingress": [{"ports": [{"port": "x", "endPort": 9}]}]}))
