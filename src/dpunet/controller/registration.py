"""DPU registration: the DPU agent says "I am chassis C (tunnel endpoint E), I serve dpu-host
node H" (`PUT /v1/nodes/{H}/dpu`, its `dpu:<chassis>` token) and the controller binds H to
C once OVN Southbound confirms it, so no one writes the binding by hand and the DPU holds
no Kubernetes credentials (docs/controller.md, "DPU registration").

Checks, in this order, each refusal a 4xx with its reason and nothing written:
- 403: the token is not the DPU `C`'s (or an admin's);
- 404/400: H is no known dpu-host node (the `BindingStore` says why);
- 409: SB has no Chassis named C, or none of its Encaps has the IP E;
- 409: C already serves another node, or H is bound to another chassis that SB still
  has (a DPU cannot take over a live DPU's host; a replaced DPU's old chassis is gone).

Where the binding goes is the `BindingStore`'s: the Node's `k8s.ovn.org/node-chassis-id`
annotation in Kubernetes mode (`dpunet.controller.k8s.bindings`), the node's registration
in NB in standalone mode (`NodeRegistrations`). The host PF's MAC the DPU reports
(`host_pf_mac`) goes with it and becomes the node's gateway router MAC in both modes (it
wins over a MAC an admin or an annotation gave: it is the one the host really has,
docs/services.md). A registration that finds binding and MAC in place writes nothing.

A full node has no DPU: its agent reports the MAC of its breth0 (`PUT
/v1/nodes/{name}/gateway`, its own node token) and the same store records it (Kubernetes
mode: `dpunet.io/gateway-mac` on the Node; standalone: the registration's `gateway_mac`);
a report of the MAC in place writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dpunet.contract.api import (
    DpuBinding,
    DpuRegistration,
    GatewayReport,
    NodeGateway,
    NodeRole,
    NodeSpec,
)
from dpunet.controller.auth import Principal
from dpunet.controller.errors import BadRequest, Conflict, Forbidden, NotFound, Unavailable
from dpunet.controller.nodes import NodeService
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import NodeRecord
from dpunet.logs import event
from dpunet.ovsdb.rpc import SB_SCHEMA, request

log = logging.getLogger("dpunet.controller.registration")
ADMIN = Principal(admin=True)
SB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SbChassis:
    """A Chassis row of OVN Southbound and the IPs of its Encaps."""

    name: str
    encap_ips: frozenset[str]


class ChassisLookup(Protocol):
    """Reads one chassis from OVN Southbound."""

    async def chassis(self, name: str) -> SbChassis | None:
        """The chassis `name` (None: SB has none); Unavailable when SB cannot be read."""
        ...


class BindingStore(Protocol):
    """Where the node -> chassis bindings of dpu-host nodes live."""

    where: str  # said in the answer (`DpuBinding.recorded_in`)

    async def bound(self, node: str) -> str | None:
        """The chassis dpu-host node `node` is bound to (None: none yet); NotFound or
        BadRequest when `node` is no dpu-host node, Unavailable when not known yet."""
        ...

    def nodes_of(self, chassis: str) -> set[str]:
        """The nodes bound to `chassis`."""
        ...

    def gateway_mac(self, node: str) -> str | None:
        """The gateway MAC recorded for `node` (after `bound` accepted it)."""
        ...

    async def bind(self, node: str, chassis: str, gateway_mac: str | None) -> None:
        """Bind `node` to `chassis`, with `gateway_mac` when not None (after `bound`)."""
        ...

    async def full_node_mac(self, node: str) -> str | None:
        """The gateway MAC recorded for full node `node` (None: none); NotFound or
        BadRequest when `node` is no full node, Unavailable when not known yet."""
        ...

    async def set_full_node_mac(self, node: str, gateway_mac: str) -> None:
        """Record `gateway_mac` for full node `node` (after `full_node_mac`)."""
        ...


class SouthboundChassis:
    """`ChassisLookup` over one-shot OVSDB `select`s, the first of `remotes` that answers
    (a raft member answers reads)."""

    def __init__(self, remotes: Sequence[str], timeout: float = SB_TIMEOUT_S) -> None:
        self.remotes = list(remotes)
        self.timeout = timeout

    async def chassis(self, name: str) -> SbChassis | None:
        """See `ChassisLookup` (the blocking read runs in a thread)."""
        return await asyncio.to_thread(self._read, name)

    def _read(self, name: str) -> SbChassis | None:
        params: list[Any] = [
            SB_SCHEMA,
            {"op": "select", "table": "Chassis", "where": [["name", "==", name]],
             "columns": ["name"]},
            {"op": "select", "table": "Encap", "where": [["chassis_name", "==", name]],
             "columns": ["ip"]},
        ]  # fmt: skip
        errors = []
        for remote in self.remotes:
            try:
                reply = request(remote, "transact", params, int(self.timeout * 1000))
            except OSError as exc:
                errors.append(f"{remote}: {exc.strerror or exc}")
                continue
            results = reply.result if reply.error is None else None
            if (
                not isinstance(results, list)
                or len(results) < 2
                or any(not isinstance(r, dict) or "error" in r for r in results[:2])
            ):
                errors.append(f"{remote}: {reply.error or results}")
                continue
            if not results[0].get("rows"):
                return None
            ips = frozenset(str(row["ip"]) for row in results[1].get("rows", []))
            return SbChassis(name, ips)
        raise Unavailable("cannot read OVN Southbound: " + "; ".join(errors))


class NodeRegistrations:
    """Standalone mode's `BindingStore`: the chassis of a node an admin registered
    (`PUT /v1/nodes`), kept in NB with the node; a new binding re-registers the node."""

    where = "the node's registration in OVN Northbound"

    def __init__(self, nodes: NodeService, state: ClusterState) -> None:
        self.nodes = nodes
        self.state = state

    def _record(self, node: str, role: NodeRole, why: str) -> NodeRecord:
        """The registration of `node`, which must have `role` (else BadRequest: `why`)."""
        if not self.state.gate.is_open:
            raise Unavailable("the controller is loading its state from OVN Northbound")
        record = self.state.nodes.get(node)
        if record is None:
            raise NotFound(f"node {node} is not registered (an admin registers it first)")
        if record.role is not role:
            raise BadRequest(f"node {node} is a {record.role.value} node: {why}")
        return record

    async def bound(self, node: str) -> str | None:
        """See `BindingStore`."""
        return self._record(node, NodeRole.DPU_HOST, "it has no DPU").chassis

    async def full_node_mac(self, node: str) -> str | None:
        """See `BindingStore`: the registration's."""
        return self._record(node, NodeRole.FULL, "its DPU reports its MAC").gateway_mac

    async def set_full_node_mac(self, node: str, gateway_mac: str) -> None:
        """See `BindingStore`: the registration with the new gateway MAC."""
        rec = self.state.nodes[node]
        await self.bind(node, rec.chassis, gateway_mac)

    def nodes_of(self, chassis: str) -> set[str]:
        """See `BindingStore`."""
        return {name for name, rec in self.state.nodes.items() if rec.chassis == chassis}

    def gateway_mac(self, node: str) -> str | None:
        """See `BindingStore`: the registration's."""
        return self.state.nodes[node].gateway_mac

    async def bind(self, node: str, chassis: str, gateway_mac: str | None) -> None:
        """See `BindingStore`: the registration with the new chassis and gateway MAC (its
        ports follow)."""
        rec = self.state.nodes[node]
        spec = NodeSpec(
            role=rec.role,
            chassis=chassis,
            node_ip=rec.node_ip,
            next_hop=rec.next_hop,
            gateway_mac=gateway_mac or rec.gateway_mac,
            mgmt_pf_mac=rec.mgmt_pf_mac,
            mgmt_vf_num=rec.mgmt_vf_num,
        )
        await self.nodes.put(ADMIN, node, spec)


class DpuRegistrar:
    """Checks a DPU's registration and binds its node (see module docstring); `sb` None:
    the controller has no SB remotes, every registration is refused."""

    def __init__(self, sb: ChassisLookup | None, store: BindingStore) -> None:
        self.sb = sb
        self.store = store
        self._lock = asyncio.Lock()  # one registration at a time: checks and write agree

    async def register(self, who: Principal, node: str, req: DpuRegistration) -> DpuBinding:
        """Bind `node` to `req.chassis` once everything checks out."""
        try:
            binding = await self._register(who, node, req)
        except (BadRequest, Forbidden, NotFound, Conflict) as exc:
            event(
                log, "dpu.register_refused", logging.WARNING, node=node, chassis=req.chassis,
                encap_ip=str(req.encap_ip), caller=str(who), status=exc.status, reason=str(exc),
            )  # fmt: skip
            raise
        event(
            log, "dpu.registered", node=node, chassis=req.chassis, encap_ip=str(req.encap_ip),
            gateway_mac=req.host_pf_mac, changed=binding.changed,
        )  # fmt: skip
        return binding

    async def report_gateway(self, who: Principal, node: str, req: GatewayReport) -> NodeGateway:
        """Record full node `node`'s gateway MAC (its own node token, or admin)."""
        try:
            if not who.may_act_for(node):
                raise Forbidden(
                    f"{who} may not report the gateway MAC of node {node}: a node agent "
                    "reports only its own node's (its node token)"
                )
            async with self._lock:
                changed = await self.store.full_node_mac(node) != req.gateway_mac
                if changed:
                    await self.store.set_full_node_mac(node, req.gateway_mac)
        except (BadRequest, Forbidden, NotFound, Conflict) as exc:
            event(
                log, "gateway.report_refused", logging.WARNING, node=node, caller=str(who),
                gateway_mac=req.gateway_mac, status=exc.status, reason=str(exc),
            )  # fmt: skip
            raise
        event(log, "gateway.reported", node=node, gateway_mac=req.gateway_mac, changed=changed)
        return NodeGateway(node=node, gateway_mac=req.gateway_mac, changed=changed)

    async def _register(self, who: Principal, node: str, req: DpuRegistration) -> DpuBinding:
        chassis, encap_ip = req.chassis, str(req.encap_ip)
        if not who.admin and who.dpu != chassis:
            raise Forbidden(
                f"{who} may not register chassis {chassis}: a DPU registers only its own "
                "chassis (its dpu:<chassis> token)"
            )
        if self.sb is None:
            raise BadRequest(
                "this controller has no sb_remotes: it cannot check DPU registrations "
                "against OVN Southbound"
            )
        async with self._lock:
            current = await self.store.bound(node)
            found = await self.sb.chassis(chassis)
            if found is None:
                raise Conflict(
                    f"chassis {chassis} is not in OVN Southbound (is ovn-controller running "
                    "on the DPU with that system-id?)"
                )
            if encap_ip not in found.encap_ips:
                have = ", ".join(sorted(found.encap_ips)) or "none"
                raise Conflict(
                    f"chassis {chassis} has tunnel endpoint(s) {have} in OVN Southbound, "
                    f"not {encap_ip}"
                )
            mac = req.host_pf_mac
            answer = DpuBinding(
                node=node, chassis=chassis, encap_ip=encap_ip, changed=False,
                recorded_in=self.store.where, gateway_mac=mac,
            )  # fmt: skip
            if current == chassis:
                if mac is None or self.store.gateway_mac(node) == mac:
                    return answer
            else:
                await self._may_take(node, chassis, current)
            await self.store.bind(node, chassis, mac)
        return answer.model_copy(update={"changed": True})

    async def _may_take(self, node: str, chassis: str, current: str | None) -> None:
        """Conflict when `chassis` may not take `node` from `current`."""
        assert self.sb is not None
        others = sorted(self.store.nodes_of(chassis) - {node})
        if others:
            raise Conflict(
                f"chassis {chassis} already serves node {', '.join(others)}: one DPU "
                "serves one host node"
            )
        if current is not None and await self.sb.chassis(current) is not None:
            raise Conflict(
                f"node {node} is bound to chassis {current}, which OVN Southbound still "
                "has: a DPU does not take over a live DPU's node (remove that chassis, "
                "or the binding, first)"
            )
