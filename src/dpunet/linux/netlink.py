"""Links, addresses and routes through netlink: the one place dpunet changes the kernel's
network configuration (no `ip` processes). pyroute2 does most of it; the requests on every
ADD's and DEL's path (`move_link`, `configure`, `restore`, `resolve_neighbour`) are raw
NETLINK_ROUTE messages, and `Netlink.brief` reads a link with the interface ioctls,
where pyroute2's set-up and decoding would cost more than the request itself.

* a pod's interface inside its network namespace (`move_link`, `configure`, `restore`,
  `check`, `announce`, `resolve_neighbour`), used by the CNI bindings (a VF moved in from
  the host, one end of a veth pair) and the management ports. These functions act on
  explicit namespaces: the daemon's own (None) and the pod's, given as a path such as
  `/var/run/netns/cni-...`;
* veth pairs and plain link changes (`add_veth`, `delete_link`, `set_mtu`, `link_names`);
* the tc filters of a link's ingress qdisc, undecoded (`ingress_filters`);
* `Netlink`, a session in the calling process's namespace with the reads and writes the
  setup commands and the DPU agent need (a link with its IPv4 addresses and routes,
  MTU, admin state, rename).

`Link` is the one view of a link's state all of them return.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from dpunet.linux.netns import iproute_at, run_at, socket_at

_ETH_P_ARP = 0x0806
# netlink messages (struct nlmsghdr) and the requests' flags
_NLMSG_HEADER = 16  # struct nlmsghdr
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK = 0x1, 0x4
_NLM_F_REPLACE, _NLM_F_CREATE = 0x100, 0x400
_ANSWER_TIMEOUT = 10.0  # seconds the kernel may take to acknowledge a link request
# links
RTM_NEWLINK = 16
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_NET_NS_FD = 1, 3, 4, 28
IFF_UP = 0x1
IFNAMSIZ = 16  # a link name is at most 15 bytes
_IFREQ_SIZE = 40  # struct ifreq: the name, then a union of the answers
_SIOCGIFFLAGS = 0x8913
_SIOCGIFMTU = 0x8921
# addresses and routes
RTM_NEWADDR, RTM_NEWROUTE = 20, 24
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
RTN_UNICAST = 1
RTPROT_KERNEL = 2
RTPROT_BOOT = 3  # what `ip route` and pyroute2 give a route by default
RT_TABLE_MAIN, RT_TABLE_LOCAL = 254, 255
# neighbours
RTM_NEWNEIGH, RTM_DELNEIGH = 28, 29
RTMGRP_NEIGH = 0x4  # the multicast group of neighbour table changes
NDA_DST = 1
_NDMSG = 12  # struct ndmsg
NTF_USE = 0x01  # a neighbour request flag: resolve the entry now, as a packet to it would
NUD_REACHABLE = 0x02
# TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): "ingress" for both ingress and clsact qdiscs
TC_INGRESS_PARENT = 0xFFFFFFF2


class LinuxError(RuntimeError):
    """An operation of the Linux layer (or of a device's plumbing built on it) failed;
    the message names the step."""


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
class Address:
    """One IPv4 address of a link."""

    address: str
    prefixlen: int
    broadcast: str | None = None
    secondary: bool = False

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class KernelRoute:
    """One IPv4 unicast route through a link (single next hop)."""

    dst: str | None
    dst_len: int
    gateway: str | None
    table: int = 254
    priority: int | None = None
    prefsrc: str | None = None
    proto: int = 3
    scope: int = 0
    tos: int = 0

    def describe(self, dev: str) -> str:
        """`ip route` style text, e.g. `default via 192.0.2.1 dev brp0`."""
        parts = ["default" if self.dst_len == 0 else f"{self.dst}/{self.dst_len}"]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        parts.append(f"dev {dev}")
        if self.table != 254:
            parts.append(f"table {self.table}")
        if self.priority is not None:
            parts.append(f"metric {self.priority}")
        return " ".join(parts)


@dataclass(frozen=True)
class Link:
    """A link as netlink shows it; its IPv4 addresses and routes when asked for."""

    name: str
    index: int
    mac: str | None
    mtu: int | None
    up: bool
    addresses: tuple[Address, ...] = ()
    routes: tuple[KernelRoute, ...] = ()

    @classmethod
    def from_msg(cls, msg: Any, name: str | None = None) -> Link:
        """The state of a pyroute2 `ifinfmsg`."""
        return cls(
            name=msg.get("IFLA_IFNAME") or name or "",
            index=msg["index"],
            mac=msg.get("IFLA_ADDRESS"),
            mtu=msg.get("IFLA_MTU"),
            up=bool(msg["flags"] & IFF_UP),
        )


@contextlib.contextmanager
def netlink(netns: str | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket in `netns` (a path), or in this process's namespace."""
    try:
        ipr = iproute_at(netns)
    except (OSError, NetlinkError) as exc:
        raise LinuxError(f"cannot open netlink in {netns or 'host'} namespace: {exc}") from exc
    try:
        yield ipr
    finally:
        ipr.close()


def _link_msg(ipr: IPRoute, ifname: str) -> Any | None:
    """The kernel's message of link `ifname`, or None when there is none: one request by
    name (pyroute2's `link_lookup` dumps and decodes every link of the namespace)."""
    if not 0 < len(ifname.encode()) < IFNAMSIZ:
        return None  # a name no link can have
    try:
        msg = ipr.link("get", ifname=ifname)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return msg if msg.get("IFLA_IFNAME") == ifname else None  # not by an alternative name


def _index(ipr: IPRoute, ifname: str) -> int | None:
    msg = _link_msg(ipr, ifname)
    return msg["index"] if msg is not None else None


def _existing_index(ipr: IPRoute, ifname: str, netns: str | None) -> int:
    """The index of `ifname`; LinuxError when the namespace has no such link."""
    idx = _index(ipr, ifname)
    if idx is None:
        raise LinuxError(f"link {ifname} not found in {netns or 'host'} namespace")
    return idx


def _step(what: str) -> contextlib.AbstractContextManager[None]:
    """Turn netlink failures inside the block into a LinuxError naming `what`."""

    @contextlib.contextmanager
    def wrapper() -> Iterator[None]:
        try:
            yield
        except NetlinkError as exc:
            raise LinuxError(f"{what}: {os.strerror(exc.code)}") from exc

    return wrapper()


def get_link(ifname: str, netns: str | None = None) -> Link | None:
    """Name, index, MAC, MTU and admin state of a link, or None when it does not exist
    there."""
    with netlink(netns) as ipr:
        msg = _link_msg(ipr, ifname)
        return Link.from_msg(msg) if msg is not None else None


def link_exists(ifname: str, netns: str | None = None) -> bool:
    """Whether `ifname` exists in `netns` (a missing namespace counts as "no")."""
    if netns and not os.path.exists(netns):
        return False
    with netlink(netns) as ipr:
        return _index(ipr, ifname) is not None


@dataclass(frozen=True)
class TcFilter:
    """A tc filter as the kernel dumps it: `kind` (e.g. "flower"), `handle`, `info`
    (priority << 16 | protocol) and its TCA_OPTIONS attribute undecoded."""

    kind: str | None
    handle: int
    info: int
    options: bytes


def ingress_filters(ifname: str, netns: str | None = None) -> list[TcFilter] | None:
    """The filters of the ingress qdisc of `ifname` in `netns`, None when there is no
    such link; LinuxError when they cannot be dumped (e.g. no ingress qdisc)."""
    with netlink(netns) as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return None
        with _step(f"ingress filters of {ifname}"):
            messages = list(ipr.get_filters(index=idx, parent=TC_INGRESS_PARENT))
    return [_tc_filter(msg) for msg in messages]


def _tc_filter(msg: Any) -> TcFilter:
    # pyroute2 does not decode every filter kind (flower): its options arrive as "aa:bb:.."
    options = msg.get_attr("TCA_OPTIONS")
    raw = bytes.fromhex(options.replace(":", "")) if isinstance(options, str) else b""
    return TcFilter(msg.get_attr("TCA_KIND"), msg["handle"], msg["info"], raw)


class _Requests:
    """One NETLINK_ROUTE socket in a namespace, for a few requests about one link, each
    acknowledged before the next (the ADD's and DEL's path: none of pyroute2's set-up and
    message decoding, which cost more than the requests themselves)."""

    def __init__(self, sock: socket.socket, index: int):
        self.sock = sock
        self.index = index
        self._seq = 0

    @classmethod
    @contextlib.contextmanager
    def on(cls, netns: str | None, ifname: str) -> Iterator[_Requests]:
        """Requests about link `ifname` of `netns` (None: this namespace); LinuxError when
        it has no link of that name (an alternative name does not count)."""

        def inside() -> tuple[socket.socket | None, int | None]:
            index = _index_by_name(ifname)
            if index is None:
                return None, None
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.settimeout(_ANSWER_TIMEOUT)
            return sock, index

        try:
            sock, index = run_at(netns, inside)
        except OSError as exc:
            raise LinuxError(f"cannot open netlink in {netns or 'host'} namespace: {exc}") from exc
        if sock is None or index is None:
            raise LinuxError(f"link {ifname} not found in {netns or 'host'} namespace")
        with sock:
            yield cls(sock, index)

    def link(self, what: str, flags: int = 0, change: int = 0, **attrs: bytes) -> None:
        """RTM_NEWLINK on the link: `flags` under the mask `change`, and `attrs` (IFLA_*
        names without the prefix, as their raw values)."""
        body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, self.index, flags, change)
        self._request(RTM_NEWLINK, 0, body, [(_IFLA[k], v) for k, v in attrs.items()], what)

    def address(self, what: str, address: ipaddress.IPv4Interface) -> None:
        """Replace the link's IPv4 address `address` (as `ip addr replace`)."""
        body = struct.pack("=BBBBi", socket.AF_INET, address.network.prefixlen, 0, 0, self.index)
        ip = address.ip.packed
        self._request(
            RTM_NEWADDR, _NLM_F_CREATE | _NLM_F_REPLACE, body,
            [(IFA_LOCAL, ip), (IFA_ADDRESS, ip)], what,
        )  # fmt: skip

    def route(self, what: str, dst: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
        """Replace the main table's route to `dst` via `gateway` out of the link."""
        body = struct.pack(
            "=BBBBBBBBI", socket.AF_INET, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
            0, RTN_UNICAST, 0,
        )  # fmt: skip
        attrs = [(RTA_GATEWAY, gateway.packed), (RTA_OIF, struct.pack("=I", self.index))]
        if dst.prefixlen:
            attrs.insert(0, (RTA_DST, dst.network_address.packed))
        self._request(RTM_NEWROUTE, _NLM_F_CREATE | _NLM_F_REPLACE, body, attrs, what)

    def _request(
        self, kind: int, flags: int, body: bytes, attrs: list[tuple[int, bytes]], what: str
    ) -> None:
        self._seq += 1
        message = _message(kind, _NLM_F_ACK | flags, self._seq, body, attrs)
        try:
            self.sock.send(message)
            error = self._answer()
        except OSError as exc:
            raise LinuxError(f"{what}: {exc}") from exc
        if error:
            raise LinuxError(f"{what}: {os.strerror(error)}")

    def _answer(self) -> int:
        """The errno of the acknowledgement of the last request (0: done)."""
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSG_HEADER <= len(data):
                length, kind, _, seq = struct.unpack_from("=IHHI", data, offset)
                if length < _NLMSG_HEADER:
                    break
                if kind == _NLMSG_ERROR and seq == self._seq:
                    (error,) = struct.unpack_from("=i", data, offset + _NLMSG_HEADER)
                    return -error
                offset += (length + 3) & ~3


_IFLA = {
    "address": IFLA_ADDRESS,
    "ifname": IFLA_IFNAME,
    "mtu": IFLA_MTU,
    "net_ns_fd": IFLA_NET_NS_FD,
}


def _message(kind: int, flags: int, seq: int, body: bytes, attrs: list[tuple[int, bytes]]) -> bytes:
    """One netlink request: its header (NLM_F_REQUEST and `flags`), `body`, then `attrs`
    as attributes (struct nlattr, each padded to 4 bytes)."""
    payload = body
    for attr, value in attrs:
        data = struct.pack("=HH", 4 + len(value), attr) + value
        payload += data + b"\0" * (-len(data) % 4)
    header = struct.pack(
        "=IHHII", _NLMSG_HEADER + len(payload), kind, _NLM_F_REQUEST | flags, seq, 0
    )
    return header + payload


def _index_by_name(name: str) -> int | None:
    """The index of this namespace's link called `name` (not by an alternative name)."""
    try:
        index = socket.if_nametoindex(name)
        return index if socket.if_indextoname(index) == name else None
    except OSError:  # no link of that name
        return None


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def move_link(ifname: str, temp_name: str, src_netns: str | None, dst_netns: str | None) -> None:
    """Move a link between namespaces under a temporary name (so nothing clashes)."""
    target = dst_netns or "/proc/self/ns/net"
    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _Requests.on(src_netns, ifname) as link:
            link.link(f"prepare {ifname} for the move", 0, IFF_UP)
            if ifname != temp_name:
                link.link(f"prepare {ifname} for the move", ifname=_name(temp_name))
            link.link(f"move {ifname} into {dst_netns or 'host'} namespace", net_ns_fd=_u32(fd))
    finally:
        os.close(fd)


def configure(netns: str | None, current_name: str, cfg: InterfaceConfig) -> None:
    """Rename, address, route and bring up the interface inside `netns` (None: this one).

    The link must be down when it needs a new name (links fresh from a move are)."""
    with _Requests.on(netns, current_name) as link:
        link.link(
            f"set name/MAC/MTU of {cfg.ifname}",
            ifname=_name(cfg.ifname), address=_mac(cfg.mac), mtu=_u32(cfg.mtu),
        )  # fmt: skip
        link.address(f"address {cfg.address} on {cfg.ifname}", cfg.address)
        link.link(f"bring {cfg.ifname} up", IFF_UP, IFF_UP)
        if cfg.gateway is not None:
            default = ipaddress.IPv4Network("0.0.0.0/0")
            link.route(f"default route via {cfg.gateway}", default, cfg.gateway)
        for route in cfg.routes:
            link.route(f"route {route.dst} via {route.gateway}", route.dst, route.gateway)
    announce(netns, cfg.ifname, cfg.mac, cfg.address.ip)


def restore(name_now: str, name: str, mac: str, mtu: int, up: bool) -> None:
    """Give a link returned to this namespace (a VF back from a pod) its name, MAC, MTU
    and admin state from before."""
    with _Requests.on(None, name_now) as link:
        link.link(f"restore {name}", 0, IFF_UP)
        link.link(f"restore {name}", ifname=_name(name), address=_mac(mac), mtu=_u32(mtu))
        if up:
            link.link(f"restore {name}", IFF_UP, IFF_UP)


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
        # protocol 0: a socket that receives nothing, so neither its creation nor a bind
        # (sendto names the interface) waits for the kernel to retire a receive hook
        sock = socket_at(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError:
        return  # best effort: the pod's first packet teaches the same
    try:
        sock.sendto(frame, (ifname, _ETH_P_ARP))
    except OSError:
        pass
    finally:
        _close_later(sock)


def resolve_neighbour(
    netns: str | None, ifname: str, ip: ipaddress.IPv4Address, timeout: float
) -> float | None:
    """Have the kernel in `netns` resolve `ip` on `ifname` now (its own ARP request, as the
    pod's first packet to `ip` would send), asking again after 20, 40, 80 ms and so on
    (at most 200 ms apart) rather than after the kernel's one second; the seconds until it
    answered, None when it did not within `timeout`.

    Each new question replaces the unanswered entry, so an answer to an earlier question
    still lands in the one that replaced it. The entry left behind is the one the pod's
    own traffic would have made: REACHABLE, or INCOMPLETE and retried by the kernel. One
    raw netlink socket asks and hears the namespace's neighbour notifications (no polling,
    and none of pyroute2's set-up, which costs more than the question on this path)."""
    started = time.monotonic()
    deadline = started + timeout
    wait = 0.02
    seq = 0
    with _NeighbourSocket.open(netns, ifname) as neigh:
        while True:
            seq += 2
            neigh.ask(ip, seq)
            asked_until = min(deadline, time.monotonic() + wait)
            while (left := asked_until - time.monotonic()) > 0:
                if not select.select([neigh.sock], [], [], left)[0]:
                    break
                if neigh.heard_reachable(ip, seq):
                    return time.monotonic() - started
            if asked_until >= deadline:
                return None
            wait = min(wait * 2, 0.2)


@dataclass
class _NeighbourSocket:
    """A NETLINK_ROUTE socket in a namespace, subscribed to its neighbour table's changes,
    through which `resolve_neighbour` asks about one link's neighbours."""

    sock: socket.socket
    ifname: str
    index: int

    @classmethod
    @contextlib.contextmanager
    def open(cls, netns: str | None, ifname: str) -> Iterator[_NeighbourSocket]:
        """The socket for link `ifname` of `netns`; LinuxError when there is no such link."""

        def inside() -> tuple[socket.socket, int]:
            index = socket.if_nametoindex(ifname)
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, RTMGRP_NEIGH))
            return sock, index

        try:
            sock, index = run_at(netns, inside)
        except OSError as exc:
            raise LinuxError(f"link {ifname} in {netns or 'host'} namespace: {exc}") from exc
        with sock:
            yield cls(sock, ifname, index)

    def ask(self, ip: ipaddress.IPv4Address, seq: int) -> None:
        """Drop the entry for `ip` (answered by ENOENT when there is none, ignored), then
        have the kernel resolve it anew (NTF_USE: it sends its request at once)."""
        self._send(RTM_DELNEIGH, 0, 0, ip, seq - 1)
        self._send(RTM_NEWNEIGH, _NLM_F_CREATE | _NLM_F_REPLACE, NTF_USE, ip, seq)

    def _send(self, kind: int, flags: int, ntf: int, ip: ipaddress.IPv4Address, seq: int) -> None:
        body = struct.pack("=B3xiHBB", socket.AF_INET, self.index, 0, ntf, 0)
        try:
            self.sock.send(_message(kind, flags, seq, body, [(NDA_DST, ip.packed)]))
        except OSError as exc:
            raise LinuxError(f"resolve {ip} on {self.ifname}: {exc}") from exc

    def heard_reachable(self, ip: ipaddress.IPv4Address, seq: int) -> bool:
        """Read what arrived: True when the entry for `ip` became REACHABLE; LinuxError when
        the kernel refused request `seq`."""
        try:
            data = self.sock.recv(65536)
        except OSError:  # ENOBUFS: notifications were lost; the next question hears anew
            return False
        offset = 0
        while offset + _NLMSG_HEADER <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < _NLMSG_HEADER or offset + length > len(data):
                return False
            body = offset + _NLMSG_HEADER
            if kind == _NLMSG_ERROR and length >= _NLMSG_HEADER + 4 + _NLMSG_HEADER:
                (error,) = struct.unpack_from("=i", data, body)
                (refused,) = struct.unpack_from("=I", data, body + 4 + 8)  # its request's seq
                if error and refused == seq:
                    raise LinuxError(f"resolve {ip} on {self.ifname}: {os.strerror(-error)}")
            elif kind == RTM_NEWNEIGH and length >= _NLMSG_HEADER + _NDMSG:
                family, index, state = struct.unpack_from("=B3xiH", data, body)
                dst = _attribute(data, body + _NDMSG, offset + length, NDA_DST)
                wanted = (socket.AF_INET, self.index, NUD_REACHABLE, ip.packed)
                if (family, index, state, dst) == wanted:
                    return True
            offset += (length + 3) & ~3
        return False


def _attribute(data: bytes, start: int, end: int, wanted: int) -> bytes | None:
    """The payload of the first netlink attribute of type `wanted` in data[start:end]."""
    while start + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, start)
        if length < 4:
            return None
        if kind == wanted:
            return data[start + 4 : start + length]
        start += (length + 3) & ~3
    return None


def _close_later(sock: socket.socket) -> None:
    """Close a packet socket off the caller's path: the kernel releases every packet
    socket after an RCU grace period (`synchronize_net`), milliseconds on a busy machine."""
    threading.Thread(target=sock.close, name="packet-close", daemon=True).start()


def link_names() -> dict[int, str]:
    """ifindex -> name of every link in this network namespace."""
    return dict(socket.if_nameindex())


def add_veth(name: str, peer: str) -> None:
    """Create the veth pair `name`/`peer` in this namespace and bring `name` up."""
    with netlink() as ipr, _step(f"create veth {name}/{peer}"):
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer})
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")


def delete_link(ifname: str) -> bool:
    """Delete a link of this namespace; False when it did not exist."""
    with netlink() as ipr:
        idx = _index(ipr, ifname)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise LinuxError(f"delete {ifname}: {os.strerror(exc.code)}") from exc
    return True


def set_mtu(ifname: str, mtu: int) -> None:
    """Set the MTU of a link of this namespace."""
    with netlink() as ipr:
        idx = _existing_index(ipr, ifname, None)
        with _step(f"MTU {mtu} on {ifname}"):
            ipr.link("set", index=idx, mtu=mtu)


def kernel_has_ovs_datapath() -> bool:
    """True when the kernel has the Open vSwitch datapath (generic netlink `ovs_datapath`),
    i.e. when OVS can use `datapath_type=system`."""
    sock = GenericNetlinkSocket()
    try:
        sock.discovery("ovs_datapath")
    except NetlinkError:
        return False
    finally:
        sock.close()
    return True


class Netlink:
    """A pyroute2 IPRoute session with the few reads/writes the setup commands and the DPU
    agent's passes need. The netlink socket is opened by the first call that needs it:
    `brief` and `names` do not (a pass that changes nothing never opens one)."""

    def __init__(self) -> None:
        self._ipr: IPRoute | None = None
        self._ioctl: socket.socket | None = None

    @property
    def ipr(self) -> IPRoute:
        """The pyroute2 session (opened on first use)."""
        if self._ipr is None:
            self._ipr = IPRoute()
        return self._ipr

    def close(self) -> None:
        """Release the sockets."""
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._ioctl is not None:
            self._ioctl.close()
            self._ioctl = None

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def link(self, name: str) -> Link | None:
        """The link `name` with its IPv4 addresses and routes, or None when absent."""
        state = self.state(name)
        if state is None:
            return None
        return replace(
            state, addresses=self._addresses(state.index), routes=self._routes(state.index)
        )

    def state(self, name: str) -> Link | None:
        """The link `name` without addresses and routes (cheaper), or None when absent."""
        try:
            index = socket.if_nametoindex(name)
        except OSError:  # no link of that name
            return None
        try:
            msg = self.ipr.link("get", index=index)[0]
        except NetlinkError as exc:  # gone in between
            if exc.code == errno.ENODEV:
                return None
            raise
        return Link.from_msg(msg, name)

    def brief(self, name: str) -> Link | None:
        """The index, MTU and admin state of link `name` (no MAC), or None when absent:
        read with the interface ioctls (SIOCGIFFLAGS, SIOCGIFMTU), whose answers need no
        decoding, unlike a netlink message through pyroute2 (a DPU pass reads every
        plugged port's link)."""
        if self._ioctl is None:
            self._ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        index = _index_by_name(name)
        if index is None:
            return None
        request = struct.pack(f"{IFNAMSIZ}s{_IFREQ_SIZE - IFNAMSIZ}x", name.encode())
        try:
            flags = fcntl.ioctl(self._ioctl.fileno(), _SIOCGIFFLAGS, request)
            mtu = fcntl.ioctl(self._ioctl.fileno(), _SIOCGIFMTU, request)
        except OSError as exc:
            if exc.errno == errno.ENODEV:  # gone in between
                return None
            raise
        (flag_bits,) = struct.unpack_from("H", flags, IFNAMSIZ)
        (mtu_value,) = struct.unpack_from("i", mtu, IFNAMSIZ)
        return Link(name=name, index=index, mac=None, mtu=mtu_value, up=bool(flag_bits & IFF_UP))

    @staticmethod
    def names() -> dict[int, str]:
        """ifindex -> name of every link in this network namespace."""
        return link_names()

    def _addresses(self, index: int) -> tuple[Address, ...]:
        out = []
        for msg in self.ipr.addr("dump", family=socket.AF_INET, index=index):
            if msg["index"] != index:
                continue
            flags = msg.get("IFA_FLAGS") or msg["flags"]
            out.append(
                Address(
                    address=msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS"),
                    prefixlen=msg["prefixlen"],
                    broadcast=msg.get("IFA_BROADCAST"),
                    secondary=bool(flags & 0x01),  # IFA_F_SECONDARY
                )
            )
        return tuple(out)

    def _routes(self, index: int) -> tuple[KernelRoute, ...]:
        out = []
        for msg in self.ipr.route("dump", family=socket.AF_INET):
            table = msg.get("RTA_TABLE") or msg["table"]
            if (
                msg.get("RTA_OIF") != index
                or msg["type"] != RTN_UNICAST
                or table == RT_TABLE_LOCAL
                or msg.get("RTA_MULTIPATH") is not None
            ):
                continue
            out.append(
                KernelRoute(
                    dst=msg.get("RTA_DST"),
                    dst_len=msg["dst_len"],
                    gateway=msg.get("RTA_GATEWAY"),
                    table=table,
                    priority=msg.get("RTA_PRIORITY"),
                    prefsrc=msg.get("RTA_PREFSRC"),
                    proto=msg["proto"],
                    scope=msg["scope"],
                    tos=msg["tos"],
                )
            )
        return tuple(out)

    def set_up(self, index: int) -> None:
        """Bring link `index` administratively up."""
        self.ipr.link("set", index=index, state="up")

    def set_mtu(self, index: int, mtu: int) -> None:
        """Set the MTU of link `index`."""
        self.ipr.link("set", index=index, mtu=mtu)

    def rename(self, index: int, new_name: str) -> None:
        """Rename link `index` to `new_name` (down for the rename, as the kernel requires
        for most drivers, and up again afterwards)."""
        self.ipr.link("set", index=index, state="down")
        try:
            self.ipr.link("set", index=index, ifname=new_name)
        finally:
            self.ipr.link("set", index=index, state="up")

    def add_address(self, index: int, addr: Address) -> None:
        """Add `addr` to link `index` (already present is fine)."""
        kwargs: dict[str, Any] = {
            "index": index,
            "address": addr.address,
            "prefixlen": addr.prefixlen,
        }
        if addr.broadcast:
            kwargs["broadcast"] = addr.broadcast
        try:
            self.ipr.addr("add", **kwargs)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def delete_address(self, index: int, addr: Address) -> None:
        """Remove `addr` from link `index` (already gone is fine)."""
        try:
            self.ipr.addr("del", index=index, address=addr.address, prefixlen=addr.prefixlen)
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                raise

    def replace_route(self, route: KernelRoute, oif: int) -> None:
        """Install `route` through link `oif`, replacing the route with the same key."""
        kwargs: dict[str, Any] = {
            "dst": route.dst if route.dst_len else "0.0.0.0",
            "dst_len": route.dst_len,
            "oif": oif,
            "table": route.table,
            "proto": route.proto,
            "scope": route.scope,
            "tos": route.tos,
        }
        if route.gateway:
            kwargs["gateway"] = route.gateway
        if route.priority is not None:
            kwargs["priority"] = route.priority
        if route.prefsrc:
            kwargs["prefsrc"] = route.prefsrc
        self.ipr.route("replace", **kwargs)
