"""The port service: pod ports on request of a node (docs/architecture.md section 3).

A pod has a port per attachment: its primary port and one per secondary network
(`network`), each its own LSP with its own address on the node's switch. PUT is
idempotent per (pod uid, sandbox): the same request gets the same answer; a
new sandbox of the same pod keeps the address and re-points the port; another uid
for the same name (pod recreated) replaces the port with a new address. One lock per
LSP name serializes requests for one attachment; the address pools are only touched on the
event loop, so concurrent requests never get the same address. Port writes of
concurrent requests (distinct ports, thanks to that lock) share NB transactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any
from uuid import UUID

from dpunet.contract.api import DeleteResult, PortInfo, PortList, PortRequest, Route
from dpunet.contract.lsp import pod_lsp_name
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import (
    BadRequest,
    Conflict,
    ControllerError,
    DeadlineExceeded,
    Exhausted,
    Forbidden,
    NotFound,
    NotOwned,
)
from dpunet.controller.ipam import PoolExhausted
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient, NbOutcomeUnknown
from dpunet.controller.nbcommands import (
    DeletePort,
    NodePorts,
    PortRow,
    ReadPort,
    ReadPortName,
    WritePort,
)
from dpunet.controller.sb import Expected
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import NodeRecord, NodeRole, PodPort, pod_gateway, pod_lsp
from dpunet.logs import event

log = logging.getLogger("dpunet.controller.ports")


class PortService:
    """Create, show, list and release pod ports."""

    def __init__(
        self,
        cfg: ControllerConfig,
        nb: NbClient,
        state: ClusterState,
        metrics: Metrics,
        on_uncertain: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.nb = nb
        self.state = state
        self.metrics = metrics
        self.on_uncertain = on_uncertain

    def info(self, port: PodPort, up: bool) -> PortInfo:
        """The API view of a port (CNI result data): the primary port gets the default
        route; a secondary port only its subnet (on-link through its address's prefix)."""
        node = self.state.nodes.get(port.node)
        gateways, routes, ips = [], [], [f"{port.ip}/32"]
        if node is not None:
            gw = str(pod_gateway(node))
            gateways = [gw]
            routes = [Route(dst="0.0.0.0/0", gw=gw)] if port.network is None else []
            ips = [f"{port.ip}/{node.subnet.prefixlen}"]
        return PortInfo(
            namespace=port.namespace,
            name=port.pod,
            node=port.node,
            uid=port.uid,
            sandbox=port.sandbox,
            ifname=port.ifname,
            network=port.network,
            pci=port.pci,
            pf_mac=port.pf_mac,
            vf_num=port.vf_num,
            lsp=port.name,
            mac=port.mac,
            ips=ips,
            gateways=gateways,
            routes=routes,
            mtu=self.cfg.mtu,
            up=up,
            labels=dict(port.labels),
        )

    # ------------------------------------------------------------------ PUT
    async def put(
        self, who: Principal, namespace: str, name: str, req: PortRequest, timeout: float | None
    ) -> PortInfo:
        """Allocate, write the LSP, wait until it is ready (SB or NB `up`, whichever first;
        docs/controller.md), all within the request's deadline."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (timeout or self.cfg.port_timeout)
        lsp = pod_lsp_name(namespace, name, req.network)
        if not who.may_act_for(req.node):
            raise Forbidden(f"{who} may not create ports on node {req.node}")
        if not who.may_use_namespace(namespace):
            raise Forbidden(f"{who} may not use namespace {namespace} (token file: namespaces=)")
        try:
            async with (
                self.state.gate.enter(deadline - loop.time()),
                self.state.port_locks.hold(lsp),
            ):
                port, row_uuid, node, action = await self._put_locked(
                    who, namespace, name, req, deadline
                )
            phase_done = loop.time()
            ready_by = None
            if self.cfg.wait_for_up:
                spec = pod_lsp(self.cfg, node, port)
                ready_by = await self.nb.wait_port_up(
                    lsp,
                    row_uuid,
                    deadline,
                    f"port {lsp} to be up on chassis {node.chassis} (SB Port_Binding.up or "
                    "Logical_Switch_Port.up)",
                    Expected(node.chassis, spec.addresses, spec.external_ids),
                )
                self.metrics.port_setup.labels("wait_up").observe(loop.time() - phase_done)
                self.metrics.port_ready.labels(ready_by).inc()
        except ControllerError as exc:
            event(
                log,
                "port.put_failed",
                logging.WARNING,
                namespace=namespace,
                pod=name,
                network=req.network,
                uid=req.uid,
                sandbox=req.sandbox,
                node=req.node,
                status=exc.status,
                error=str(exc),
            )
            raise
        total = loop.time() - started
        self.metrics.port_setup.labels("total").observe(total)
        event(
            log,
            "port.put",
            namespace=namespace,
            pod=name,
            network=req.network,
            uid=req.uid,
            sandbox=req.sandbox,
            node=node.name,
            action=action,
            ip=str(port.ip),
            mac=port.mac,
            up=self.cfg.wait_for_up,
            ready_by=ready_by,
            ms=round(total * 1000, 1),
        )
        return self.info(port, self.cfg.wait_for_up)

    async def _put_locked(
        self, who: Principal, namespace: str, name: str, req: PortRequest, deadline: float
    ) -> tuple[PodPort, UUID, NodeRecord, str]:
        loop = asyncio.get_running_loop()
        lsp = pod_lsp_name(namespace, name, req.network)
        started = loop.time()
        node = self.state.nodes.get(req.node)
        if node is None:
            raise NotFound(f"node {req.node} is not registered")
        self._check_hardware(node, req)
        current: PortRow | None
        # not awaited when the kept rows know (wait_for costs a turn of the loop on 3.11)
        known = self.nb.kept_port_name(lsp)
        current, foreign = (
            known
            if known is not None
            else await self._within(
                deadline, self.nb.read(lambda api: ReadPortName(api, lsp)), "OVN Northbound (read)"
            )
        )
        existing = current.port if current is not None else None
        if current is None:
            if foreign:
                raise NotOwned(f"Logical_Switch_Port {lsp} exists and is not a dpunet pod port")
        elif existing is not None and existing.node != req.node and not who.admin:
            raise Conflict(
                f"port {lsp} exists on node {existing.node}; it must be released there first"
            )
        elif existing is not None and (existing.namespace, existing.pod, existing.network) != (
            namespace,
            name,
            req.network,
        ):
            raise Conflict(
                f"port {lsp} is the port of {existing.namespace}/{existing.pod} in network "
                f"{existing.network or '(primary)'}: network names that differ only in '-' "
                "and '.' share a port name"
            )
        same_pod = existing is not None and existing.uid == req.uid and existing.node == req.node
        allocated: tuple[str, IPv4Address] | None = None
        if existing is not None and same_pod:
            ip = existing.ip
        else:
            try:
                ip = self.state.pools[node.name].allocate()
            except PoolExhausted as exc:
                raise Exhausted(f"node {node.name}: {exc}") from exc
            allocated = (node.name, ip)
        port = PodPort(
            namespace=namespace,
            pod=name,
            node=node.name,
            uid=req.uid,
            sandbox=req.sandbox,
            ifname=req.ifname,
            network=req.network,
            ip=ip,
            pci=req.pci,
            pf_mac=req.pf_mac,
            vf_num=req.vf_num,
            labels=tuple(sorted(req.labels.items())),
            named_ports=tuple(sorted((p.name, p.protocol, p.container_port) for p in req.ports)),
        )
        self.metrics.port_setup.labels("allocate").observe(loop.time() - started)
        if existing is not None and same_pod:
            hw_changed = (existing.pci, existing.pf_mac, existing.vf_num) != (
                port.pci,
                port.pf_mac,
                port.vf_num,
            )
            fresh, action = hw_changed, ("unchanged" if existing == port else "repointed")
        else:
            fresh, action = current is not None, ("replaced" if current is not None else "created")
        # the uid the row carries now ("" for a malformed row, which is replaced)
        allowed = {req.uid} | ({current.uid or ""} if current is not None else set())
        old = existing if existing is not None and not same_pod else None
        written = loop.time()
        row_uuid = await self._write(
            node.name, pod_lsp(self.cfg, node, port), allowed, fresh, allocated, old, deadline
        )
        self.metrics.port_setup.labels("nb_write").observe(loop.time() - written)
        return port, row_uuid, node, action

    def _check_hardware(self, node: NodeRecord, req: PortRequest) -> None:
        if node.role is NodeRole.DPU_HOST and not req.is_vf:
            raise BadRequest(
                f"node {node.name} is a dpu-host node: pci, pf_mac and vf_num are required"
            )
        if node.role is NodeRole.FULL and req.is_vf:
            raise BadRequest(f"node {node.name} is a full node: its ports are veths, not VFs")
        if (
            node.mgmt_pf_mac is not None
            and req.pf_mac == node.mgmt_pf_mac
            and req.vf_num == node.mgmt_vf_num
        ):
            raise Conflict(f"VF {req.vf_num} of {req.pf_mac} is node {node.name}'s management port")

    async def _within(self, deadline: float, coro: Any, what: str) -> Any:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(coro, max(remaining, 0.001))
        except TimeoutError:
            raise DeadlineExceeded(f"timed out waiting for {what}") from None

    async def _write(
        self,
        node: str,
        spec: Any,
        allowed: set[str],
        fresh: bool,
        allocated: tuple[str, IPv4Address] | None,
        old: PodPort | None,
        deadline: float,
    ) -> UUID:
        """Write the LSP; the pools are settled when the write is really over, even after
        the request has given up waiting for it."""
        task = asyncio.ensure_future(
            self.nb.write(lambda api: WritePort(api, node, spec, allowed, fresh), coalesce=True)
        )

        def settle(t: asyncio.Future[Any]) -> None:
            exc = None if t.cancelled() else t.exception()
            if t.cancelled() or isinstance(exc, NbOutcomeUnknown):
                self.on_uncertain()  # keep the address until a reload from NB settles it
                return
            if exc is not None:
                if allocated is not None and (pool := self.state.pools.get(allocated[0])):
                    pool.release(allocated[1])
                return
            if allocated is not None and (pool := self.state.pools.get(allocated[0])):
                pool.commit(allocated[1])
            if (
                old is not None
                and (old.node, old.ip) != allocated
                and (pool := self.state.pools.get(old.node))
            ):
                pool.release(old.ip)

        task.add_done_callback(settle)
        result: UUID = await self._within(
            deadline, asyncio.shield(task), f"the OVN Northbound write of {spec.name}"
        )
        return result

    # ------------------------------------------------------------ GET / DELETE
    async def get(
        self, who: Principal, namespace: str, name: str, network: str | None = None
    ) -> PortInfo:
        """One port (the primary, or that of `network`); 404 when absent (for a node token:
        403 for any port not its own, absent or not, so that it cannot learn which pods
        exist elsewhere)."""
        lsp = pod_lsp_name(namespace, name, network)
        row: PortRow | None = await self.nb.read(lambda api: ReadPort(api, lsp))
        port = row.port if row is not None and _is_attachment(row.port, name, network) else None
        if not who.admin and (port is None or port.node != who.node):
            raise Forbidden(f"{who} has no port {namespace}/{name}")
        if port is None:
            raise NotFound(f"no port {namespace}/{name}{_in(network)}")
        return self.info(port, row.up if row is not None else False)

    async def list(
        self, who: Principal, node: str | None = None, namespace: str | None = None
    ) -> PortList:
        """Ports, optionally of one node and/or namespace (a node sees only its own)."""
        if not who.admin:
            if node is not None and node != who.node:
                raise Forbidden(f"{who} may not list ports of node {node}")
            if namespace is not None and not who.may_use_namespace(namespace):
                raise Forbidden(f"{who} may not use namespace {namespace}")
            node = who.node
        rows: list[PortRow]
        if node is not None:  # its switch's ports only
            rows = await self.nb.read(lambda api: NodePorts(api, node, self.nb.port_rows))
        else:
            rows = (await self.nb.snapshot()).ports
        items = [
            self.info(row.port, row.up)
            for row in sorted(rows, key=lambda r: r.name)
            if row.port is not None
            and (node is None or row.port.node == node)
            and (namespace is None or row.port.namespace == namespace)
        ]
        return PortList(items=items)

    async def delete(
        self,
        who: Principal,
        namespace: str,
        name: str,
        uid: str | None = None,
        sandbox: str | None = None,
        network: str | None = None,
    ) -> DeleteResult:
        """Release a port (the primary, or that of `network`); releasing an unknown port
        succeeds. With `uid`/`sandbox`, a port that now belongs to another pod or sandbox
        is left in place. For a node token, another node's port is an unknown port (it
        learns nothing about it)."""
        lsp = pod_lsp_name(namespace, name, network)
        what = f"{namespace}/{name}{_in(network)}"
        async with (
            self.state.gate.enter(self.cfg.nb_timeout),
            self.state.port_locks.hold(lsp),
        ):
            row: PortRow | None = await self.nb.read(lambda api: ReadPort(api, lsp))
            owner = (row.port.node if row.port is not None else row.switch or "") if row else ""
            if (
                row is None
                or not who.may_act_for(owner)
                or (row.port is not None and not _is_attachment(row.port, name, network))
            ):
                mine = "" if who.admin else f" of node {who.node}"
                return DeleteResult(deleted=False, detail=f"no port {what}{mine}")
            if row.port is not None:
                for key, want, have in (
                    ("uid", uid, row.port.uid),
                    ("sandbox", sandbox, row.port.sandbox),
                ):
                    if want is not None and want != have:
                        return DeleteResult(
                            deleted=False,
                            detail=f"port {what} belongs to {key} {have}: left",
                        )
            removed: PodPort | None = await self.nb.write(
                lambda api: DeletePort(api, lsp, uid=row.uid), coalesce=True
            )
            if removed is not None and (pool := self.state.pools.get(removed.node)):
                pool.release(removed.ip)
        event(
            log,
            "port.delete",
            namespace=namespace,
            pod=name,
            network=network,
            uid=row.uid,
            sandbox=row.port.sandbox if row.port else None,
            node=owner,
        )
        return DeleteResult(deleted=True, detail=f"port {what} released")


def _is_attachment(port: PodPort | None, pod: str, network: str | None) -> bool:
    """The port found under an LSP name is that of `pod` in `network` (network names that
    differ only in '-' and '.' map to one LSP name)."""
    return port is not None and port.pod == pod and port.network == network


def _in(network: str | None) -> str:
    return f" in network {network}" if network is not None else ""
