"""Representor links through netlink (pyroute2): MTU, admin state and rename.

Acts on the network namespace of the calling process. Not thread-safe: use one `Links`
per thread (the agent keeps one in its single worker thread).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

IFF_UP = 0x1


@dataclass(frozen=True)
class LinkState:
    """What the agent checks of one link."""

    name: str
    index: int
    mtu: int | None
    up: bool


class Links:
    """A netlink session for representor links."""

    def __init__(self) -> None:
        self.ipr = IPRoute()

    def close(self) -> None:
        """Release the netlink socket."""
        self.ipr.close()

    def get(self, name: str) -> LinkState | None:
        """The link `name`, or None when there is none."""
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
        return LinkState(
            name=msg.get("IFLA_IFNAME") or name,
            index=msg["index"],
            mtu=msg.get("IFLA_MTU"),
            up=bool(msg["flags"] & IFF_UP),
        )

    @staticmethod
    def names() -> dict[int, str]:
        """ifindex -> name of every link in this network namespace."""
        return dict(socket.if_nameindex())

    def set_mtu(self, index: int, mtu: int) -> None:
        """Set the MTU of link `index`."""
        self.ipr.link("set", index=index, mtu=mtu)

    def set_up(self, index: int) -> None:
        """Bring link `index` administratively up."""
        self.ipr.link("set", index=index, state="up")

    def rename(self, index: int, new_name: str) -> None:
        """Rename link `index` to `new_name` (down for the rename, as the kernel requires
        for most drivers, and up again afterwards)."""
        self.ipr.link("set", index=index, state="down")
        try:
            self.ipr.link("set", index=index, ifname=new_name)
        finally:
            self.ipr.link("set", index=index, state="up")
