"""Sockets inside other network namespaces, without forking and without moving threads.

`setns()` affects only the calling thread, so a short-lived thread enters the
namespace, opens the socket and ends; the socket stays bound to that namespace.
(pyroute2's own `netns=` support forks a helper process, which interferes with
asyncio signal handling in the daemons.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading

from pyroute2 import IPRoute

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def socket_in_netns(ns_fd: int, family: int, kind: int, proto: int = 0) -> socket.socket:
    """Open a socket that lives in the netns `ns_fd` (this thread's netns is untouched)."""
    result: list[socket.socket | OSError] = []

    def enter_and_open() -> None:
        if _libc.setns(ns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            result.append(OSError(err, f"setns: {os.strerror(err)}"))
            return
        try:
            result.append(socket.socket(family, kind, proto))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=enter_and_open, name="netns-socket")
    thread.start()
    thread.join()
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


def socket_at(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket in the namespace at path `netns` (None: this process's namespace)."""
    if netns is None:
        return socket.socket(family, kind, proto)
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return socket_in_netns(fd, family, kind, proto)
    finally:
        os.close(fd)


def iproute_at(netns: str | None) -> IPRoute:
    """A pyroute2 IPRoute whose netlink socket lives in the namespace at path `netns`."""
    if netns is None:
        return IPRoute()
    sock = socket_at(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach())
