"""The controller API in-process: hostile request bodies get a clean 4xx with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_app import ADMIN_TOKEN, app_client

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
