"""A full node's gateway MAC report (`PUT /v1/nodes/{name}/gateway`,
controller/registration.py): only the node's own token (or admin), a unicast MAC or 422,
nothing written when the MAC is in place; standalone mode re-registers the node with it,
Kubernetes mode annotates the Node (`dpunet.io/gateway-mac`, k8s/bindings.py)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from controller_app import ADMIN_TOKEN, NODE_TOKEN, FakeNodes, controller_app
from lightkube.resources.core_v1 import Node

from dpunet.contract.api import GatewayReport, NodeRole
from dpunet.controller.auth import Principal
from dpunet.controller.errors import BadRequest, NotFound
from dpunet.controller.k8s.bindings import NodeAnnotations
from dpunet.controller.registration import DpuRegistrar, NodeRegistrations
from dpunet.controller.topology import NodeRecord

CP_TOKEN = "node-token-cp-0123456789abc"
DPU_TOKEN = "dpu-token-dpu1-0123456789ab"
CP_MAC = "0a:58:c0:00:02:0a"
BRETH0 = "02:00:00:00:0c:01"


def _record(name: str, role: NodeRole, n: int) -> NodeRecord:
    return NodeRecord(
        name=name, role=role, chassis=name, node_ip=IPv4Interface(f"192.0.2.{n}/24"),
        next_hop=IPv4Address("192.0.2.1"), subnet=IPv4Network(f"10.233.{64 + n}.0/24"),
        join_ip=IPv4Address(f"100.64.0.{n}"), gateway_mac=f"0a:58:c0:00:02:{n:02x}",
    )  # fmt: skip


def test_the_route_in_standalone_mode(tmp_path: Path) -> None:
    """Own token only; a bad MAC is 422; the MAC in place writes nothing; a new one
    re-registers the node with every other field kept."""

    async def scenario() -> None:
        tokens = f"{CP_TOKEN} node:cp\n{DPU_TOKEN} dpu:dpu1\n"
        async with controller_app(tmp_path, open_gate=True, tokens=tokens) as (ctl, http):
            ctl.state.add_node(_record("cp", NodeRole.FULL, 10))
            ctl.state.add_node(_record("host1", NodeRole.DPU_HOST, 11))
            nodes = FakeNodes()
            assert isinstance(ctl.registrar.store, NodeRegistrations)
            ctl.registrar.store.nodes = nodes  # type: ignore[assignment]

            async def put(token: str, node: str, body: dict[str, Any]) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {token}"}
                answer = await http.put(f"/v1/nodes/{node}/gateway", json=body, headers=headers)
                return answer.status_code, answer.json()

            status, body = await put(CP_TOKEN, "cp", {"gateway_mac": CP_MAC})
            assert status == 200 and body == {"node": "cp", "gateway_mac": CP_MAC, "changed": False}
            assert nodes.puts == []
            for bad in ("01:00:5e:00:00:01", "00:00:00:00:00:00", "zz"):
                assert (await put(CP_TOKEN, "cp", {"gateway_mac": bad}))[0] == 422
            assert (await put(CP_TOKEN, "cp", {"gateway_mac": BRETH0, "x": 1}))[0] == 422
            for token in (NODE_TOKEN, DPU_TOKEN):  # host1's node token, a DPU's
                status, body = await put(token, "cp", {"gateway_mac": BRETH0})
                assert status == 403, body
            status, body = await put(CP_TOKEN, "host1", {"gateway_mac": BRETH0})
            assert status == 403 and "only its own" in body["detail"]
            status, body = await put(ADMIN_TOKEN, "host1", {"gateway_mac": BRETH0})
            assert status == 400 and "dpu-host node" in body["detail"]
            assert (await put(ADMIN_TOKEN, "cp7", {"gateway_mac": BRETH0}))[0] == 404
            assert nodes.puts == []
            status, body = await put(CP_TOKEN, "cp", {"gateway_mac": BRETH0.upper()})
            assert status == 200 and body["changed"] is True and body["gateway_mac"] == BRETH0
            [(name, spec)] = nodes.puts
            assert (name, spec.gateway_mac, spec.role, spec.chassis, str(spec.node_ip)) == (
                "cp", BRETH0, NodeRole.FULL, "cp", "192.0.2.10/24",
            )  # fmt: skip

    asyncio.run(asyncio.wait_for(scenario(), 30))


class FakeClient:
    """lightkube's patch, recorded; answers the patched Node."""

    def __init__(self, source: FakeSource) -> None:
        self.source = source
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def patch(self, kind: Any, name: str, patch: dict[str, Any], **_: Any) -> Node:
        self.patches.append((name, patch))
        obj = self.source.objects[name].to_dict()
        obj["metadata"]["annotations"].update(patch["metadata"]["annotations"])
        return Node.from_dict(obj)


class FakeSource:
    """The node source's watch cache."""

    def __init__(self, *nodes: Node) -> None:
        self.synced = True
        self.objects = {n.metadata.name: n for n in nodes if n.metadata and n.metadata.name}
        self.client = FakeClient(self)
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


def _node(name: str, labels: dict[str, str], **notes: str) -> Node:
    meta = {"name": name, "uid": f"uid-{name}", "labels": labels, "annotations": notes}
    return Node.from_dict({"metadata": meta})


def test_kubernetes_mode_annotates_the_full_node() -> None:
    """The full node's Node gets `dpunet.io/gateway-mac` in a patch carrying its uid, once;
    a dpu-host's or a DPU's Node is refused."""

    async def scenario() -> None:
        source = FakeSource(
            _node("cp", {}),
            _node("host1", {"k8s.ovn.org/dpu-host": ""}),
            _node("dpu1", {"k8s.ovn.org/dpu": ""}),
        )
        registrar = DpuRegistrar(None, NodeAnnotations(source))  # type: ignore[arg-type]
        cp = Principal(admin=False, node="cp")
        report = GatewayReport(gateway_mac=BRETH0)
        assert (await registrar.report_gateway(cp, "cp", report)).changed
        assert (await registrar.report_gateway(cp, "cp", report)).changed is False
        assert source.client.patches == [
            (
                "cp",
                {"metadata": {"uid": "uid-cp", "annotations": {"dpunet.io/gateway-mac": BRETH0}}},
            )
        ]
        assert source.pokes == 1
        admin = Principal(admin=True)
        for name in ("host1", "dpu1"):
            with pytest.raises(BadRequest, match="not a full node"):
                await registrar.report_gateway(admin, name, report)
        with pytest.raises(NotFound):
            await registrar.report_gateway(admin, "cp7", report)
        assert len(source.client.patches) == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))
