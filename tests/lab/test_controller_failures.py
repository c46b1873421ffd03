"""The controller under failure: a raft leader killed mid-burst, the controller itself
killed with SIGKILL mid-burst and restarted (state rebuilt from NB, orphans cleaned)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from controller_harness import (
    ControllerProc,
    OvnCentral,
    node_token,
    register,
    running,
    wait_until,
)

pytestmark = pytest.mark.lab

Result = tuple[str, dict[str, Any], httpx.Response | Exception]


async def _burst(
    ctl: ControllerProc,
    token: str,
    requests: list[tuple[str, dict[str, Any]]],
    workers: int,
    after: int,
    disrupt: Callable[[], None],
) -> list[Result]:
    """Send `requests` from `workers` sequential clients; call `disrupt` (in a thread)
    once `after` answers came back."""
    queue = list(requests)
    results: list[Result] = []
    fired = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            path, body = queue.pop(0)
            try:
                outcome: httpx.Response | Exception = await client.put(path, json=body)
            except httpx.HTTPError as exc:
                outcome = exc
            results.append((path, body, outcome))
            if len(results) >= after and not fired.is_set():
                fired.set()
                await asyncio.to_thread(disrupt)

    async with ctl.async_client(token) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return results


def _nb_ports(ovn: OvnCentral, prefix: str) -> dict[str, str]:
    rows = json.loads(
        ovn.nbctl("--format=json", "--columns=name,addresses", "list", "Logical_Switch_Port")
    )
    return {name: addr for name, addr in rows["data"] if name.startswith(prefix)}


def _answer_address(body: dict[str, Any]) -> str:
    return f"{body['mac']} {body['ips'][0].split('/')[0]}"


def test_raft_leader_killed_during_a_burst() -> None:
    """Every PUT either succeeds or fails cleanly (JSON 503/504); retries succeed; no
    address is handed out twice."""
    ovn = OvnCentral(members=3, northd=False).start()
    try:
        with running(ovn.nb_remotes, ("rafty",), nb_timeout=20) as ctl:
            with ctl.client() as admin:
                register(admin, "rafty", node_ip="192.0.2.60/24")
            leader = ovn.leader()
            assert leader is not None
            requests = [
                (f"/v1/ports/raft/p{i}", {"node": "rafty", "uid": f"u{i}", "sandbox": f"s{i}"})
                for i in range(160)
            ]
            results = asyncio.run(
                _burst(ctl, node_token("rafty"), requests, 16, 40, lambda: ovn.kill_member(leader))
            )
            answers: dict[str, dict[str, Any]] = {}
            retry = []
            for path, body, outcome in results:
                assert isinstance(outcome, httpx.Response), f"{path}: {outcome!r}"
                if outcome.status_code == 200:
                    answers[path] = outcome.json()
                else:
                    assert outcome.status_code in (503, 504), outcome.text
                    assert outcome.json()["detail"]
                    retry.append((path, body))
            with ctl.client(node_token("rafty")) as client:
                for path, body in retry:
                    resp = client.put(path, json=body)
                    assert resp.status_code == 200, resp.text
                    answers[path] = resp.json()
                # a second pass is idempotent: same answers
                for path, body in requests[:20]:
                    assert client.put(path, json=body).json() == answers[path]
            assert ovn.leader() not in (None, leader)
            assert len(answers) == 160
            addresses = [_answer_address(b) for b in answers.values()]
            assert len(set(addresses)) == 160
            nb = _nb_ports(ovn, "raft_")
            assert sorted(nb.values()) == sorted(addresses)
    finally:
        ovn.close()


def _owned(kind: str, node: str, **extra: str) -> list[str]:
    ids = {"dpunet:owner": "dpunet", "dpunet:kind": kind, "dpunet:node": node, **extra}
    return [f'external_ids:"{k}"="{v}"' for k, v in ids.items()]


def test_sigkill_mid_burst_then_restart_rebuilds_from_nb() -> None:
    ovn = OvnCentral(northd=False).start()
    ctl = ControllerProc(ovn.nb_remotes, ("k1", "k2"))
    try:
        ctl.start()
        with ctl.client() as admin:
            register(admin, "k1", node_ip="192.0.2.71/24")
            register(admin, "k2", role="dpu-host", chassis="dpu-k2", node_ip="192.0.2.72/24")

        def request(i: int) -> tuple[str, dict[str, Any]]:
            if i % 2:
                return f"/v1/ports/kill/p{i}", {"node": "k1", "uid": f"u{i}", "sandbox": f"s{i}"}
            vf = {"pci": "0000:02:00.2", "pf_mac": "02:d5:00:02:00:01", "vf_num": i % 100 + 1}
            body = {"node": "k2", "uid": f"u{i}", "sandbox": f"s{i}", **vf}
            return f"/v1/ports/kill/p{i}", body

        requests = [request(i) for i in range(120)]
        results = asyncio.run(
            _burst(
                ctl,
                "admin-token-0123456789abcdef",
                requests,
                12,
                40,
                lambda: ctl.kill(signal.SIGKILL),
            )
        )
        answered = {
            path: outcome.json()
            for path, _, outcome in results
            if isinstance(outcome, httpx.Response) and outcome.status_code == 200
        }
        assert 40 <= len(answered) < 120, "the controller was not killed mid-burst"

        # while it is down: orphans, a duplicate, a malformed port, a drifted port, and
        # objects that are not dpunet's
        victim = next(iter(answered.values()))
        ovn.nbctl(
            "lr-add",
            "GR_ghost",
            "--",
            "set",
            "Logical_Router",
            "GR_ghost",
            *_owned("gateway-router", "ghost"),
            "--",
            "ls-add",
            "ext_ghost",
            "--",
            "set",
            "Logical_Switch",
            "ext_ghost",
            *_owned("ext-switch", "ghost"),
            "--",
            "lrp-add",
            "ovn_cluster_router",
            "rtos-ghost",
            "0a:58:c6:12:c8:01",
            "198.18.200.1/24",
            "--",
            "set",
            "Logical_Router_Port",
            "rtos-ghost",
            *_owned("router-port", "ghost"),
        )
        pod_ids = {"dpunet:namespace": "zz", "dpunet:uid": "x", "dpunet:sandbox": "x"}
        ovn.nbctl(
            "lsp-add",
            victim["node"],
            "zz_dup",
            "--",
            "set",
            "Logical_Switch_Port",
            "zz_dup",
            f'addresses="{_answer_address(victim)}"',
            *_owned("pod", victim["node"], **pod_ids, **{"dpunet:pod": "dup"}),
        )
        ovn.nbctl(
            "lsp-add",
            "k1",
            "zz_badmac",
            "--",
            "set",
            "Logical_Switch_Port",
            "zz_badmac",
            'addresses="0a:58:00:00:00:01 198.18.0.250"',
            *_owned("pod", "k1", **pod_ids, **{"dpunet:pod": "badmac"}),
        )
        drifted = next(b for b in answered.values() if b["node"] == "k2")
        ovn.nbctl(
            "set", "Logical_Switch_Port", drifted["lsp"], "options:requested-chassis=elsewhere"
        )
        ovn.nbctl("lsp-add", "k1", "foreign-port", "--", "ls-add", "foreign-ls")

        ctl.start()
        answers = dict(answered)
        with ctl.client() as admin:
            for path, body in requests:
                resp = admin.put(path, json=body)
                assert resp.status_code == 200, resp.text
                if path in answered:
                    assert resp.json() == answered[path], "answer changed across the restart"
                answers[path] = resp.json()
            fresh = [
                admin.put(
                    f"/v1/ports/kill/new{i}", json={"node": "k1", "uid": f"n{i}", "sandbox": "s"}
                ).json()
                for i in range(10)
            ]
        show = ovn.nbctl("show")
        for gone in ("GR_ghost", "ext_ghost", "rtos-ghost", "zz_dup", "zz_badmac"):
            assert gone not in show, f"orphan {gone} left:\n{show}"
        for kept in ("foreign-port", "foreign-ls"):
            assert kept in show
        options = ovn.nbctl("get", "Logical_Switch_Port", drifted["lsp"], "options")
        assert "requested-chassis=dpu-k2" in options
        addresses = [_answer_address(b) for b in [*answers.values(), *fresh]]
        assert len(set(addresses)) == len(addresses) == 130
        nb = _nb_ports(ovn, "kill_")
        assert sorted(nb.values()) == sorted(addresses)
        log = ctl.log.read_text()
        assert "reconcile.orphan_node_removed" in log and "node=ghost" in log
    finally:
        ctl.close()
        ovn.close()


def test_standby_controller_takes_over_and_reconcile_repairs_drift() -> None:
    """Two controllers on one NB: only the holder of the NB lock is ready; when it dies
    the other takes over. Periodic reconcile repairs owned objects edited by hand and
    leaves the others alone."""
    ovn = OvnCentral(northd=False).start()
    first = ControllerProc(ovn.nb_remotes, ("sb1",), reconcile_interval=1)
    second = ControllerProc(ovn.nb_remotes, ("sb1",), reconcile_interval=1)
    try:
        first.start()
        second.start(wait_ready=False)
        with first.client() as admin:
            register(admin, "sb1", node_ip="192.0.2.81/24")
            port = admin.put("/v1/ports/sb/p", json={"node": "sb1", "uid": "u", "sandbox": "s"})
            assert port.status_code == 200

        def answers() -> bool:
            try:
                return httpx.get(f"{second.url}/healthz", timeout=2).json()["nb_connected"]
            except httpx.HTTPError:
                return False

        wait_until("the second controller to answer", answers)
        health = httpx.get(f"{second.url}/readyz", timeout=5)
        assert health.status_code == 503 and health.json()["nb_lock"] is False
        first.kill(signal.SIGKILL)
        second.wait_ready(15)
        ovn.nbctl("lr-route-del", "GR_sb1", "0.0.0.0/0")
        ovn.nbctl("set", "Logical_Switch_Port", "sb_p", "options:iface-id-ver=tampered")
        ovn.nbctl("ls-add", "hands-off", "--", "lsp-add", "sb1", "hands-off-port")

        def repaired() -> bool:
            routes = ovn.nbctl("lr-route-list", "GR_sb1")
            options = ovn.nbctl("get", "Logical_Switch_Port", "sb_p", "options")
            return "0.0.0.0/0" in routes and "iface-id-ver=u" in options

        wait_until("reconcile to repair the route and the port", repaired, timeout=10)
        show = ovn.nbctl("show")
        assert "hands-off" in show and "hands-off-port" in show
        with second.client() as admin:
            assert admin.get("/v1/ports/sb/p").json()["ips"] == port.json()["ips"]
    finally:
        first.close()
        second.close()
        ovn.close()
