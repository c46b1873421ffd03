"""Netlink (pyroute2), ethtool-ioctl and per-interface sysctl access used by the setup commands.

Everything acts on the network namespace of the calling process.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from dpunet import ethtool
from dpunet.ethtool import Feature
from dpunet.setup.plan import SetupError

IFF_UP = 0x1
RTPROT_KERNEL = 2
RTN_UNICAST = 1
RT_TABLE_LOCAL = 255
_PROC_IPV4_CONF = Path("/proc/sys/net/ipv4/conf")


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
class Route:
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
    """A netdev as netlink shows it, with its IPv4 addresses and routes."""

    name: str
    index: int
    mac: str | None
    up: bool
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()


class Netlink:
    """A pyroute2 IPRoute session with the few reads/writes the setup commands need."""

    def __init__(self) -> None:
        self.ipr = IPRoute()

    def close(self) -> None:
        """Release the netlink socket."""
        self.ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def link(self, name: str) -> Link | None:
        """The link `name` with its IPv4 addresses and routes, or None when absent."""
        indexes = self.ipr.link_lookup(ifname=name)
        if not indexes:
            return None
        index = indexes[0]
        msg = self.ipr.link("get", index=index)[0]
        return Link(
            name=name,
            index=index,
            mac=msg.get("IFLA_ADDRESS"),
            up=bool(msg["flags"] & IFF_UP),
            addresses=self._addresses(index),
            routes=self._routes(index),
        )

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

    def _routes(self, index: int) -> tuple[Route, ...]:
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
                Route(
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

    def replace_route(self, route: Route, oif: int) -> None:
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


def read_arp_ignore(ifname: str) -> int | None:
    """`net.ipv4.conf.<ifname>.arp_ignore`, or None when the interface has no IPv4 conf."""
    try:
        return int((_PROC_IPV4_CONF / ifname / "arp_ignore").read_text().strip())
    except (OSError, ValueError):
        return None


def write_arp_ignore(ifname: str, value: int) -> None:
    """Set `net.ipv4.conf.<ifname>.arp_ignore`."""
    (_PROC_IPV4_CONF / ifname / "arp_ignore").write_text(f"{value}\n")


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


def read_feature(ifname: str, name: str) -> Feature | None:
    """The ethtool feature `name` (e.g. `hw-tc-offload`) of `ifname`, or None when unknown."""
    try:
        return ethtool.read_feature(ifname, name)
    except ethtool.EthtoolError as exc:
        raise SetupError(str(exc)) from exc


def enable_feature(ifname: str, name: str) -> None:
    """Turn the ethtool feature `name` of `ifname` on (`ethtool -K <ifname> <name> on`)."""
    try:
        ethtool.set_features(ifname, {name: True})
    except ethtool.EthtoolError as exc:
        raise SetupError(str(exc)) from exc
