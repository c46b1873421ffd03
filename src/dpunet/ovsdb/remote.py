"""Where an OVSDB is and whether it answers: remotes, the local database's socket, the
check made before opening a connection, and the errors of the OVSDB layer."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

DEFAULT_OVS_RUNDIR = "/var/run/openvswitch"
_TCP_RE = re.compile(r"^tcp:(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]]+):(?P<port>\d{1,5})$")


class OvsdbError(Exception):
    """An OVSDB could not be used as asked; the message says which and why."""


class OvsdbUnavailable(OvsdbError):
    """The database cannot be reached or did not answer."""


class BadRemote(OvsdbError, ValueError):
    """A remote that is not `unix:PATH` or `tcp:HOST:PORT` (a ValueError for pydantic)."""


def ovs_rundir() -> Path:
    """`$OVS_RUNDIR`, defaulting to /var/run/openvswitch."""
    return Path(os.environ.get("OVS_RUNDIR") or DEFAULT_OVS_RUNDIR)


def default_ovs_db() -> str:
    """`unix:$OVS_RUNDIR/db.sock`, with OVS_RUNDIR defaulting to /var/run/openvswitch."""
    return f"unix:{ovs_rundir()}/db.sock"


def validate_remote(remote: str) -> str:
    """`remote` when it is `unix:PATH` or `tcp:HOST:PORT`; BadRemote otherwise."""
    if remote.startswith("unix:") and len(remote) > len("unix:"):
        return remote
    if _TCP_RE.match(remote):
        return remote
    raise BadRemote(f"OVS database {remote!r} must be unix:PATH or tcp:IP:PORT")


def vswitchd_pid(remote: str) -> int | None:
    """The pid of a live ovs-vswitchd next to a `unix:` database (its pidfile in the socket's
    directory), else None. None also when the database is remote (nothing to look at)."""
    if not remote.startswith("unix:"):
        return None
    pidfile = Path(remote[len("unix:") :]).parent / "ovs-vswitchd.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def probe(remote: str, timeout: float) -> None:
    """Connect once to `remote` (validated); OvsdbUnavailable when nothing listens there."""
    try:
        if remote.startswith("unix:"):
            path = remote[len("unix:") :]
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(path)
        else:
            match = _TCP_RE.match(remote)
            assert match is not None
            host = match["host"].strip("[]")
            with socket.create_connection((host, int(match["port"])), timeout=timeout):
                pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OvsdbUnavailable(f"cannot reach the OVS database at {remote}: {reason}") from exc
