"""A pod's interface inside its network namespace, through netlink (pyroute2).

Shared by `dpunet-host` (the interface is a VF moved in from the host) and
`dpunet-node` (the interface is one end of a veth pair). Every function acts on
explicit namespaces: the daemon's own ("host") and the pod's, given as a path
such as `/var/run/netns/cni-...` or `/proc/<pid>/ns/net`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dpunet.netns import iproute_at, socket_at

_ETH_P_ARP = 0x0806


class PodNetError(RuntimeError):
    """A netlink operation on a pod interface failed; the message names the step."""


@dataclass(frozen=True)
class Route:
    """`dst via gateway` inside the pod."""

    dst: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address


@dataclass(frozen=True)
class InterfaceConfig:
    """What the pod's interface must look like."""

    ifname: str
    mac: str
    mtu: int
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    routes: tuple[Route, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class HostLinkState:
    """How a VF looked in the host before it was handed to a pod (restored on release)."""

    name: str
    mac: str
    mtu: int
    up: bool


@contextlib.contextmanager
def netlink(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket in `netns` (a path), or in this process's namespace."""
    try:
        ipr = iproute_at(netns)
    except (OSError, NetlinkError) as exc:
        raise PodNetError(f"cannot open netlink in {netns or 'host'} namespace: {exc}") from exc
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _existing_index(ipr: IPRoute, ifname: str, netns: str | None) -> int:
    """The index of `ifname`; PodNetError when the namespace has no such link."""
    idx = _index(ipr, ifname)
    if idx is None:
        raise PodNetError(f"link {ifname} not found in {netns or 'host'} namespace")
    return idx


def _step(what: str) -> contextlib.AbstractContextManager[None]:
    """Turn netlink failures inside the block into a PodNetError naming `what`."""

    @contextlib.contextmanager
    def wrapper() -> Iterator[None]:
        try:
            yield
        except NetlinkError as exc:
            raise PodNetError(f"{what}: {os.strerror(exc.code)}") from exc

    return wrapper()


def link_state(ifname: str, netns: str | None = None) -> HostLinkState | None:
    """Name, MAC, MTU and admin state of a link, or None when it does not exist there."""
    with netlink(netns) as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return None
        msg = ipr.get_links(idx)[0]
    return HostLinkState(
        name=msg.get_attr("IFLA_IFNAME"),
        mac=msg.get_attr("IFLA_ADDRESS"),
        mtu=msg.get_attr("IFLA_MTU"),
        up=bool(msg["flags"] & 1),
    )


def link_exists(ifname: str, netns: str | None = None) -> bool:
    """Whether `ifname` exists in `netns` (a missing namespace counts as "no")."""
    if netns and not os.path.exists(netns):
        return False
    with netlink(netns) as ipr:
        return _index(ipr, ifname) is not None


def move_link(ifname: str, temp_name: str, src_netns: str | None, dst_netns: str | None) -> None:
    """Move a link between namespaces under a temporary name (so nothing clashes)."""
    target = dst_netns or "/proc/self/ns/net"
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with netlink(src_netns) as ipr:
            idx = _existing_index(ipr, ifname, src_netns)
            with _step(f"prepare {ifname} for the move"):
                ipr.link("set", index=idx, state="down")
                if ifname != temp_name:
                    ipr.link("set", index=idx, ifname=temp_name)
            with _step(f"move {ifname} into {dst_netns or 'host'} namespace"):
                ipr.link("set", index=idx, net_ns_fd=fd)
    finally:
        os.close(fd)


def configure(netns: str | None, current_name: str, cfg: InterfaceConfig) -> None:
    """Rename, address, route and bring up the interface inside `netns` (None: this one).

    The link must be down when it needs a new name (links fresh from a move are)."""
    with netlink(netns) as ipr:
        idx = _existing_index(ipr, current_name, netns)
        with _step(f"set name/MAC/MTU of {cfg.ifname}"):
            ipr.link("set", index=idx, ifname=cfg.ifname, address=cfg.mac, mtu=cfg.mtu)
        with _step(f"address {cfg.address} on {cfg.ifname}"):
            ipr.addr(
                "replace",
                index=idx,
                address=str(cfg.address.ip),
                prefixlen=cfg.address.network.prefixlen,
            )
        with _step(f"bring {cfg.ifname} up"):
            ipr.link("set", index=idx, state="up")
        if cfg.gateway is not None:
            with _step(f"default route via {cfg.gateway}"):
                ipr.route("replace", dst="0.0.0.0/0", gateway=str(cfg.gateway), oif=idx)
        for route in cfg.routes:
            with _step(f"route {route.dst} via {route.gateway}"):
                ipr.route("replace", dst=str(route.dst), gateway=str(route.gateway), oif=idx)
    announce(netns, cfg.ifname, cfg.mac, cfg.address.ip)


def restore(name_now: str, state: HostLinkState, netns: str | None = None) -> None:
    """Give a returned VF back its host name, MAC, MTU and admin state."""
    with netlink(netns) as ipr:
        idx = _existing_index(ipr, name_now, netns)
        with _step(f"restore {state.name}"):
            ipr.link("set", index=idx, state="down")
            ipr.link("set", index=idx, ifname=state.name, address=state.mac, mtu=state.mtu)
            if state.up:
                ipr.link("set", index=idx, state="up")


def check(netns: str | None, cfg: InterfaceConfig) -> list[str]:
    """What differs between the interface in the pod and `cfg` (empty: all as configured)."""
    problems: list[str] = []
    with netlink(netns) as ipr:
        idx = _index(ipr, cfg.ifname)
        if idx is None:
            return [f"interface {cfg.ifname} is missing"]
        link = ipr.get_links(idx)[0]
        if link.get_attr("IFLA_ADDRESS") != cfg.mac:
            problems.append(f"{cfg.ifname} has MAC {link.get_attr('IFLA_ADDRESS')}, not {cfg.mac}")
        addrs = {
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=idx, family=socket.AF_INET)
        }
        if str(cfg.address) not in addrs:
            problems.append(f"{cfg.ifname} lacks address {cfg.address}")
        routes = {
            (f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}", r.get_attr("RTA_GATEWAY"))
            for r in ipr.get_routes(family=socket.AF_INET, oif=idx)
        }
        wanted = [Route(ipaddress.IPv4Network("0.0.0.0/0"), cfg.gateway)] if cfg.gateway else []
        for route in [*wanted, *cfg.routes]:
            if (str(route.dst), str(route.gateway)) not in routes:
                problems.append(f"no route {route.dst} via {route.gateway} on {cfg.ifname}")
    return problems


def set_down(ifname: str, netns: str | None = None) -> None:
    """Set a link administratively down (needed before renaming it)."""
    with netlink(netns) as ipr:
        idx = _existing_index(ipr, ifname, netns)
        with _step(f"set {ifname} down"):
            ipr.link("set", index=idx, state="down")


def announce(netns: str | None, ifname: str, mac: str, ip: ipaddress.IPv4Address) -> None:
    """Send one gratuitous ARP from the pod so switches and neighbours learn it at once."""
    mac_bytes = bytes.fromhex(mac.replace(":", ""))
    frame = (
        b"\xff" * 6
        + mac_bytes
        + struct.pack("!H", _ETH_P_ARP)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet/IPv4, request
        + mac_bytes
        + ip.packed
        + b"\x00" * 6
        + ip.packed
    )
    try:
        sock = socket_at(netns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ARP))
        with sock:
            sock.bind((ifname, _ETH_P_ARP))
            sock.send(frame)
    except OSError:
        return  # best effort: the pod's first packet teaches the same
