"""Level-triggered repair: make dpunet's Northbound objects match what they should be.

A pass (at start, whenever the NB lock is re-acquired, periodically, and after a write
with an unknown outcome) reloads the in-memory state from NB and then:
- creates or repairs the cluster topology and each registered node's topology;
- removes owned objects of nodes that are not registered (or whose record is broken);
- removes owned pod ports that are malformed, off their node's switch, outside its
  subnet, or that duplicate another port's address (the first by name keeps it);
- rewrites owned pod ports whose columns drifted from what their record implies
  (e.g. the node's chassis or the plug mode changed).
Objects without `dpunet:owner=dpunet` are never touched.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import ControllerError
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient
from dpunet.controller.nbcommands import (
    DeletePort,
    DeleteScope,
    EnsureDesired,
    EnsureEach,
    NbSnapshot,
    PortRow,
    ReadPort,
    WritePort,
    lsp_columns,
)
from dpunet.controller.state import ClusterState, LoadReport
from dpunet.controller.topology import (
    NodeRecord,
    cluster_desired,
    node_desired,
    pod_lsp,
)
from dpunet.logs import event

log = logging.getLogger("dpunet.controller.reconcile")


class Reconciler:
    """Reload from NB and repair (see the module docstring)."""

    def __init__(
        self, cfg: ControllerConfig, nb: NbClient, state: ClusterState, metrics: Metrics
    ) -> None:
        self.cfg = cfg
        self.nb = nb
        self.state = state
        self.metrics = metrics
        # ports found as their record implies by the last pass: (the kept PortRow, its
        # node); the same objects again need no comparison
        self._in_place: dict[str, tuple[PortRow, NodeRecord]] = {}

    def _count(self, kind: str, n: int = 1) -> None:
        if n:
            self.metrics.reconcile_repairs.labels(kind).inc(n)

    async def reload(self) -> dict[str, int]:
        """Rebuild the state from NB and repair. Nothing else may run meanwhile."""
        started = time.perf_counter()
        snap: NbSnapshot = await self.nb.snapshot()
        report = self.state.load(snap)
        loaded = time.perf_counter()
        for name, subnet in sorted(report.foreign_subnets.items()):
            event(
                log,
                "reconcile.foreign_subnet",
                logging.WARNING,
                node=name,
                subnet=subnet,
                detail=f"not a /{self.cfg.node_prefix} of {self.cfg.cluster_cidr}; kept",
            )
        counts = {"topology": 0, "orphan_nodes": 0, "orphan_ports": 0, "drifted_ports": 0}
        if snap.conflicts:
            event(
                log,
                "reconcile.conflict",
                logging.ERROR,
                objects=",".join(snap.conflicts),
                detail="objects with dpunet's names are not owned by dpunet; left alone",
            )
        else:
            counts["topology"] = await self._topology()
        ensured = time.perf_counter()
        counts["orphan_nodes"] = await self._orphan_nodes(snap, report)
        counts["orphan_ports"] = await self._orphan_ports(snap, report)
        counts["drifted_ports"] = await self._drifted_ports(snap, report)
        for kind, n in counts.items():
            self._count(kind, n)
        event(
            log,
            "reconcile.done",
            nodes=len(self.state.nodes),
            pod_ports=len(snap.ports),
            ms=round((time.perf_counter() - started) * 1000, 1),
            load_ms=round((loaded - started) * 1000, 1),
            topology_ms=round((ensured - loaded) * 1000, 1),
            **counts,
        )
        return counts

    async def _topology(self) -> int:
        """The cluster's topology, then every node's in one transaction (one round trip
        however many nodes; nothing is written where nothing changed)."""
        rows = self.nb.port_rows
        cluster = cluster_desired(self.cfg)
        changes = int(await self.nb.write(lambda api: EnsureDesired(api, cluster, port_rows=rows)))
        nodes = sorted(self.state.nodes.items())
        if not nodes:
            return changes
        desired = [node_desired(self.cfg, n) for _, n in nodes]
        each: tuple[int, ...] = await self.nb.write(
            lambda api: EnsureEach(api, *desired, port_rows=rows)
        )
        for (name, _), n in zip(nodes, each, strict=True):
            if n:
                event(log, "reconcile.node_repaired", node=name, changes=n)
        return changes + sum(each)

    async def _orphan_nodes(self, snap: NbSnapshot, report: LoadReport) -> int:
        orphans = (snap.scopes | set(report.bad_nodes)) - set(self.state.nodes)
        for name in sorted(orphans):
            changes = await self.nb.write(
                partial(DeleteScope, node=name, port_rows=self.nb.port_rows)
            )
            reason = report.bad_nodes.get(name, "node not registered")
            event(
                log,
                "reconcile.orphan_node_removed",
                logging.WARNING,
                node=name,
                reason=reason,
                changes=changes,
            )
        return len(orphans)

    async def _orphan_ports(self, snap: NbSnapshot, report: LoadReport) -> int:
        rows = {r.name: r for r in snap.ports}
        reasons = dict(report.invalid_ports)
        reasons |= {name: "address already used by another port" for name in report.duplicate_ports}
        removed = 0
        for name, reason in sorted(reasons.items()):
            row = rows[name]
            if row.port is not None and row.port.node not in self.state.nodes:
                continue  # went with its node's scope
            await self.nb.write(partial(DeletePort, name=row.name, uid=row.uid))
            removed += 1
            event(
                log,
                "reconcile.orphan_port_removed",
                logging.WARNING,
                lsp=name,
                uid=row.uid,
                reason=reason,
            )
        return removed

    async def _drifted_ports(self, snap: NbSnapshot, report: LoadReport) -> int:
        skip = set(report.invalid_ports) | set(report.duplicate_ports)
        fixed = 0
        in_place, self._in_place = self._in_place, {}
        for row in snap.ports:
            if row.name in skip:
                continue
            node = self.state.nodes.get(row.port.node) if row.port is not None else None
            before = in_place.get(row.name)
            if node is not None and before is not None and before[0] is row and before[1] == node:
                self._in_place[row.name] = before  # unchanged since it was checked
                continue
            if await self._repair_port(row):
                fixed += 1
            elif node is not None:
                self._in_place[row.name] = (row, node)
        return fixed

    async def _repair_port(self, row: PortRow) -> bool:
        """Rewrite one port whose columns drifted; True when it was rewritten."""
        port = row.port
        node = self.state.nodes.get(port.node) if port is not None else None
        if port is None or node is None:
            return False
        spec = pod_lsp(self.cfg, node, port)
        if lsp_columns(spec) == row.columns:
            return False
        await self.nb.write(lambda api: WritePort(api, node.name, spec, {port.uid}, fresh=False))
        event(log, "reconcile.port_repaired", lsp=row.name, uid=port.uid, sandbox=port.sandbox)
        return True

    async def repair_node_ports(self, node: str) -> int:
        """Rewrite the ports of one node after its registration changed (runs alongside
        other requests: takes each port's lock and re-reads it)."""
        snap: NbSnapshot = await self.nb.snapshot()
        fixed = 0
        for row in snap.ports:
            if row.port is None or row.port.node != node:
                continue
            async with self.state.port_locks.hold(row.name):
                fresh: PortRow | None = await self.nb.read(partial(ReadPort, name=row.name))
                try:
                    if fresh is not None and await self._repair_port(fresh):
                        fixed += 1
                except ControllerError as exc:
                    event(
                        log,
                        "reconcile.port_repair_failed",
                        logging.WARNING,
                        lsp=row.name,
                        error=str(exc),
                    )
        self._count("ports", fixed)
        return fixed
