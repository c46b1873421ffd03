"""`PendingSSLStream` against a real TLS server (dpunet's PKI): bytes OpenSSL decrypted
but the reader has not taken yet wake the poller, where python-ovs' own stream waits for
the next packet."""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ovs import jsonrpc, poller, stream

from dpunet.ovsdb.rpc import PendingSSLStream, set_ssl
from dpunet.setup import pki

MSG_BYTES = 128  # 4096 / 128 = 32: the first 4096-byte read ends on a message boundary
COUNT = 60  # 7680 bytes, one TLS record (< 16 KB)
STALL_MS = 1000


def _batch() -> bytes:
    """COUNT JSON-RPC notifications of MSG_BYTES each, as one block of text."""
    msgs = []
    for i in range(COUNT):
        head = f'{{"id":null,"method":"update","params":[{i},"'
        msgs.append(head + "x" * (MSG_BYTES - len(head) - 3) + '"]}')
    text = "".join(msgs)
    assert len(text) == COUNT * MSG_BYTES
    return text.encode()


class _Server:
    """A TLS server on 127.0.0.1 that, once told, writes the batch in one `sendall` (one
    TLS record) and then holds the connection open without writing again."""

    def __init__(self, cert: pki.Certificate) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.certificate, cert.private_key)
        self.ctx.load_verify_locations(cert.ca_cert)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.go = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with self.ctx.wrap_socket(conn, server_side=True) as tls:
            if self.go.wait(10):
                tls.sendall(_batch())
            self.done.wait(10)

    def close(self) -> None:
        self.go.set()
        self.done.set()
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def connected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[stream.Stream]:
    """A python-ovs `ssl:` stream, opened the way dpunet's clients open one (after
    `set_ssl`; python-ovs' own class when the test's parameter says so), connected to
    `_Server`, the batch sent and arrived at the socket."""
    d = tmp_path / "pki"
    pki.init_ca(d)
    server_cert = pki.issue(d, "ovsdb", ips=["127.0.0.1"])
    client_cert = pki.issue(d, "client")
    # python-ovs keeps these process-wide: restore them after the test
    monkeypatch.setitem(stream.Stream._SOCKET_METHODS, "ssl:", stream.SSLStream)
    for name in ("_SSL_private_key_file", "_SSL_certificate_file", "_SSL_ca_cert_file"):
        monkeypatch.setattr(stream.Stream, name, getattr(stream.Stream, name))
    set_ssl(client_cert.private_key, client_cert.certificate, client_cert.ca_cert)
    stream.Stream.register_method("ssl", getattr(request, "param", PendingSSLStream))
    server = _Server(server_cert)
    err, strm = stream.Stream.open_block(stream.Stream.open(f"ssl:127.0.0.1:{server.port}"), 5000)
    assert err == 0
    try:
        server.go.set()
        assert select.select([strm.socket], [], [], 5)[0], "the batch never arrived"
        yield strm
    finally:
        strm.close()
        server.close()


def _read_4096(strm: stream.Stream) -> bytes:
    """The first 4096 bytes of the batch (the TLS 1.3 session tickets before it may make
    a read come back empty-handed)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        err, data = strm.recv(4096)
        if err == 0:
            return bytes(data)
        select.select([strm.socket], [], [], 0.1)
    raise AssertionError("no data within 5 s")


def _blocked_ms(strm: stream.Stream, recv_wait: object, timeout_ms: int) -> float:
    """How long a poller waited on `recv_wait(strm, poller)` with a `timeout_ms` timer."""
    p = poller.Poller()
    recv_wait(strm, p)  # type: ignore[operator]
    p.timer_wait(timeout_ms)
    start = time.monotonic()
    p.block()
    return (time.monotonic() - start) * 1000


def test_recv_wait_wakes_for_bytes_openssl_holds(connected: stream.Stream) -> None:
    strm = connected
    assert type(strm) is PendingSSLStream  # set_ssl registered it for `ssl:`
    assert len(_read_4096(strm)) == 4096
    assert strm.socket.pending() == COUNT * MSG_BYTES - 4096  # the rest of the record
    # python-ovs' own wait polls the socket, which has nothing more: it sleeps to the timer
    assert _blocked_ms(strm, stream.SSLStream.recv_wait, 300) >= 250
    # the new one wakes at once
    assert _blocked_ms(strm, PendingSSLStream.recv_wait, 5000) < 1000
    err, rest = strm.recv(8192)
    assert (err, len(rest)) == (0, COUNT * MSG_BYTES - 4096)
    assert strm.socket.pending() == 0


@pytest.mark.parametrize("connected", [PendingSSLStream, stream.SSLStream], indirect=True)
def test_jsonrpc_reader_taking_one_message_a_round_never_stalls(connected: stream.Stream) -> None:
    """A reader that handles a bounded number of messages per round (as `Idl.run` does)
    and then waits: with python-ovs' stream it stalls once, when the first read's 4096
    bytes end on a message boundary and the rest sits in OpenSSL; with ours, never."""
    rpc = jsonrpc.Connection(connected)
    got: list[int] = []
    stalls = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        err, msg = rpc.recv()
        if err == 0:
            got.append(msg.params[0])
        if len(got) == COUNT:
            break
        p = poller.Poller()
        rpc.wait(p)
        rpc.recv_wait(p)
        p.timer_wait(STALL_MS)
        start = time.monotonic()
        p.block()
        if time.monotonic() - start >= STALL_MS / 1000 * 0.9:
            stalls += 1
    assert got == list(range(COUNT))
    assert stalls == (0 if type(connected) is PendingSSLStream else 1)
