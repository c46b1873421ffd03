"""The controller daemon: the Controller and its HTTP server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from dpunet.controller.api import create_app
from dpunet.controller.app import Controller
from dpunet.controller.config import ControllerConfig
from dpunet.logs import event
from dpunet.ovsdb.rpc import set_ssl
from dpunet.tls import check_files, warn_insecure

log = logging.getLogger("dpunet.controller")


def _bind(address: str) -> socket.socket:
    """A listening socket for `HOST:PORT` or `unix:PATH` (a stale unix socket is replaced)."""
    if address.startswith("unix:"):
        path = Path(address[len("unix:") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on
        # connections whose socket says it is TCP. With Nagle on, a response written in
        # two parts (headers, body) waited for the client's delayed ACK: 45 ms a request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


# How long an idle client connection stays open: well past the clients' own expiry
# (httpx's 5 s), so the client always closes first. With equal timeouts an overloaded
# controller's timer fires late, closes a connection a request was just sent on, and
# the client sees "Server disconnected without sending a response" (a 60-pod burst
# over four pairs lost CNI DELs that way).
KEEP_ALIVE_S = 65


class _Server(uvicorn.Server):
    """A uvicorn server for some of the listeners (one for HTTPS, one for unix sockets);
    the daemon stops them all on a signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _tls_options(cfg: ControllerConfig) -> dict[str, Any]:
    """uvicorn's settings for the API's HTTPS listeners."""
    assert cfg.api_tls is not None
    required = cfg.api_client_cert == "required"
    return {
        "ssl_keyfile": str(cfg.api_tls.private_key),
        "ssl_certfile": str(cfg.api_tls.certificate),
        "ssl_ca_certs": str(cfg.api_tls.ca_cert),
        "ssl_cert_reqs": ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL,
    }


def _servers(
    cfg: ControllerConfig, app: Any, sockets: list[tuple[str, socket.socket]]
) -> list[tuple[uvicorn.Server, list[socket.socket]]]:
    """The servers and the sockets each serves: with `api_tls`, HTTPS on every TCP
    listener and plain HTTP on the unix sockets (they never leave the machine)."""
    groups: dict[bool, list[socket.socket]] = {True: [], False: []}
    for address, sock in sockets:
        groups[cfg.api_tls is not None and not address.startswith("unix:")].append(sock)
    out: list[tuple[uvicorn.Server, list[socket.socket]]] = []
    for tls, socks in groups.items():
        if socks:
            options = _tls_options(cfg) if tls else {}
            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_keep_alive=KEEP_ALIVE_S,
                **options,
            )
            out.append((_Server(config), socks))
    return out


async def serve(cfg: ControllerConfig) -> None:
    """Run the controller until SIGINT/SIGTERM."""
    cfg.check_tls()
    if cfg.insecure:
        warn_insecure(log, cfg.plain_transports())
    if cfg.api_tls is not None:
        check_files("api_tls", cfg.api_tls)
    if cfg.ovn_ssl is not None:
        check_files("ovn_ssl", cfg.ovn_ssl)
        set_ssl(cfg.ovn_ssl.private_key, cfg.ovn_ssl.certificate, cfg.ovn_ssl.ca_cert)
    sockets: list[tuple[str, socket.socket]] = []
    try:
        for address in cfg.listen:
            sockets.append((address, _bind(address)))
        ctl = Controller(cfg)
    except BaseException:  # an address in use, say: nothing stays open
        for _, sock in sockets:
            sock.close()
        raise
    servers = _servers(cfg, create_app(ctl), sockets)

    def _stop(signum: int = 0, frame: FrameType | None = None) -> None:
        for server, _ in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    ctl.start_sb()
    supervisor = asyncio.create_task(ctl.supervise(), name="dpunet-supervise")
    service_sync = asyncio.create_task(ctl.services.run(), name="dpunet-services")
    policy_sync = asyncio.create_task(ctl.policies.run(), name="dpunet-policies")

    def _supervisor_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            event(
                log, "controller.supervisor_failed", logging.CRITICAL, error=repr(task.exception())
            )
            _stop()

    supervisor.add_done_callback(_supervisor_done)
    event(
        log,
        "controller.start",
        listen=",".join(cfg.listen),
        https=cfg.api_tls is not None,
        nb=",".join(cfg.nb_remotes),
        sb=",".join(cfg.sb_remotes) if ctl.sb is not None else "-",
        cluster_cidr=str(cfg.cluster_cidr),
        node_prefix=cfg.node_prefix,
    )
    serving = [asyncio.create_task(server.serve(sockets=socks)) for server, socks in servers]
    try:
        await asyncio.wait(serving, return_when=asyncio.FIRST_COMPLETED)
    finally:
        _stop()  # one server ended (or failed): the others follow
        results = await asyncio.gather(*serving, return_exceptions=True)
        supervisor.cancel()
        service_sync.cancel()
        policy_sync.cancel()
        for task in (supervisor, service_sync, policy_sync):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ctl.close()
        for _, sock in sockets:
            sock.close()
        event(log, "controller.stop")
    for result in results:
        if isinstance(result, BaseException):
            raise result
