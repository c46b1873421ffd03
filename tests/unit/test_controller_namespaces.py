"""Standalone mode: a node token is limited to the namespaces the token file gives it."""

from __future__ import annotations

from pathlib import Path

import pytest
from controller_app import ADMIN_TOKEN, NODE_TOKEN, app_client

from dpunet.controller.auth import Principal, TokenFileError, parse_tokens

HOST2_TOKEN = "node-token-host2-0123456789"
ANY_TOKEN = "node-token-host3-0123456789"
TOKENS = f"{HOST2_TOKEN} node:host2 namespaces=prod,dev\n{ANY_TOKEN} node:host3 namespaces=*\n"
PORT = {
    "uid": "u",
    "sandbox": "s",
    "pci": "0000:02:00.1",
    "pf_mac": "02:00:00:00:00:01",
    "vf_num": 1,
}


def test_node_tokens_carry_their_namespaces() -> None:
    tokens = parse_tokens(f"{NODE_TOKEN} node:host1\n{TOKENS}")
    host1, host2, host3 = tokens[NODE_TOKEN], tokens[HOST2_TOKEN], tokens[ANY_TOKEN]
    assert host1.may_use_namespace("default") and not host1.may_use_namespace("prod")
    assert host2 == Principal(admin=False, node="host2", namespaces=frozenset({"prod", "dev"}))
    assert not host2.may_use_namespace("default")
    assert host3.may_use_namespace("anything") and Principal(admin=True).may_use_namespace("x")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("node:h namespaces=", "namespaces= needs"),
        ("node:h namespaces=Prod", "not a DNS label"),
        ("node:h namespaces=a,,b", "not a DNS label"),
        ("admin namespaces=a", "admin has every namespace"),
        ("node:h prod", "namespaces=<ns>"),
    ],
)
def test_bad_namespace_clauses_are_named(line: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(f"{NODE_TOKEN} {line}\n")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("token", "node", "namespace", "status"),
    [
        (NODE_TOKEN, "host1", "default", 404),  # allowed: ends at "node not registered"
        (NODE_TOKEN, "host1", "prod", 403),
        (HOST2_TOKEN, "host2", "prod", 404),
        (HOST2_TOKEN, "host2", "default", 403),
        (ANY_TOKEN, "host3", "kube-system", 404),
        (ADMIN_TOKEN, "host1", "prod", 404),
    ],
)
async def test_a_port_outside_the_tokens_namespaces_is_403(
    tmp_path: Path, token: str, node: str, namespace: str, status: int
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with app_client(tmp_path, open_gate=True, tokens=TOKENS) as client:
        resp = await client.put(
            f"/v1/ports/{namespace}/web", json={**PORT, "node": node}, headers=headers
        )
        assert resp.status_code == status, resp.text
        if status == 403:
            assert f"may not use namespace {namespace}" in resp.json()["detail"]
            listed = await client.get("/v1/ports", params={"namespace": namespace}, headers=headers)
            assert listed.status_code == 403, listed.text
