"""Network namespaces: sockets (and short calls) inside other ones, and whether a path is
a pod's.

`setns()` affects only the calling thread, so a short-lived thread enters the
namespace, opens the socket (or runs the call, `run_at`) and ends; the socket stays
bound to that namespace.
(pyroute2's own `netns=` support forks a helper process, which interferes with
asyncio signal handling in the daemons.)

A runtime passes CNI_NETNS as a path (`/var/run/netns/cni-<uuid>`, `/proc/<pid>/ns/net`);
`netns_problem` says why one is not a pod's network namespace: no namespace file (a FIFO
would block the thread that opens it, a regular file cannot be entered), another kind of
namespace, or one never a pod's (the daemon's own, the host's), into which an ADD would
put `eth0` and a default route.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import stat
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
T = TypeVar("T")
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def run_in_netns(ns_fd: int, fn: Callable[[], T]) -> T:
    """`fn()` run by a short-lived thread that entered the netns `ns_fd` (this thread's
    netns is untouched); what it opened (sockets) stays in that namespace."""
    result: list[T | OSError] = []

    def enter_and_run() -> None:
        if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            result.append(OSError(err, f"setns: {os.strerror(err)}"))
            return
        try:
            result.append(fn())
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=enter_and_run, name="netns-call")
    thread.start()
    thread.join()
    if isinstance(result[0], OSError):
        raise result[0]
    return result[0]


def run_at(netns: str | None, fn: Callable[[], T]) -> T:
    """`fn()` in the namespace at path `netns` (None: right here); OSError from either."""
    if netns is None:
        return fn()
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return run_in_netns(fd, fn)
    finally:
        os.close(fd)


def socket_in_netns(ns_fd: int, family: int, kind: int, proto: int = 0) -> socket.socket:
    """Open a socket that lives in the netns `ns_fd` (this thread's netns is untouched)."""
    return run_in_netns(ns_fd, lambda: socket.socket(family, kind, proto))


def socket_at(netns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket in the namespace at path `netns` (None: this process's namespace)."""
    return run_at(netns, lambda: socket.socket(family, kind, proto))


def iproute_at(netns: str | None) -> IPRoute:
    """A pyroute2 IPRoute whose netlink socket lives in the namespace at path `netns`."""
    if netns is None:
        return IPRoute()
    sock = socket_at(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
    return IPRoute(fileno=sock.detach())


# namespace path -> what it is, for the error message
_NOT_FOR_PODS = (
    ("/proc/1/ns/net", "the host's network namespace"),
    ("/proc/thread-self/ns/net", "the dpunet daemon's own network namespace"),
    ("/proc/self/ns/net", "the dpunet daemon's own network namespace"),
)


def netns_problem(path: str) -> str | None:
    """Why `path` is not a pod's network namespace (None: it is one). Never blocks: a
    FIFO or device is refused before it is opened, or opened without waiting."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # nsfs inodes are regular files
            return f"{path} is not a network namespace (not a namespace file)"
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    try:
        info = os.fstat(fd)
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:  # ENOTTY: not an nsfs inode
            return f"{path} is not a network namespace (not a namespace file)"
    finally:
        os.close(fd)
    if kind != CLONE_NEWNET:
        return f"{path} is not a network namespace (another kind of namespace)"
    for reserved, what in _NOT_FOR_PODS:
        try:
            other = os.stat(reserved)
        except OSError:  # not visible to this daemon: nothing to compare with
            continue
        if (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino):
            return f"{path} is {what}, not a pod's"
    return None
