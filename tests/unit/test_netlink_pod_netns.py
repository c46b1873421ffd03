"""`dpunet.linux.netlink` in a pod's namespace (needs root: a veth pair in a namespace of
its own): links found by name, and the gratuitous ARP a pod's interface sends."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from dpunet.linux import netlink
from dpunet.linux.netns import iproute_at, socket_at

ETH_P_ARP = 0x0806

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a veth pair)")


@pytest.fixture
def netns(other_netns: str) -> str:
    """A network namespace of its own with a veth pair `a` <-> `b`, both up."""
    with iproute_at(other_netns) as ipr:
        ipr.link("add", ifname="a", kind="veth", peer="b")
        for name in ("a", "b"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    return other_netns


def test_the_gratuitous_arp_leaves_the_interface(netns: str) -> None:
    listener = socket_at(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    with listener:
        listener.bind(("b", ETH_P_ARP))
        listener.settimeout(5)
        mac, ip = "0a:58:c6:12:01:07", ipaddress.IPv4Address("198.18.1.7")
        netlink.announce(netns, "a", mac, ip)
        frame = listener.recv(128)
    sender = bytes.fromhex(mac.replace(":", ""))
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == sender
    assert frame[12:14] == ETH_P_ARP.to_bytes(2, "big")
    assert frame[22:28] == sender and frame[28:32] == ip.packed and frame[38:42] == ip.packed


def test_an_interface_that_is_not_there_is_no_error(netns: str) -> None:
    netlink.announce(netns, "missing", "0a:58:c6:12:01:07", ipaddress.IPv4Address("198.18.1.7"))


def test_links_are_found_by_their_name_only(netns: str) -> None:
    with iproute_at(netns) as ipr:
        index = ipr.link_lookup(ifname="a")[0]
        ipr.link("property_add", index=index, altname="alias-of-a")
    link = netlink.get_link("a", netns)
    assert link is not None and link.name == "a" and link.index == index
    assert netlink.link_exists("b", netns)
    for missing in ("missing", "alias-of-a", "x" * 40):  # none, an altname, too long
        assert netlink.get_link(missing, netns) is None
        assert not netlink.link_exists(missing, netns)
