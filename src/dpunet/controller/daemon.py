"""The controller daemon: the Controller and its HTTP server until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from types import FrameType

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
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the stop signal once it has shut down; the controller then only
    has to finish its own cleanup, so the signal is absorbed here."""


async def serve(cfg: ControllerConfig) -> None:
    """Run the controller until SIGINT/SIGTERM."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _after_shutdown)
    if cfg.insecure:
        warn_insecure(log, cfg.plain_transports())
    if cfg.ovn_ssl is not None:
        check_files("ovn_ssl", cfg.ovn_ssl)
        set_ssl(cfg.ovn_ssl.private_key, cfg.ovn_ssl.certificate, cfg.ovn_ssl.ca_cert)
    sockets: list[socket.socket] = []
    try:
        for address in cfg.listen:
            sockets.append(_bind(address))
        ctl = Controller(cfg)
    except BaseException:  # an address in use, say: nothing stays open
        for sock in sockets:
            sock.close()
        raise
    server = uvicorn.Server(
        uvicorn.Config(create_app(ctl), log_config=None, access_log=False, lifespan="off")
    )
    ctl.start_sb()
    supervisor = asyncio.create_task(ctl.supervise(), name="dpunet-supervise")
    service_sync = asyncio.create_task(ctl.services.run(), name="dpunet-services")
    policy_sync = asyncio.create_task(ctl.policies.run(), name="dpunet-policies")

    def _supervisor_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            event(
                log, "controller.supervisor_failed", logging.CRITICAL, error=repr(task.exception())
            )
            server.should_exit = True

    supervisor.add_done_callback(_supervisor_done)
    event(
        log,
        "controller.start",
        listen=",".join(cfg.listen),
        nb=",".join(cfg.nb_remotes),
        sb=",".join(cfg.sb_remotes) if ctl.sb is not None else "-",
        cluster_cidr=str(cfg.cluster_cidr),
        node_prefix=cfg.node_prefix,
    )
    try:
        await server.serve(sockets=sockets)
    finally:
        supervisor.cancel()
        service_sync.cancel()
        policy_sync.cancel()
        for task in (supervisor, service_sync, policy_sync):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ctl.close()
        for sock in sockets:
            sock.close()
        event(log, "controller.stop")
