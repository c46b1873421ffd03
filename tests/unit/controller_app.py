"""The controller's ASGI app in-process (no NB connection): what requests that never
reach OVN Northbound get (validation, authentication, authorization before lookups)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from dpunet.contract.api import NodeSpec
from dpunet.controller.api import create_app
from dpunet.controller.app import Controller
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig

ADMIN_TOKEN = "admin-token-0123456789abcdef"
NODE_TOKEN = "node-token-host1-0123456789"


def token_file(directory: Path, extra: str = "") -> Path:
    """A token file (mode 0600) with an admin and a host1 token, and `extra` lines."""
    path = directory / "tokens"
    path.write_text(f"{ADMIN_TOKEN} admin\n{NODE_TOKEN} node:host1\n{extra}")
    path.chmod(0o600)
    return path


@asynccontextmanager
async def controller_app(
    directory: Path, open_gate: bool = False, tokens: str = "", **settings: Any
) -> AsyncIterator[tuple[Controller, httpx.AsyncClient]]:
    """An in-process controller (its NB never connected) and an HTTP client of its app.
    With `open_gate` requests are let in as if NB had been loaded, with no node
    registered: a well-formed port request then ends at "node not registered" (404),
    before NB. `tokens`: more token file lines."""
    cfg = ControllerConfig(
        nb_remotes=[f"unix:{directory / 'no-nb.sock'}"],
        token_file=token_file(directory, tokens),
        nb_timeout=1,
        port_timeout=1,
        **settings,
    )
    ctl = Controller(cfg)
    if open_gate:
        await ctl.state.gate.open()
    transport = httpx.ASGITransport(app=create_app(ctl))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as client:
            yield ctl, client
    finally:
        await ctl.close()


@asynccontextmanager
async def app_client(
    directory: Path, open_gate: bool = False, tokens: str = "", **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client of `controller_app`."""
    async with controller_app(directory, open_gate, tokens, **settings) as (_, client):
        yield client


class FakeNodes:
    """The node service's registration, recorded."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, NodeSpec]] = []

    async def put(self, who: Principal, name: str, spec: NodeSpec) -> None:
        assert who.admin
        self.puts.append((name, spec))
