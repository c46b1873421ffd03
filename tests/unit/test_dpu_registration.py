"""DPU registration (controller/registration.py): who may register, the checks against
OVN Southbound, the refusals (a 4xx with its reason, nothing written), and the DPU agent's
side (dpu/lease.py: register before renewing, again after a refused renewal). The SB and
the binding store are fakes behind the registrar's two narrow interfaces."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from controller_app import ADMIN_TOKEN, NODE_TOKEN, FakeNodes, controller_app
from pydantic import ValidationError

from dpunet.contract.api import (
    DpuBinding,
    DpuLease,
    DpuRegistration,
    LeaseState,
    NodeRole,
)
from dpunet.contract.client import ClientError
from dpunet.controller.auth import Principal
from dpunet.controller.errors import BadRequest, Conflict, ControllerError, Forbidden, NotFound
from dpunet.controller.registration import DpuRegistrar, NodeRegistrations, SbChassis
from dpunet.controller.topology import NodeRecord
from dpunet.dpu.lease import LeaseKeeper
from dpunet.dpu.metrics import Metrics

DPU1 = Principal(admin=False, namespaces=frozenset(), dpu="dpu1")
ADMIN = Principal(admin=True)
NODE = Principal(admin=False, node="host1")


class FakeSb:
    """Chassis rows by name."""

    def __init__(self, *rows: SbChassis) -> None:
        self.rows = {r.name: r for r in rows}
        self.reads: list[str] = []

    async def chassis(self, name: str) -> SbChassis | None:
        self.reads.append(name)
        return self.rows.get(name)


class FakeStore:
    """dpu-host nodes and their bindings; every write recorded."""

    where = "a fake"

    def __init__(self, **bindings: str | None) -> None:
        self.bindings = dict(bindings)
        self.macs: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    async def bound(self, node: str) -> str | None:
        if node not in self.bindings:
            raise NotFound(f"no Node named {node}")
        return self.bindings[node]

    def nodes_of(self, chassis: str) -> set[str]:
        return {n for n, c in self.bindings.items() if c == chassis}

    def gateway_mac(self, node: str) -> str | None:
        return self.macs.get(node)

    async def bind(self, node: str, chassis: str, gateway_mac: str | None) -> None:
        self.writes.append((node, chassis))
        self.bindings[node] = chassis
        if gateway_mac is not None:
            self.macs[node] = gateway_mac


SB = (SbChassis("dpu1", frozenset({"192.0.2.21"})), SbChassis("dpu2", frozenset({"192.0.2.22"})))


def register(
    registrar: DpuRegistrar,
    who: Principal,
    node: str,
    chassis: str,
    ip: str = "192.0.2.21",
    mac: str | None = None,
) -> DpuBinding:
    req = DpuRegistration(chassis=chassis, encap_ip=IPv4Address(ip), host_pf_mac=mac)
    return asyncio.run(registrar.register(who, node, req))


def refused(
    registrar: DpuRegistrar, who: Principal, node: str, chassis: str, ip: str = "192.0.2.21"
) -> ControllerError:
    with pytest.raises(ControllerError) as info:
        register(registrar, who, node, chassis, ip)
    return info.value


def test_a_dpu_binds_its_node_once() -> None:
    store = FakeStore(host1=None)
    registrar = DpuRegistrar(FakeSb(*SB), store)
    binding = register(registrar, DPU1, "host1", "dpu1")
    assert (binding.node, binding.chassis, binding.encap_ip, binding.changed) == (
        "host1", "dpu1", "192.0.2.21", True,
    )  # fmt: skip
    assert binding.recorded_in == "a fake"
    assert store.writes == [("host1", "dpu1")]
    again = register(registrar, DPU1, "host1", "dpu1")  # an agent restart: nothing written
    assert again.changed is False and store.writes == [("host1", "dpu1")]


def test_the_host_pf_mac_is_recorded_and_a_new_one_rewrites_the_binding() -> None:
    """The MAC goes with the binding; the same again writes nothing; a new one (the host's
    NIC replaced) is written even though the node's chassis, this DPU's, is live."""
    store = FakeStore(host1=None)
    registrar = DpuRegistrar(FakeSb(*SB), store)
    binding = register(registrar, DPU1, "host1", "dpu1", mac="02:00:00:00:01:00")
    assert binding.changed and binding.gateway_mac == "02:00:00:00:01:00"
    assert store.macs == {"host1": "02:00:00:00:01:00"}
    assert not register(registrar, DPU1, "host1", "dpu1", mac="02:00:00:00:01:00").changed
    assert not register(registrar, DPU1, "host1", "dpu1").changed  # no MAC: the old one holds
    assert register(registrar, DPU1, "host1", "dpu1", mac="02:00:00:00:02:00").changed
    assert store.macs == {"host1": "02:00:00:00:02:00"} and len(store.writes) == 2


@pytest.mark.parametrize(
    "mac", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00", "02:00:00:00:01", "x"]
)
def test_a_host_pf_mac_that_is_no_unicast_mac_is_invalid(mac: str) -> None:
    with pytest.raises(ValidationError, match="host_pf_mac"):
        DpuRegistration(chassis="dpu1", encap_ip=IPv4Address("192.0.2.21"), host_pf_mac=mac)
    ok = DpuRegistration(chassis="dpu1", encap_ip="192.0.2.21", host_pf_mac="02:AB:00:00:01:00")
    assert ok.host_pf_mac == "02:ab:00:00:01:00"


@pytest.mark.parametrize(
    ("who", "node", "chassis", "ip", "status", "reason"),
    [
        (DPU1, "host1", "dpu2", "192.0.2.22", 403, "dpu:dpu1 may not register chassis dpu2"),
        (NODE, "host1", "dpu1", "192.0.2.21", 403, "node:host1 may not register"),
        (DPU1, "nosuch", "dpu1", "192.0.2.21", 404, "no Node named nosuch"),
        (ADMIN, "host1", "ghost", "192.0.2.21", 409, "chassis ghost is not in OVN Southbound"),
        (DPU1, "host1", "dpu1", "192.0.2.99", 409, "has tunnel endpoint(s) 192.0.2.21"),
    ],
)
def test_refusals_write_nothing(
    who: Principal, node: str, chassis: str, ip: str, status: int, reason: str
) -> None:
    store = FakeStore(host1=None)
    err = refused(DpuRegistrar(FakeSb(*SB), store), who, node, chassis, ip)
    assert err.status == status and reason in str(err), err
    assert store.writes == [] and store.bindings == {"host1": None}


def test_who_is_checked_before_anything_is_read() -> None:
    sb = FakeSb(*SB)
    err = refused(DpuRegistrar(sb, FakeStore(host1=None)), DPU1, "nosuch", "dpu2", "192.0.2.22")
    assert isinstance(err, Forbidden) and sb.reads == []


def test_one_dpu_serves_one_node() -> None:
    """A DPU's token used for another host node (one its chassis does not serve) is refused."""
    store = FakeStore(host1="dpu1", host2=None)
    err = refused(DpuRegistrar(FakeSb(*SB), store), DPU1, "host2", "dpu1")
    assert isinstance(err, Conflict) and "already serves node host1" in str(err)
    assert store.writes == []


def test_a_live_dpu_keeps_its_node_a_replaced_one_hands_it_over() -> None:
    store = FakeStore(host1="dpu2")
    registrar = DpuRegistrar(FakeSb(*SB), store)
    err = refused(registrar, DPU1, "host1", "dpu1")
    assert isinstance(err, Conflict) and "bound to chassis dpu2" in str(err)
    assert store.writes == []
    registrar.sb = FakeSb(SB[0])  # dpu2's chassis left SB: the card was replaced
    assert register(registrar, DPU1, "host1", "dpu1").changed
    assert store.writes == [("host1", "dpu1")]


def test_admin_may_register_any_chassis() -> None:
    store = FakeStore(host1=None)
    assert register(DpuRegistrar(FakeSb(*SB), store), ADMIN, "host1", "dpu2", "192.0.2.22")
    assert store.writes == [("host1", "dpu2")]


def test_without_sb_remotes_every_registration_is_refused() -> None:
    store = FakeStore(host1=None)
    err = refused(DpuRegistrar(None, store), DPU1, "host1", "dpu1")
    assert isinstance(err, BadRequest) and "sb_remotes" in str(err)
    assert store.writes == []


def test_refusals_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dpunet.controller.registration"):
        refused(DpuRegistrar(FakeSb(*SB), FakeStore(host1=None)), DPU1, "host1", "ghost")
    [record] = caplog.records
    assert record.getMessage() == "dpu.register_refused" and record.levelno == logging.WARNING


# ------------------------------------------------------------------ standalone mode
DPU1_TOKEN = "dpu-token-dpu1-0123456789"
DPU2_TOKEN = "dpu-token-dpu2-0123456789"


def _record(name: str, role: NodeRole, chassis: str, n: int) -> NodeRecord:
    mgmt = role is NodeRole.DPU_HOST
    return NodeRecord(
        name=name, role=role, chassis=chassis, node_ip=IPv4Interface(f"192.0.2.{n}/24"),
        next_hop=IPv4Address("192.0.2.1"), subnet=IPv4Network(f"10.233.{64 + n}.0/24"),
        join_ip=IPv4Address(f"100.64.0.{n}"), gateway_mac=f"0a:58:c0:00:02:{n:02x}",
        mgmt_pf_mac="02:00:00:00:01:00" if mgmt else None, mgmt_vf_num=0 if mgmt else None,
    )  # fmt: skip


def test_the_route_in_standalone_mode(tmp_path: Path) -> None:
    """`PUT /v1/nodes/{node}/dpu` on the in-process app (no NB): the binding in place is
    confirmed; other callers and malformed bodies are refused before anything is read."""

    async def scenario() -> None:
        tokens = f"{DPU1_TOKEN} dpu:dpu1\n{DPU2_TOKEN} dpu:dpu2\n"
        async with controller_app(tmp_path, open_gate=True, tokens=tokens) as (ctl, http):
            ctl.state.add_node(_record("host1", NodeRole.DPU_HOST, "dpu1", 11))
            sb = FakeSb(*SB)
            ctl.registrar.sb = sb

            async def put(token: str | None, body: dict[str, Any]) -> tuple[int, Any]:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                answer = await http.put("/v1/nodes/host1/dpu", json=body, headers=headers)
                return answer.status_code, answer.json()

            good = {"chassis": "dpu1", "encap_ip": "192.0.2.21"}
            status, body = await put(DPU1_TOKEN, good)
            assert status == 200 and body["changed"] is False, body
            assert body["recorded_in"] == "the node's registration in OVN Northbound"
            assert (await put(None, good))[0] == 401
            reads = len(sb.reads)
            for token in (DPU2_TOKEN, NODE_TOKEN):
                status, body = await put(token, good)
                assert status == 403 and "may not register chassis dpu1" in body["detail"]
            bad_macs = [{**good, "host_pf_mac": m} for m in ("01:00:5e:00:00:01", "zz")]
            for bad in (
                {**good, "encap_ip": "nope"}, {**good, "extra": 1}, {"chassis": "x y"},
                *bad_macs,
            ):  # fmt: skip
                assert (await put(DPU1_TOKEN, bad))[0] == 422
            assert len(sb.reads) == reads  # refused before SB was asked
            status, body = await put(ADMIN_TOKEN, {"chassis": "dpu1", "encap_ip": "192.0.2.99"})
            assert status == 409 and "192.0.2.21" in body["detail"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_standalone_bindings_re_register_the_node_with_its_new_chassis(tmp_path: Path) -> None:
    """A replaced DPU (its old chassis gone from SB) re-registers the admin's node with every
    other field kept; a full node or an unknown one is refused."""

    async def scenario() -> None:
        async with controller_app(tmp_path, open_gate=True) as (ctl, _):
            ctl.state.add_node(_record("host1", NodeRole.DPU_HOST, "dpu-old", 11))
            ctl.state.add_node(_record("cp", NodeRole.FULL, "cp", 10))
            nodes = FakeNodes()
            store = NodeRegistrations(nodes, ctl.state)
            registrar = DpuRegistrar(FakeSb(*SB), store)
            req = DpuRegistration(
                chassis="dpu1", encap_ip=IPv4Address("192.0.2.21"), host_pf_mac="02:00:00:00:01:00"
            )
            binding = await registrar.register(DPU1, "host1", req)
            assert binding.changed
            [(name, spec)] = nodes.puts
            assert name == "host1" and spec.chassis == "dpu1"
            assert spec.gateway_mac == "02:00:00:00:01:00"  # the DPU's report, not 0a:58:..
            assert (spec.role, str(spec.node_ip), spec.mgmt_pf_mac, spec.mgmt_vf_num) == (
                NodeRole.DPU_HOST, "192.0.2.11/24", "02:00:00:00:01:00", 0,
            )  # fmt: skip
            with pytest.raises(BadRequest, match="cp is a full node"):
                await registrar.register(DPU1, "cp", req)
            with pytest.raises(NotFound, match="not registered"):
                await registrar.register(DPU1, "host7", req)
            assert len(nodes.puts) == 1

    asyncio.run(asyncio.wait_for(scenario(), 30))


# ------------------------------------------------------------------- the agent's side
class Api:
    """The controller as the DPU agent sees it: scripted answers, calls recorded."""

    def __init__(self, registrations: list[ClientError | None], renewals: list[int]) -> None:
        self.registrations = registrations  # None: taken
        self.renewals = renewals  # HTTP status of each renewal (200: taken)
        self.calls: list[str] = []

    def register_dpu(self, node: str, registration: DpuRegistration) -> DpuBinding:
        self.calls.append(f"register {node} {registration.chassis}")
        error = self.registrations.pop(0)
        if error is not None:
            raise error
        return DpuBinding(
            node=node, chassis=registration.chassis, encap_ip=str(registration.encap_ip),
            changed=True, recorded_in="a fake",
        )  # fmt: skip

    def renew_dpu_lease(self, node: str) -> DpuLease:
        self.calls.append(f"renew {node}")
        status = self.renewals.pop(0)
        if status != 200:
            raise ClientError(status, "refused")
        return DpuLease(
            chassis="dpu1", state=LeaseState.HELD, duration=15, renewed_ago=0, silent_for=0
        )


def test_the_agent_registers_before_renewing_and_after_a_refused_renewal() -> None:
    not_yet = ClientError(409, "chassis dpu1 is not in OVN Southbound")
    api = Api([not_yet, None, None], [403, 200, 403, 200])
    metrics = Metrics()
    reg = DpuRegistration(chassis="dpu1", encap_ip=IPv4Address("192.0.2.21"))
    keeper = LeaseKeeper(api, "host1", 5, metrics, reg)
    assert [keeper.renew_once() for _ in range(4)] == [False, True, False, True]
    assert api.calls == [
        "register host1 dpu1",  # refused (ovn-controller not up yet): retried next time
        "renew host1",
        "register host1 dpu1",
        "renew host1",
        "renew host1",  # refused: the binding is gone, so register again
        "register host1 dpu1",
        "renew host1",
    ]
    assert metrics.registry.get_sample_value("dpunet_dpu_registered") == 1
