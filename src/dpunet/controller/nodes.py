"""The node service: registration creates a node's whole topology in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from dpunet.contract.api import (
    DeleteResult,
    DpuLease,
    NodeInfo,
    NodeList,
    NodeRole,
    NodeSpec,
    check_node_name,
)
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import BadRequest, Conflict, Exhausted, Forbidden, NotFound
from dpunet.controller.ipam import PoolExhausted, mac_for_ip, mgmt_interface, router_ip
from dpunet.controller.leases import DpuLeases
from dpunet.controller.nb import NbClient, NbOutcomeUnknown
from dpunet.controller.nbcommands import DeleteScope, EnsureDesired
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import NodeRecord, cluster_desired, node_desired
from dpunet.logs import event

log = logging.getLogger("dpunet.controller.nodes")


def gateway_mac(spec: NodeSpec, existing: NodeRecord | None) -> str | None:
    """The gateway MAC a registration leaves: the one it gives, else the one known for the
    node in the same role, else None (the node's gateway router waits for it: the DPU's
    registration or the node agent's report brings it)."""
    if spec.gateway_mac is not None:
        return spec.gateway_mac
    if existing is not None and existing.role is spec.role:
        return existing.gateway_mac
    return None


class NodeService:
    """Register, show, list and remove nodes; their DPUs' leases (None: leases off)."""

    def __init__(
        self,
        cfg: ControllerConfig,
        nb: NbClient,
        state: ClusterState,
        repair_ports: Callable[[str], Awaitable[int]],
        on_uncertain: Callable[[], None],
        leases: DpuLeases | None = None,
    ) -> None:
        self.cfg = cfg
        self.nb = nb
        self.state = state
        self.repair_ports = repair_ports
        self.on_uncertain = on_uncertain
        self.leases = leases

    def info(self, node: NodeRecord) -> NodeInfo:
        """The API view of a node."""
        pool = self.state.pools.get(node.name)
        mgmt = mgmt_interface(node.subnet)
        return NodeInfo(
            name=node.name,
            role=node.role,
            chassis=node.chassis,
            node_ip=str(node.node_ip),
            next_hop=str(node.next_hop),
            gateway_mac=node.gateway_mac,
            subnet=str(node.subnet),
            gateway_ip=str(router_ip(node.subnet)),
            mgmt_ip=str(mgmt),
            mgmt_mac=mac_for_ip(mgmt.ip),
            mgmt_pf_mac=node.mgmt_pf_mac,
            mgmt_vf_num=node.mgmt_vf_num,
            join_ip=str(node.join_ip),
            cluster_cidr=str(self.cfg.cluster_cidr),
            service_cidr=str(self.cfg.service_cidr),
            mtu=self.cfg.mtu,
            ports=len(pool.used) if pool else 0,
            free_ips=pool.free if pool else 0,
            dpu_lease=self._lease(node),
        )

    def _lease(self, node: NodeRecord) -> DpuLease | None:
        if self.leases is None or node.role is not NodeRole.DPU_HOST:
            return None
        return self.leases.lease(node.name, node.chassis)

    def dpu_leases(self) -> list[tuple[str, DpuLease]]:
        """(node, lease) of every dpu-host node (for the metrics)."""
        found = ((name, self._lease(node)) for name, node in sorted(self.state.nodes.items()))
        return [(name, lease) for name, lease in found if lease is not None]

    async def renew_dpu_lease(self, who: Principal, name: str) -> DpuLease:
        """The DPU serving `name` (its token's chassis is the node's) is alive; an admin
        may renew for it. Who is asked before what exists: 403 for a DPU whatever `name`."""
        if self.leases is None:
            raise BadRequest("DPU leases are off on this controller (dpu_lease_duration)")
        async with self.state.gate.enter(self.leases.duration / 3):  # the nodes are loaded
            node = self.state.nodes.get(name)
            has_dpu = node is not None and node.role is NodeRole.DPU_HOST
            if not who.admin and not (has_dpu and node is not None and node.chassis == who.dpu):
                raise Forbidden(
                    f"{who} may not renew the DPU lease of node {name}: only the DPU the node "
                    "is registered with (its dpu:<chassis> token) or admin"
                )
            if node is None:
                raise NotFound(f"node {name} is not registered")
            if not has_dpu:
                raise BadRequest(f"node {name} is a {node.role.value} node: it has no DPU")
            return self.leases.renew(name, node.chassis)

    def _readable(self, who: Principal, name: str) -> None:
        if not who.may_act_for(name):
            raise Forbidden(f"{who} may not read node {name}")

    async def get(self, who: Principal, name: str) -> NodeInfo:
        """One node; 404 when not registered."""
        self._readable(who, name)
        node = self.state.nodes.get(name)
        if node is None:
            raise NotFound(f"node {name} is not registered")
        return self.info(node)

    async def list(self, who: Principal) -> NodeList:
        """All nodes (a node's token sees only its own)."""
        names = sorted(self.state.nodes) if who.admin else [who.node or ""]
        return NodeList(
            items=[self.info(self.state.nodes[n]) for n in names if n in self.state.nodes]
        )

    async def put(self, who: Principal, name: str, spec: NodeSpec) -> NodeInfo:
        """Register or update a node; its subnet is allocated once and kept."""
        if not who.admin:
            raise Forbidden("only an admin token may register nodes")
        try:
            check_node_name(name)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        async with self.state.gate.enter(self.cfg.nb_timeout), self.state.topology_lock:
            existing = self.state.nodes.get(name)
            pool = self.state.pools.get(name)
            if existing is not None and existing.role != spec.role and pool and pool.used:
                raise Conflict(
                    f"node {name} has {len(pool.used)} ports; release them to change its role"
                )
            if existing is not None:
                subnet, join_ip = existing.subnet, existing.join_ip
            else:
                try:
                    subnet = self.state.subnets.allocate()
                except PoolExhausted as exc:
                    raise Exhausted(str(exc)) from exc
                try:
                    join_ip = self.state.join.allocate()
                except PoolExhausted as exc:
                    self.state.subnets.release(subnet)
                    raise Exhausted(f"join subnet: {exc}") from exc
            record = NodeRecord(
                name=name,
                role=spec.role,
                chassis=spec.chassis,
                node_ip=spec.node_ip,
                next_hop=spec.next_hop,
                subnet=subnet,
                join_ip=join_ip,
                gateway_mac=gateway_mac(spec, existing),
                mgmt_pf_mac=spec.mgmt_pf_mac,
                mgmt_vf_num=spec.mgmt_vf_num,
            )
            try:
                changes = await self.nb.write(
                    lambda api: EnsureDesired(
                        api,
                        cluster_desired(self.cfg),
                        node_desired(self.cfg, record),
                        port_rows=self.nb.port_rows,
                    )
                )
            except NbOutcomeUnknown:
                self.on_uncertain()
                raise
            except Exception:
                if existing is None:
                    self.state.subnets.release(subnet)
                    self.state.join.release(join_ip)
                raise
            self.state.add_node(record)
            repaired = 0
            if existing is not None and existing != record:
                repaired = await self.repair_ports(name)
        event(
            log,
            "node.put",
            node=name,
            role=spec.role.value,
            chassis=spec.chassis,
            subnet=str(subnet),
            changes=changes,
            ports_repaired=repaired,
            action="updated" if existing else "registered",
        )
        return self.info(record)

    async def delete(self, who: Principal, name: str) -> DeleteResult:
        """Remove a node, its topology and its ports; unknown nodes succeed."""
        if not who.admin:
            raise Forbidden("only an admin token may remove nodes")
        async with self.state.gate.enter(self.cfg.nb_timeout), self.state.topology_lock:
            known = name in self.state.nodes
            changes = await self.nb.write(lambda api: DeleteScope(api, name, self.nb.port_rows))
            self.state.drop_node(name)
        if self.leases is not None:
            self.leases.forget(name)
        event(log, "node.delete", node=name, known=known, changes=changes)
        if not known and not changes:
            return DeleteResult(deleted=False, detail=f"node {name} is not registered")
        return DeleteResult(deleted=True, detail=f"node {name} and its ports removed")
