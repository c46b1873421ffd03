"""When the full node's management port must be re-plugged."""

from __future__ import annotations

import ipaddress

import pytest

from dpunet.cni.daemon import management_config
from dpunet.contract.api import NodeInfo, NodeRole
from dpunet.linux.netlink import Link, LinuxError, Route
from dpunet.node.mgmt import mgmt_lsp, needed_changes
from dpunet.ovsdb.local import OvsPort

NODE = NodeInfo(
    name="cp", role=NodeRole.FULL, chassis="cp", node_ip="192.0.2.10/24", next_hop="192.0.2.1",
    gateway_mac="0a:58:c0:00:02:0a", subnet="198.18.0.0/24", gateway_ip="198.18.0.1",
    mgmt_ip="198.18.0.2/24", mgmt_mac="0a:58:c6:12:00:02", join_ip="100.64.0.2",
    cluster_cidr="198.18.0.0/16", service_cidr="198.19.0.0/17", mtu=1400, ports=0, free_ips=250,
)  # fmt: skip
IDS = {"iface-id": "k8s-cp", "dpunet-owned": "true"}
CFG = management_config(NODE)
GOOD_LINK = Link("ovn-k8s-mp0", 1, "0a:58:c6:12:00:02", 1400, True)


def port(bridge: str = "br-int", **ids: str) -> OvsPort:
    return OvsPort("ovn-k8s-mp0", bridge, ids or IDS)


def test_config_comes_from_the_node_record() -> None:
    assert mgmt_lsp("cp") == "k8s-cp"
    assert CFG.address == ipaddress.IPv4Interface("198.18.0.2/24")
    assert CFG.gateway is None
    gw = ipaddress.IPv4Address("198.18.0.1")
    assert CFG.routes == (
        Route(ipaddress.IPv4Network("198.18.0.0/16"), gw),
        Route(ipaddress.IPv4Network("198.19.0.0/17"), gw),
    )


def test_in_place_needs_nothing() -> None:
    assert needed_changes(port(), GOOD_LINK, "br-int", IDS, CFG) == []


@pytest.mark.parametrize(
    ("ovs_port", "link", "expected"),
    [
        (None, None, "added to br-int"),
        (port(bridge="br-ex"), GOOD_LINK, "re-plugged"),
        (port(**{"iface-id": "k8s-old", "dpunet-owned": "true"}), GOOD_LINK, "re-plugged"),
        (port(), None, "re-created"),
        (port(), Link("ovn-k8s-mp0", 1, "02:00:00:00:00:01", 1400, True), "MAC/MTU"),
        (port(), Link("ovn-k8s-mp0", 1, "0a:58:c6:12:00:02", 1500, True), "MAC/MTU"),
    ],
)
def test_differences_replug(ovs_port: OvsPort | None, link: Link | None, expected: str) -> None:
    [change] = needed_changes(ovs_port, link, "br-int", IDS, CFG)
    assert expected in change


def test_a_foreign_port_is_left_alone() -> None:
    with pytest.raises(LinuxError, match="not dpunet's"):
        needed_changes(port(**{"iface-id": "k8s-cp"}), GOOD_LINK, "br-int", IDS, CFG)
