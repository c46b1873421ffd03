"""DPU leases at the controller: renewal, expiry and the grace after a controller restart
(`DpuLeases` on a fake clock), and who may renew (the app in-process, no NB): only the
DPU the node is registered with (`dpu:<chassis>` token) or the admin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from controller_app import (
    ADMIN_TOKEN,
    DPU1_TOKEN,
    DPU2_TOKEN,
    DPU_TOKENS,
    NODE_TOKEN,
    bearer,
    controller_app,
    register_node,
)
from prometheus_client import generate_latest

from dpunet.contract.api import LeaseState, NodeInfo, NodeRole
from dpunet.controller.app import Controller
from dpunet.controller.auth import TokenFileError, parse_tokens
from dpunet.controller.leases import DpuLeases


class Clock:
    """Monotonic time the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------ lease logic
def test_a_renewed_lease_is_held_until_its_duration_passes() -> None:
    clock = Clock()
    leases = DpuLeases(15, clock)
    leases.renew("host1", "dpu1")
    clock.now += 15
    lease = leases.lease("host1", "dpu1")
    assert (lease.state, lease.renewed_ago, lease.silent_for) == (LeaseState.HELD, 15, 15)
    clock.now += 0.5
    lease = leases.lease("host1", "dpu1")
    assert lease.state is LeaseState.EXPIRED and lease.silent_for == 15.5
    assert leases.renew("host1", "dpu1").state is LeaseState.HELD


def test_a_restarted_controller_reports_unknown_for_one_duration_then_expired() -> None:
    clock = Clock()
    leases = DpuLeases(15, clock)  # no renewal seen since this controller started
    clock.now += 14
    lease = leases.lease("host1", "dpu1")
    assert (lease.state, lease.renewed_ago, lease.silent_for) == (LeaseState.UNKNOWN, None, 14)
    clock.now += 2
    lease = leases.lease("host1", "dpu1")
    assert (lease.state, lease.renewed_ago, lease.silent_for) == (LeaseState.EXPIRED, None, 16)


def test_a_renewal_by_the_node_s_former_dpu_does_not_count() -> None:
    clock = Clock()
    leases = DpuLeases(15, clock)
    clock.now += 20
    leases.renew("host1", "dpu1")
    assert leases.lease("host1", "dpu2").state is LeaseState.EXPIRED  # re-registered on dpu2
    leases.forget("host1")
    assert leases.lease("host1", "dpu1").state is LeaseState.EXPIRED


# ---------------------------------------------------------------------- authorization
def with_nodes(
    tmp_path: Path, body: Callable[[Controller, httpx.AsyncClient, Clock], Awaitable[None]]
) -> None:
    """Run `body` against a controller with host1 (served by dpu1), host2 (dpu2) and the
    full node cp registered, its leases on a fake clock."""

    async def scenario() -> None:
        async with controller_app(tmp_path, open_gate=True, tokens=DPU_TOKENS) as (ctl, http):
            clock = Clock()
            ctl.nodes.leases = DpuLeases(15, clock)
            register_node(ctl, "host1", NodeRole.DPU_HOST, "dpu1", 11)
            register_node(ctl, "host2", NodeRole.DPU_HOST, "dpu2", 12)
            register_node(ctl, "cp", NodeRole.FULL, "cp", 10)
            await body(ctl, http, clock)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_the_dpu_serving_a_node_renews_its_lease(tmp_path: Path) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient, clock: Clock) -> None:
        clock.now += 20  # past the grace: host1's lease is expired
        node = NodeInfo.model_validate(
            (await http.get("/v1/nodes/host1", headers=bearer(NODE_TOKEN))).json()
        )
        assert node.dpu_lease is not None and node.dpu_lease.state is LeaseState.EXPIRED
        answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer(DPU1_TOKEN))
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "held" and answer.json()["chassis"] == "dpu1"
        node = NodeInfo.model_validate(
            (await http.get("/v1/nodes/host1", headers=bearer(NODE_TOKEN))).json()
        )
        assert node.dpu_lease is not None and node.dpu_lease.state is LeaseState.HELD
        metrics = generate_latest(ctl.metrics.registry).decode()
        assert 'dpunet_controller_dpu_lease_expired{chassis="dpu1",node="host1"} 0.0' in metrics
        assert 'dpunet_controller_dpu_lease_expired{chassis="dpu2",node="host2"} 1.0' in metrics
        cp = (await http.get("/v1/nodes/cp", headers=bearer(ADMIN_TOKEN))).json()
        assert cp["dpu_lease"] is None  # a full node has no DPU

    with_nodes(tmp_path, body)


@pytest.mark.parametrize(
    ("token", "node", "status", "reason"),
    [
        (DPU2_TOKEN, "host1", 403, "dpu:dpu2 may not renew the DPU lease of node host1"),
        (
            DPU1_TOKEN,
            "nowhere",
            403,
            "dpu:dpu1 may not renew the DPU lease of node nowhere",
        ),  # before lookup
        (DPU1_TOKEN, "cp", 403, "dpu:dpu1 may not renew the DPU lease of node cp"),
        (
            NODE_TOKEN,
            "host1",
            403,
            "node:host1 may not renew the DPU lease of node host1",
        ),  # the host itself
        (ADMIN_TOKEN, "nowhere", 404, "node nowhere is not registered"),
        (ADMIN_TOKEN, "cp", 400, "node cp is a full node: it has no DPU"),
    ],
)
def test_only_the_node_s_own_dpu_or_the_admin_may_renew(
    tmp_path: Path, token: str, node: str, status: int, reason: str
) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient, clock: Clock) -> None:
        answer = await http.put(f"/v1/nodes/{node}/dpu-lease", headers=bearer(token))
        assert answer.status_code == status and answer.json()["detail"].startswith(reason)
        assert ctl.nodes.leases is not None
        assert ctl.nodes.leases.lease("host1", "dpu1").renewed_ago is None  # nothing renewed

    with_nodes(tmp_path, body)


def test_an_anonymous_renewal_is_401_and_the_admin_may_renew(tmp_path: Path) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient, clock: Clock) -> None:
        assert (await http.put("/v1/nodes/host1/dpu-lease")).status_code == 401
        answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer("x" * 24))
        assert answer.status_code == 401
        answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer(ADMIN_TOKEN))
        assert answer.status_code == 200 and answer.json()["state"] == "held"

    with_nodes(tmp_path, body)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nodes"), ("GET", "/v1/nodes/host1"), ("GET", "/v1/ports"),
     ("GET", "/v1/services"), ("DELETE", "/v1/ports/default/web")],
)  # fmt: skip
def test_a_dpu_token_may_do_nothing_else(tmp_path: Path, method: str, path: str) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient, clock: Clock) -> None:
        answer = await http.request(method, path, headers=bearer(DPU1_TOKEN))
        assert answer.status_code == 403, answer.text
        assert (
            "dpu:dpu1 may only register itself and renew the DPU lease" in answer.json()["detail"]
        )

    with_nodes(tmp_path, body)


def test_leases_are_off_with_no_duration(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with controller_app(
            tmp_path, open_gate=True, tokens=DPU_TOKENS, dpu_lease_duration=None
        ) as (ctl, http):
            register_node(ctl, "host1", NodeRole.DPU_HOST, "dpu1", 11)
            node = (await http.get("/v1/nodes/host1", headers=bearer(ADMIN_TOKEN))).json()
            assert node["dpu_lease"] is None
            answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer(DPU1_TOKEN))
            assert answer.status_code == 400 and "leases are off" in answer.json()["detail"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_dpu_token_lines() -> None:
    (principal,) = parse_tokens("dpu-token-dpu1-0123456789 dpu:dpu1\n").values()
    assert (principal.dpu, principal.node, principal.admin, str(principal)) == (
        "dpu1", None, False, "dpu:dpu1",
    )  # fmt: skip
    assert not principal.may_use_namespace("default") and not principal.may_act_for("dpu1")
    with pytest.raises(TokenFileError, match="a DPU uses no namespace"):
        parse_tokens("dpu-token-dpu1-0123456789 dpu:dpu1 namespaces=*\n")
    with pytest.raises(TokenFileError, match="subject must be"):
        parse_tokens("dpu-token-dpu1-0123456789 dpu:\n")
