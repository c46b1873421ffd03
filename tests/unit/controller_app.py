"""The controller's ASGI app in-process (no NB connection): what requests that never
reach OVN Northbound get (validation, authentication, authorization before lookups)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import httpx

from dpunet.contract.api import NodeRole, NodeSpec
from dpunet.controller.api import create_app
from dpunet.controller.app import Controller
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.topology import NodeRecord

ADMIN_TOKEN = "admin-token-0123456789abcdef"
NODE_TOKEN = "node-token-host1-0123456789"
# DPU agents' tokens (`dpu:<chassis>` lines of a token file)
DPU1_TOKEN = "dpu-token-dpu1-0123456789"
DPU2_TOKEN = "dpu-token-dpu2-0123456789"
DPU_TOKENS = f"{DPU1_TOKEN} dpu:dpu1\n{DPU2_TOKEN} dpu:dpu2\n"


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


def register_node(ctl: Controller, name: str, role: NodeRole, chassis: str, n: int) -> None:
    """Add node `name` (served by `chassis`) to the controller's state, addresses from `n`."""
    ctl.state.add_node(
        NodeRecord(
            name=name, role=role, chassis=chassis, node_ip=IPv4Interface(f"192.0.2.{n}/24"),
            next_hop=IPv4Address("192.0.2.1"), subnet=IPv4Network(f"10.233.{64 + n}.0/24"),
            join_ip=IPv4Address(f"100.64.0.{n}"), gateway_mac=f"0a:58:c0:00:02:{n:02x}",
        )
    )  # fmt: skip


def bearer(token: str) -> dict[str, str]:
    """The header that sends `token`."""
    return {"Authorization": f"Bearer {token}"}
