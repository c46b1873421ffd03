"""A blocking OpenFlow 1.3 connection to one bridge's management socket.

`ovs-vswitchd` listens on `unix:<rundir>/<bridge>.mgmt` for every bridge; a connection
there is a "service controller": it changes nothing about the bridge's fail mode or
controllers. Every call has a deadline; failures are `OpenFlowError` with the socket in
the text.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from dpunet.openflow import protocol as ofp
from dpunet.openflow.protocol import Flow, ProtocolError


class OpenFlowError(Exception):
    """The switch cannot be reached, refused a message, or answered nonsense."""


def mgmt_socket(ovs_db: str, bridge: str) -> Path:
    """The bridge's management socket next to the OVS database socket `ovs_db`
    (`unix:/run/openvswitch/db.sock` -> `/run/openvswitch/<bridge>.mgmt`)."""
    if ovs_db.startswith("unix:"):
        rundir = Path(ovs_db.removeprefix("unix:")).parent
    else:
        rundir = Path(os.environ.get("OVS_RUNDIR", "/var/run/openvswitch"))
    return rundir / f"{bridge}.mgmt"


class OpenFlowConnection:
    """One connection; use as a context manager. Not thread-safe."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._xids = itertools.count(1)

    def __enter__(self) -> OpenFlowConnection:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect and negotiate OpenFlow 1.3."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise OpenFlowError(f"{self.path}: {exc.strerror or exc}") from exc
        self._sock = sock
        try:
            xid = next(self._xids)
            self._send(ofp.hello(xid))
            msg = self._receive(time.monotonic() + self.timeout)
            version, msg_type = msg[0], msg[1]
            if msg_type == ofp.OFPT_ERROR:
                raise OpenFlowError(f"{self.path}: hello refused: {ofp.parse_error(msg)}")
            if msg_type != ofp.OFPT_HELLO or version < ofp.VERSION:
                raise OpenFlowError(
                    f"{self.path}: the switch offers OpenFlow version {version}, not 1.3 "
                    "(enable OpenFlow13 in the bridge's protocols)"
                )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ---------------------------------------------------------------- wire
    def _send(self, data: bytes) -> None:
        assert self._sock is not None, "not connected"
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise OpenFlowError(f"{self.path}: send: {exc.strerror or exc}") from exc

    def _receive(self, deadline: float) -> bytes:
        """The next message, answering echo requests on the way."""
        assert self._sock is not None, "not connected"
        while True:
            try:
                for msg in ofp.split_messages(self._buffer):
                    if msg[1] == ofp.OFPT_ECHO_REQUEST:
                        self._send(
                            ofp.message(ofp.OFPT_ECHO_REPLY, ofp.parse_header(msg)[3], msg[8:])
                        )
                        continue
                    return msg
            except ProtocolError as exc:
                raise OpenFlowError(f"{self.path}: {exc}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                raise OpenFlowError(f"{self.path}: no answer within {self.timeout}s")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise OpenFlowError(f"{self.path}: no answer within {self.timeout}s") from None
            except OSError as exc:
                raise OpenFlowError(f"{self.path}: receive: {exc.strerror or exc}") from exc
            if not chunk:
                raise OpenFlowError(f"{self.path}: the switch closed the connection")
            self._buffer += chunk

    def _exchange(self, requests: list[bytes]) -> list[bytes]:
        """Send `requests` then a barrier; the replies before the barrier's. An OFPT_ERROR
        for any of them is an OpenFlowError (what came before the error has been applied)."""
        barrier = next(self._xids)
        self._send(b"".join(requests) + ofp.message(ofp.OFPT_BARRIER_REQUEST, barrier))
        deadline = time.monotonic() + self.timeout
        replies: list[bytes] = []
        while True:
            msg = self._receive(deadline)
            _version, msg_type, _length, xid = ofp.parse_header(msg)
            if msg_type == ofp.OFPT_ERROR:
                raise OpenFlowError(f"{self.path}: {ofp.parse_error(msg)} (xid {xid})")
            if msg_type == ofp.OFPT_BARRIER_REPLY and xid == barrier:
                return replies
            replies.append(msg)

    # ----------------------------------------------------------------- API
    def flows(self, cookie: int, cookie_mask: int) -> list[Flow]:
        """Every flow whose cookie matches `cookie` under `cookie_mask`, in all tables."""
        replies = self._exchange([ofp.flow_stats_request(next(self._xids), cookie, cookie_mask)])
        out: list[Flow] = []
        for msg in replies:
            if msg[1] != ofp.OFPT_MULTIPART_REPLY:
                continue
            try:
                flows, _more = ofp.parse_flow_stats(msg)
            except ProtocolError as exc:
                raise OpenFlowError(f"{self.path}: {exc}") from exc
            out += flows
        return out

    def add(self, flows: list[Flow]) -> None:
        """Add the flows (one barrier for all)."""
        if flows:
            self._exchange([ofp.flow_mod(next(self._xids), ofp.OFPFC_ADD, f) for f in flows])

    def delete_cookies(self, cookies: list[int]) -> None:
        """Delete, in every table, the flows whose cookie is exactly one of `cookies`."""
        requests = [
            ofp.flow_mod(
                next(self._xids),
                ofp.OFPFC_DELETE,
                Flow(table=ofp.OFPTT_ALL, priority=0, match=ofp.Match(), cookie=cookie),
                cookie_mask=0xFFFFFFFFFFFFFFFF,
            )
            for cookie in cookies
        ]
        if requests:
            self._exchange(requests)
