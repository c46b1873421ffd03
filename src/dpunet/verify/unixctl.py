"""JSON-RPC to ovs-vswitchd's control socket (what `ovs-appctl` talks to); OVSDB requests
go through `dpunet.ovsdb.rpc`.

The protocol is JSON-RPC 1.0 over a unix stream socket: the client sends
`{"method": <command>, "params": [<arg>, ...], "id": N}` and the daemon answers
`{"id": N, "result": <text>, "error": null}` or with `error` set. The socket is
`<OVS_RUNDIR>/ovs-vswitchd.<pid>.ctl`, the pid read from `ovs-vswitchd.pid`. A unix
socket path works from any network namespace.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 10.0
_MAX_REPLY = 256 * 1024 * 1024


class UnixctlError(Exception):
    """The daemon could not be reached, or it answered the command with an error."""


def vswitchd_socket(rundir: Path) -> Path:
    """The control socket of the ovs-vswitchd whose pidfile is in `rundir`."""
    pidfile = rundir / "ovs-vswitchd.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError) as exc:
        raise UnixctlError(f"cannot read {pidfile} (is ovs-vswitchd running?): {exc}") from exc
    path = rundir / f"ovs-vswitchd.{pid}.ctl"
    if not path.exists():
        raise UnixctlError(f"ovs-vswitchd (pid {pid}) has no control socket {path}")
    return path


def _connect(address: str | Path, timeout: float) -> socket.socket:
    """A connected stream socket to `unix:PATH`, `tcp:HOST:PORT` or a socket path."""
    text = str(address)
    if text.startswith("tcp:"):
        host, _, port = text[len("tcp:") :].rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(text.removeprefix("unix:"))
    except OSError:
        sock.close()
        raise
    return sock


def request(
    address: str | Path, method: str, params: list[Any], timeout: float = DEFAULT_TIMEOUT
) -> dict[str, Any]:
    """One JSON-RPC request and its reply object; OSError on failure."""
    deadline = time.monotonic() + timeout
    with _connect(address, timeout) as sock:
        sock.sendall(json.dumps({"method": method, "params": params, "id": 0}).encode())
        return _read_reply(sock, deadline)


def call(path: Path, command: str, *args: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run one unixctl command and return its text output; UnixctlError on failure."""
    try:
        reply = request(path, command, list(args), timeout)
    except OSError as exc:
        raise UnixctlError(f"{command} via {path}: {exc}") from exc
    if reply.get("error") is not None:
        raise UnixctlError(f"{command}: {str(reply['error']).strip()}")
    result = reply.get("result")
    return result if isinstance(result, str) else json.dumps(result)


def _read_reply(sock: socket.socket, deadline: float) -> dict[str, Any]:
    """Read until the reply to request 0 has arrived (the peer keeps the socket open)."""
    decoder = json.JSONDecoder()
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete answer in time")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a complete answer")
        buf += chunk
        if len(buf) > _MAX_REPLY:
            raise ConnectionError("answer too large")
        try:
            obj, _ = decoder.raw_decode(buf.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(obj, dict):
            raise ConnectionError(f"unexpected answer {obj!r}")
        return obj
