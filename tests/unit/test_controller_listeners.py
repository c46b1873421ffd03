"""The controller's TCP listeners: connections accepted on them have Nagle's algorithm off.

A response goes out in two writes (headers, then body); with Nagle on, the second waits
for the client's ACK of the first, which Linux delays up to 40 ms, on every request."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from dpunet.controller.daemon import _bind


def test_accepted_api_connections_send_without_nagle() -> None:
    listener = _bind("127.0.0.1:0")

    async def nodelay_of_accepted() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()

    try:
        assert asyncio.run(nodelay_of_accepted()) != 0
    finally:
        listener.close()


def test_a_unix_listener_is_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    listener = _bind(f"unix:{path}")
    try:
        assert listener.family == socket.AF_UNIX and path.is_socket()
    finally:
        listener.close()
