"""`dpunet.linux.netlink` in a pod's namespace (needs root: a veth pair in a namespace of
its own): links found by name, the gratuitous ARP a pod's interface sends, the pod's own
question for its gateway (`resolve_neighbour`), the raw link requests of ADD and DEL
(`move_link`, `configure`, `restore`) and the ioctl read of a DPU pass (`Netlink.brief`),
each checked against what pyroute2 reads back."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket

import pytest

from dpunet.linux import netlink
from dpunet.linux.netns import iproute_at, run_at, socket_at

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


POD_IP, GATEWAY = ipaddress.IPv4Interface("198.18.1.7/24"), ipaddress.IPv4Address("198.18.1.1")


@pytest.fixture
def pod_and_gateway(other_netns: str, second_netns: str) -> tuple[str, str]:
    """A pod's namespace with `a` (POD_IP), whose peer `b` is in a namespace of its own
    (the gateway's side, no address yet)."""
    with iproute_at(other_netns) as ipr:
        ipr.link("add", ifname="a", kind="veth", peer="b")
        index = ipr.link_lookup(ifname="a")[0]
        ipr.addr("add", index=index, address=str(POD_IP.ip), prefixlen=POD_IP.network.prefixlen)
    netlink.move_link("b", "b", other_netns, second_netns)
    for ns, name in ((second_netns, "b"), (other_netns, "a")):
        with iproute_at(ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    return other_netns, second_netns


def _arp_requests_for(frames: list[bytes], ip: ipaddress.IPv4Address) -> int:
    return sum(f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == ip.packed
               for f in frames)  # fmt: skip


def test_the_gateway_is_resolved_from_inside_the_pod(pod_and_gateway: tuple[str, str]) -> None:
    pod, gateway_side = pod_and_gateway
    with iproute_at(gateway_side) as ipr:
        idx = ipr.link_lookup(ifname="b")[0]
        ipr.addr("add", index=idx, address=str(GATEWAY), prefixlen=24)
        gateway_mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
    took = netlink.resolve_neighbour(pod, "a", GATEWAY, timeout=5)
    assert took is not None and 0 < took < 5
    with iproute_at(pod) as ipr:
        (entry,) = ipr.neigh("get", dst=str(GATEWAY), ifindex=ipr.link_lookup(ifname="a")[0])
    assert entry["state"] == netlink.NUD_REACHABLE
    assert entry.get_attr("NDA_LLADDR") == gateway_mac


def test_an_unanswered_gateway_is_asked_again_sooner_than_the_kernel_would(
    pod_and_gateway: tuple[str, str],
) -> None:
    """The kernel asks once a second; a lost answer must not cost the pod that second."""
    pod, gateway_side = pod_and_gateway
    listener = socket_at(gateway_side, socket.AF_PACKET, socket.SOCK_RAW, 0)
    with listener:
        listener.bind(("b", ETH_P_ARP))
        assert netlink.resolve_neighbour(pod, "a", GATEWAY, timeout=0.6) is None
        listener.setblocking(False)
        frames = []
        with contextlib.suppress(BlockingIOError):
            while True:
                frames.append(listener.recv(128))
    assert _arp_requests_for(frames, GATEWAY) >= 3


def test_resolving_on_a_missing_interface_is_an_error(netns: str) -> None:
    with pytest.raises(netlink.LinuxError, match="missing"):
        netlink.resolve_neighbour(netns, "missing", GATEWAY, timeout=0.1)


def test_a_question_the_kernel_refuses_is_an_error(pod_and_gateway: tuple[str, str]) -> None:
    """The link went away between looking it up and asking (ENODEV for the question)."""
    pod, _ = pod_and_gateway
    with netlink._NeighbourSocket.open(pod, "a") as neigh:
        with iproute_at(pod) as ipr:
            ipr.link("del", index=ipr.link_lookup(ifname="a")[0])
        neigh.ask(GATEWAY, seq=2)
        with pytest.raises(netlink.LinuxError, match="No such device"):
            for _ in range(10):  # the refusal, after the answer to the deletion
                if select.select([neigh.sock], [], [], 1)[0]:
                    assert not neigh.heard_reachable(GATEWAY, seq=2)


def test_brief_reads_what_netlink_reads(netns: str) -> None:
    """`Netlink.brief` (ioctls, no netlink session) agrees with `Netlink.state` on index,
    MTU and admin state, and opens no netlink socket."""
    with iproute_at(netns) as ipr:
        a = ipr.link_lookup(ifname="a")[0]
        ipr.link("set", index=a, state="down")
        ipr.link("set", index=a, mtu=1400)

    def read() -> tuple[list[netlink.Link | None], bool, list[netlink.Link | None]]:
        with netlink.Netlink() as nl:
            brief = [nl.brief(name) for name in ("a", "b", "missing", "x" * 40)]
            opened = nl._ipr is not None
            full = [nl.state(name) for name in ("a", "b")]
        return brief, opened, full

    brief, opened, full = run_at(netns, read)
    assert not opened
    assert brief[2:] == [None, None]
    for short, link in zip(brief[:2], full, strict=True):
        assert short is not None and link is not None
        assert (short.name, short.index, short.mtu, short.up) == (
            link.name, link.index, link.mtu, link.up
        )  # fmt: skip
    assert (brief[0].mtu, brief[0].up, brief[1].mtu, brief[1].up) == (1400, False, 1500, True)


def test_a_vf_moved_configured_and_restored(netns: str, second_netns: str) -> None:
    """The ADD's and DEL's link requests (`move_link`, `configure`, `restore`, raw netlink)
    leave what pyroute2 then reads (`check`, `get_link`): the pod's interface as asked, and
    the link back under its name, MAC, MTU and state."""
    before = netlink.get_link("a", netns)
    assert before is not None and before.mac is not None and before.mtu is not None
    netlink.move_link("a", "tmpvf", netns, second_netns)
    moved = netlink.get_link("tmpvf", second_netns)
    assert moved is not None and not moved.up and not netlink.link_exists("a", netns)
    cfg = netlink.InterfaceConfig(
        "eth0", "0a:58:c6:12:01:07", 1400, POD_IP, GATEWAY,
        (netlink.Route(ipaddress.IPv4Network("10.96.0.0/12"), GATEWAY),),
    )  # fmt: skip
    netlink.configure(second_netns, "tmpvf", cfg)
    assert netlink.check(second_netns, cfg) == []
    pod = netlink.get_link("eth0", second_netns)
    assert pod is not None and (pod.mac, pod.mtu, pod.up) == (cfg.mac, 1400, True)

    netlink.move_link("eth0", "tmpvf", second_netns, netns)
    run_at(netns, lambda: netlink.restore("tmpvf", "a", before.mac or "", before.mtu or 0, True))
    back = netlink.get_link("a", netns)
    assert back is not None and (back.mac, back.mtu, back.up) == (before.mac, before.mtu, True)


def test_a_refused_link_request_names_its_step(netns: str) -> None:
    """A missing link (or one named only by an altname) and a request the kernel refuses
    are LinuxErrors naming the step, as they were through pyroute2."""
    with iproute_at(netns) as ipr:
        ipr.link("property_add", index=ipr.link_lookup(ifname="b")[0], altname="alias-of-b")
    unreachable = ipaddress.IPv4Address("203.0.113.1")  # outside the pod's subnet
    cfg = netlink.InterfaceConfig("b", "0a:58:c6:12:01:08", 1500, POD_IP, unreachable)
    for missing in ("missing", "alias-of-b"):
        with pytest.raises(netlink.LinuxError, match=f"link {missing} not found"):
            netlink.configure(netns, missing, cfg)
    refused = r"default route via 203\.0\.113\.1: Network is unreachable"
    with pytest.raises(netlink.LinuxError, match=refused):
        netlink.configure(netns, "b", cfg)
    with pytest.raises(netlink.LinuxError, match="link missing not found"):
        netlink.move_link("missing", "tmp", netns, None)
    with pytest.raises(netlink.LinuxError, match="prepare b for the move: File exists"):
        netlink.move_link("b", "lo", netns, None)  # a temporary name that is taken
