"""Property: hostile port and node bodies through the controller app (in-process, httpx
ASGI transport) never crash it and never get a 5xx; every error is JSON with a reason.
No NB: the gate is open and no node is registered, so a well-formed port request ends at
404 "node not registered" before anything would touch NB."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from controller_app import ADMIN_TOKEN, NODE_TOKEN, app_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PORT_FIELDS = ["node", "sandbox", "uid", "ifname", "pci", "pf_mac", "vf_num", "labels"]
NODE_FIELDS = ["role", "chassis", "node_ip", "next_hop", "gateway_mac", "mgmt_pf_mac"]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.sampled_from([0, -1, 4095, 4096, 2**63, -(2**63) - 1]),
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["host1", "²", "٣", "0000:02:00.1", "02:00:00:00:00:01", "\x00", "eth0"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def body_of(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts over the model's own keys (and a stray one) with values of any JSON type."""
    keys = st.sampled_from([*fields, "surprise"])
    return st.dictionaries(keys, values, max_size=len(fields) + 1)


def encoded(body: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity included."""
    return json.dumps(body, allow_nan=True).encode()


raw_bodies = st.one_of(
    body_of(PORT_FIELDS).map(encoded),
    st.builds(
        lambda base, number: encoded(base)[:-1] + f', "vf_num": {number}}}'.encode(),
        st.fixed_dictionaries({"node": st.just("host1"), "uid": texts, "sandbox": texts}),
        st.sampled_from(["NaN", "-Infinity", "1e400", "9" * 5000, "1.0", "-0"]),
    ),
    st.binary(max_size=64),
)


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert resp.json()["detail"], resp.text


FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_port_and_node_bodies_never_get_a_5xx(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    context = app_client(tmp_path, open_gate=True)
    client = loop.run_until_complete(context.__aenter__())
    tokens = {"admin": ADMIN_TOKEN, "node": NODE_TOKEN}

    @FUZZ
    @given(body=raw_bodies, who=st.sampled_from(sorted(tokens)), name=texts)
    def port_put(body: bytes, who: str, name: str) -> None:
        headers = {"Authorization": f"Bearer {tokens[who]}", "Content-Type": "application/json"}
        for path in ("/v1/ports/default/p", f"/v1/ports/default/{name}"):
            try:
                url = httpx.URL("http://ctl").join(path)
            except httpx.InvalidURL:
                continue
            check(loop.run_until_complete(client.put(url, content=body, headers=headers)))

    @FUZZ
    @given(body=body_of(NODE_FIELDS).map(encoded))
    def node_put(body: bytes) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        check(loop.run_until_complete(client.put("/v1/nodes/n1", content=body, headers=headers)))

    try:
        port_put()
        node_put()
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()
