"""The controller API in-process: hostile request bodies get a clean 4xx with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_app import ADMIN_TOKEN, NODE_TOKEN, app_client, controller_app

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
PORT = '{"node": "host1", "uid": "u", "sandbox": "s", "pci": "0000:02:00.1", '
PORT += '"pf_mac": "02:00:00:00:00:01", "vf_num": %s}'


@pytest.mark.asyncio
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000])
async def test_non_finite_numbers_get_a_422_with_a_reason(tmp_path: Path, number: str) -> None:
    async with app_client(tmp_path) as client:
        resp = await client.put("/v1/ports/default/p", content=PORT % number, headers=ADMIN)
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail"][0]["type"] == "json_invalid"
        resp = await client.put(
            "/v1/ports/default/p", params={"timeout": number}, content=PORT % 1, headers=ADMIN
        )
        assert resp.status_code == 422, resp.text


@pytest.mark.asyncio
async def test_anonymous_requests_get_401_before_the_body_is_parsed(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        for body in ("{not json", PORT % "NaN", '{"surprise": 1}', PORT % 1):
            resp = await client.put(
                "/v1/ports/default/p", content=body, headers={"Content-Type": "application/json"}
            )
            assert resp.status_code == 401, resp.text
            assert resp.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer not-a-token-0123456789"}
        assert (await client.put("/v1/nodes/x", content="{", headers=bad)).status_code == 401
        assert (await client.get("/v1/no/such/path")).status_code == 401


@pytest.mark.asyncio
async def test_only_health_checks_are_open_by_default(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503  # no NB: open, not ready
        for path in ("/metrics", "/openapi.json"):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.get("/docs")).status_code in (401, 404)
        node = {"Authorization": f"Bearer {NODE_TOKEN}"}
        assert (await client.get("/metrics", headers=node)).status_code == 403
        assert (await client.get("/openapi.json", headers=node)).status_code == 200
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        metrics = await client.get("/metrics", headers=admin)
        assert metrics.status_code == 200 and "dpunet_controller_nb_ready" in metrics.text
        assert (await client.get("/docs", headers=admin)).status_code == 404


@pytest.mark.asyncio
async def test_anonymous_junk_methods_share_one_metrics_series(tmp_path: Path) -> None:
    async with controller_app(tmp_path) as (ctl, client):
        for i in range(3):
            assert (await client.request(f"JUNK{i}", "/v1/nodes")).status_code == 401
        methods = {
            sample.labels["method"]
            for metric in ctl.metrics.requests.collect()
            for sample in metric.samples
        }
        assert methods == {"other"}


@pytest.mark.asyncio
async def test_each_answer_is_counted_by_method_route_and_status(tmp_path: Path) -> None:
    async with controller_app(tmp_path, open_gate=True) as (ctl, client):
        assert (await client.get("/healthz")).status_code == 200
        body = PORT % 1
        for _ in range(2):  # host1 is not registered
            resp = await client.put("/v1/ports/default/p", content=body, headers=ADMIN)
            assert resp.status_code == 404, resp.text
        assert (await client.get("/v1/no/such/path", headers=ADMIN)).status_code == 404
        assert (await client.put("/v1/ports/default/p", content=body)).status_code == 401
        counts = {
            (s.labels["method"], s.labels["route"], s.labels["code"]): s.value
            for metric in ctl.metrics.requests.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }
        assert counts == {
            ("GET", "/healthz", "200"): 1,
            ("PUT", "/v1/ports/{namespace}/{name}", "404"): 2,
            ("GET", "unmatched", "404"): 1,
            ("PUT", "unmatched", "401"): 1,  # refused before routing
        }


@pytest.mark.asyncio
async def test_metrics_show_how_many_writes_each_nb_transaction_carried(tmp_path: Path) -> None:
    async with controller_app(tmp_path) as (ctl, client):
        ctl.nb.writes.transactions, ctl.nb.writes.writes_sent = 3, 7
        text = (await client.get("/metrics", headers=ADMIN)).text
        assert "dpunet_controller_nb_transactions_total 3.0" in text
        assert "dpunet_controller_nb_writes_total 7.0" in text


@pytest.mark.asyncio
async def test_settings_open_metrics_and_docs(tmp_path: Path) -> None:
    async with app_client(tmp_path, metrics_anonymous=True, api_docs=True) as client:
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/v1/nodes")).status_code == 401
