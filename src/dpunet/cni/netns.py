"""Is a CNI_NETNS path a pod's network namespace?

A runtime passes a path (`/var/run/netns/cni-<uuid>`, `/proc/<pid>/ns/net`); the
daemon refuses, before it claims anything, a path that is no network namespace (a
FIFO would block the thread that opens it, a regular file cannot be entered) and the
namespaces that are never a pod's: the daemon's own and the host's (PID 1's), into
which an ADD would put `eth0` and a default route.
"""

from __future__ import annotations

import fcntl
import os
import stat

NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), linux/nsfs.h
CLONE_NEWNET = 0x40000000

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
