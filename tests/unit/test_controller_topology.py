"""Desired NB state: names as in OVN-Kubernetes, ownership marks, pod LSPs (section 3)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from controller_records import CFG, HOST1, POD

from dpunet.controller.config import PlugMode
from dpunet.controller.nbcommands import lsp_columns
from dpunet.controller.topology import (
    NodeRecord,
    NodeRole,
    PodPort,
    cluster_desired,
    node_desired,
    owned,
    pod_lsp,
)
from dpunet.dpu.plug import PlugRequest, parse_request
from dpunet.dpu.sb import PortBindingRow
from dpunet.verify.sbview import SbPort


def test_cluster_objects() -> None:
    d = cluster_desired(CFG)
    assert [r.name for r in d.routers] == ["ovn_cluster_router"]
    assert [s.name for s in d.switches] == ["join"]
    rtoj = d.routers[0].ports[0]
    assert (rtoj.name, rtoj.networks, rtoj.mac) == (
        "rtoj-ovn_cluster_router",
        ("100.64.0.1/16",),
        "0a:58:64:40:00:01",
    )
    assert all(owned(x.external_ids) for x in (*d.routers, *d.switches))


def test_node_objects_follow_ovn_kubernetes_names() -> None:
    d = node_desired(CFG, HOST1)
    assert d.scope == "host1"
    switches = {s.name: s for s in d.switches}
    routers = {r.name: r for r in d.routers}
    assert set(switches) == {"join", "host1", "ext_host1"}
    assert set(routers) == {"ovn_cluster_router", "GR_host1"}
    node = switches["host1"]
    assert node.other_config["subnet"] == "198.18.1.0/24"
    ports = {p.name: p for p in node.ports}
    assert ports["stor-host1"].options == {"router-port": "rtos-host1"}
    mgmt = ports["k8s-host1"]
    assert mgmt.addresses == ("0a:58:c6:12:01:02 198.18.1.2",)
    assert mgmt.options["requested-chassis"] == "dpu1"
    assert mgmt.options["dpunet-plug:vf-num"] == "0"
    rtos = routers["ovn_cluster_router"].ports[0]
    assert (rtos.name, rtos.mac, rtos.networks) == (
        "rtos-host1",
        "0a:58:c6:12:01:01",
        ("198.18.1.1/24",),
    )
    gr = routers["GR_host1"]
    assert gr.options == {"chassis": "dpu1", "lb_force_snat_ip": "router_ip"}
    assert {p.name: p.networks for p in gr.ports} == {
        "rtoj-GR_host1": ("100.64.0.3/16",),
        "rtoe-GR_host1": ("192.0.2.101/24",),
    }
    routes = {(r.ip_prefix, r.nexthop, r.output_port) for r in gr.routes}
    assert routes == {
        ("198.18.0.0/16", "100.64.0.1", None),
        ("0.0.0.0/0", "192.0.2.1", "rtoe-GR_host1"),
    }
    assert [(n.type, n.external_ip, n.logical_ip) for n in gr.nats] == [
        ("snat", "192.0.2.101", "198.18.1.0/24")
    ]
    localnet = {p.name: p for p in switches["ext_host1"].ports}["ext_host1_physnet"]
    assert localnet.type == "localnet" and localnet.options == {"network_name": "physnet"}
    src_route = routers["ovn_cluster_router"].routes[0]
    assert (src_route.ip_prefix, src_route.nexthop, src_route.policy) == (
        "198.18.1.0/24",
        "100.64.0.3",
        "src-ip",
    )
    for obj in (*d.switches[1:], *d.routers[1:]):
        assert obj.external_ids["dpunet:node"] == "host1"


def test_a_pod_to_its_own_node_ip_is_rerouted_to_the_management_port() -> None:
    """The GR shares the node IP (issue 13): the cluster router sends a pod's packet for
    its own node's IP to the management port (.2), the OVN-Kubernetes 1004 policy."""
    (policy,) = node_desired(CFG, HOST1).routers[0].policies
    assert (policy.priority, policy.match, policy.action, policy.nexthops) == (
        1004,
        'inport == "rtos-host1" && ip4.dst == 192.0.2.101 /* host1 */',
        "reroute",
        ("198.18.1.2",),
    )
    assert owned(policy.external_ids) and policy.external_ids["dpunet:node"] == "host1"
    other = replace(HOST1, name="cp", node_ip=IPv4Interface("192.0.2.10/24"))
    assert node_desired(CFG, other).routers[0].policies[0].match == (
        'inport == "rtos-cp" && ip4.dst == 192.0.2.10 /* cp */'
    )
    assert cluster_desired(CFG).routers[0].policies == ()


def test_node_record_round_trips_through_the_switch() -> None:
    spec = {s.name: s for s in node_desired(CFG, HOST1).switches}["host1"]
    assert NodeRecord.from_switch("host1", spec.other_config, spec.external_ids) == HOST1
    with pytest.raises(KeyError):
        NodeRecord.from_switch("host1", {}, spec.external_ids)


def test_the_gateway_waits_for_the_node_mac() -> None:
    """Without its gateway MAC a node has its switch, management port, cluster router port
    and 1004 policy, but no gateway router, join port, external switch or source route to
    the router (issue 13: a router with another MAC would answer ARP for the node IP); the
    record without a MAC reads back as such."""
    held = replace(HOST1, gateway_mac=None)
    d = node_desired(CFG, held)
    assert [r.name for r in d.routers] == ["ovn_cluster_router"]
    assert {s.name: [p.name for p in s.ports] for s in d.switches} == {
        "join": [], "host1": ["stor-host1", "k8s-host1"],
    }  # fmt: skip
    (cluster,) = d.routers
    assert [p.name for p in cluster.ports] == ["rtos-host1"] and cluster.routes == ()
    assert [p.priority for p in cluster.policies] == [1004]
    switch = {s.name: s for s in d.switches}["host1"]
    assert "dpunet:gateway-mac" not in switch.external_ids
    assert NodeRecord.from_switch("host1", switch.other_config, switch.external_ids) == held
    full = node_desired(CFG, HOST1)
    assert [r.name for r in full.routers] == ["ovn_cluster_router", "GR_host1"]
    assert {"rtoe-GR_host1": "0a:58:c0:00:02:65"}.items() <= {
        p.name: p.mac for p in full.routers[1].ports
    }.items()
    assert [r.policy for r in full.routers[0].routes] == ["src-ip"]


def test_pod_lsp_agent_mode_is_exactly_section_3() -> None:
    lsp = pod_lsp(CFG, HOST1, POD)
    assert lsp.name == "default_web"
    assert lsp.addresses == lsp.port_security == ("0a:58:c6:12:01:07 198.18.1.7",)
    assert dict(lsp.options) == {
        "requested-chassis": "dpu1",
        "iface-id-ver": "8f1c",
        "dpunet-plug": "representor",
        "dpunet-plug:pf-mac": "02:d5:00:01:00:01",
        "dpunet-plug:vf-num": "1",
        "dpunet-plug-mtu-request": "1400",
    }
    ids = lsp.external_ids
    for key, value in (
        ("namespace", "default"),
        ("pod", "web"),
        ("uid", "8f1c"),
        ("node", "host1"),
        ("sandbox", "c0ffee"),
        ("pci", "0000:02:00.3"),
        ("owner", "dpunet"),
    ):
        assert ids[f"dpunet:{key}"] == value
    cols = lsp_columns(lsp)
    assert PodPort.from_lsp(cols["addresses"], cols["external_ids"]) == POD


def test_pod_lsp_ovn_mode_uses_ovn_plug_provider_options() -> None:
    options = pod_lsp(CFG.model_copy(update={"plug_mode": PlugMode.OVN}), HOST1, POD).options
    assert options["vif-plug-type"] == "representor"
    assert options["vif-plug:representor:pf-mac"] == "02:d5:00:01:00:01"
    assert options["vif-plug:representor:vf-num"] == "1"
    assert options["vif-plug-mtu-request"] == "1400"
    assert not any(k.startswith("dpunet-plug") for k in options)


def test_full_node_veth_port_has_no_plug_options() -> None:
    cp = NodeRecord(
        name="cp",
        role=NodeRole.FULL,
        chassis="cp",
        node_ip=IPv4Interface("192.0.2.10/24"),
        next_hop=IPv4Address("192.0.2.1"),
        subnet=IPv4Network("198.18.0.0/24"),
        join_ip=IPv4Address("100.64.0.2"),
        gateway_mac="0a:58:c0:00:02:0a",
    )
    port = PodPort(
        namespace="kube-system",
        pod="dns",
        node="cp",
        uid="u",
        sandbox="s",
        ifname="eth0",
        ip=IPv4Address("198.18.0.3"),
    )
    assert dict(pod_lsp(CFG, cp, port).options) == {"requested-chassis": "cp", "iface-id-ver": "u"}
    mgmt = {p.name: p for s in node_desired(CFG, cp).switches for p in s.ports}["k8s-cp"]
    assert dict(mgmt.options) == {"requested-chassis": "cp"}


def test_malformed_pod_rows_are_rejected() -> None:
    ids = dict(lsp_columns(pod_lsp(CFG, HOST1, POD))["external_ids"])
    with pytest.raises(ValueError, match="does not match"):
        PodPort.from_lsp(["0a:58:00:00:00:01 198.18.1.7"], ids)
    with pytest.raises(ValueError):
        PodPort.from_lsp([], ids)
    del ids["dpunet:uid"]
    with pytest.raises(KeyError):
        PodPort.from_lsp(["0a:58:c6:12:01:07 198.18.1.7"], ids)


def test_a_secondary_network_port_has_its_own_name_and_reads_back() -> None:
    port = replace(POD, ifname="net1", network="sriov-a", ip=IPv4Address("198.18.1.8"))
    lsp = pod_lsp(CFG, HOST1, port)
    assert lsp.name == "sriov.a_default_web"  # OVN-Kubernetes' secondary-network form
    assert lsp.external_ids["dpunet:network"] == "sriov-a"
    assert lsp.external_ids["dpunet:ifname"] == "net1"
    cols = lsp_columns(lsp)
    assert PodPort.from_lsp(cols["addresses"], cols["external_ids"]) == port
    assert "dpunet:network" not in pod_lsp(CFG, HOST1, POD).external_ids


def test_the_dpu_agent_reads_what_the_controller_writes() -> None:
    lsp = pod_lsp(CFG, HOST1, POD)  # northd copies options and external_ids to SB
    row = PortBindingRow(
        lsp.name, options=lsp.options, mac=lsp.addresses, external_ids=lsp.external_ids
    )
    assert parse_request(row) == PlugRequest(
        logical_port="default_web",
        pf_mac="02:d5:00:01:00:01",
        vf_num=1,
        iface_id_ver="8f1c",
        attached_mac="0a:58:c6:12:01:07",
        mtu=1400,
        pod="default/web",
        sandbox="c0ffee",
    )
    assert SbPort(lsp.name, lsp.options).representor
