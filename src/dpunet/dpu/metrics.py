"""Prometheus metrics of `dpunet-dpu` and a small HTTP server for `/metrics`, `/healthz`
and `/readyz` (asyncio streams; GET only, one request per connection)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 5.0


class Metrics:
    """Every metric the daemon exports, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.plug_latency = Histogram(
            "dpunet_dpu_plug_latency_seconds",
            "From the first reconcile that saw a Port_Binding to its representor being a "
            "working port of br-int (ofport assigned).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ports_owned = Gauge(
            "dpunet_dpu_ports_owned", "br-int ports carrying dpunet-owned=true.", registry=r
        )
        self.actions = Counter(
            "dpunet_dpu_reconcile_actions_total",
            "Changes made by the reconcile loop, by action.",
            ["action"],
            registry=r,
        )
        self.reconciles = Counter(
            "dpunet_dpu_reconciles_total", "Reconcile passes, by result.", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "dpunet_dpu_reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Gauge(
            "dpunet_dpu_refused_bindings",
            "Port_Bindings for this chassis the agent currently refuses, by reason.",
            ["reason"],
            registry=r,
        )
        self.refusals = Counter(
            "dpunet_dpu_refusals_total",
            "Port_Bindings newly refused (once per binding and reason), by reason.",
            ["reason"],
            registry=r,
        )
        self.sb_synced = Gauge(
            "dpunet_dpu_sb_synced", "1 while the SB replica is complete and current.", registry=r
        )
        self.sb_resyncs = Counter(
            "dpunet_dpu_sb_resyncs_total",
            "Times the SB monitor (re)synchronised (each one triggers a full reconcile).",
            registry=r,
        )

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Response:
    """An HTTP answer."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Response]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def metrics_handler(metrics: Metrics) -> Handler:
    """`/metrics`."""
    return lambda: Response(200, metrics.exposition(), CONTENT_TYPE_LATEST)


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
