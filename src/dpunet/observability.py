"""A small HTTP server for a daemon's `/metrics`, `/healthz` and `/readyz`.

asyncio streams, GET/HEAD only, one request per connection: enough for Prometheus
and for kubelet probes, with nothing to configure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.exposition import generate_latest

_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Response:
    """An HTTP answer."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Response]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not an address like 127.0.0.1:9476")
    host = host.strip("[]")
    if host not in ("", "localhost"):
        ipaddress.ip_address(host)
    return host or "0.0.0.0", int(port)


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """`/metrics`: the registry in the Prometheus text format."""
    return lambda: Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)


def check_handler(check: Callable[[], tuple[bool, str]]) -> Handler:
    """A health/readiness endpoint: 200 with the detail when `check` passes, else 503."""

    def handle() -> Response:
        ok, detail = check()
        return Response(200 if ok else 503, (detail + "\n").encode())

    return handle


async def _serve_one(
    routes: dict[str, Handler], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        writer.close()
        return
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3:
        response = Response(400, b"bad request\n")
    elif parts[0] not in ("GET", "HEAD"):
        response = Response(405, b"only GET\n")
    else:
        handler = routes.get(parts[1].split("?", 1)[0])
        response = handler() if handler else Response(404, b"not found\n")
    reason = _REASONS.get(response.status, "Service Unavailable")
    writer.write(
        (
            f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
    )
    if parts and parts[0] != "HEAD":
        writer.write(response.body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def start_http(host: str, port: int, routes: dict[str, Handler]) -> asyncio.Server:
    """Listen on `host:port` and answer `routes` (path -> handler)."""
    return await asyncio.start_server(
        lambda r, w: _serve_one(routes, r, w), host, port, limit=_MAX_REQUEST
    )
