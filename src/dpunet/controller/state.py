"""The controller's in-memory view: registered nodes and address pools, rebuilt from NB.

Only the event loop touches it. `Gate` lets port and node operations run concurrently
while a full reload from NB (at start, and each time the NB lock is re-acquired)
waits for them to finish and holds new ones back until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import Unavailable
from dpunet.controller.ipam import AddressInUse, AddressPool, HostPool, SubnetPool
from dpunet.controller.nbcommands import NbSnapshot
from dpunet.controller.topology import NodeRecord
from dpunet.keyedlocks import KeyedLocks


class Gate:
    """Many operations at once, or one reload alone."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._inflight = 0
        self.is_open = False

    @contextlib.asynccontextmanager
    async def enter(self, timeout: float) -> AsyncIterator[None]:
        """Run an operation; waits up to `timeout` while a reload is going on."""
        async with self._cond:
            try:
                if not self.is_open:
                    await asyncio.wait_for(self._cond.wait_for(lambda: self.is_open), timeout)
            except TimeoutError:
                raise Unavailable(
                    "the controller is (re)loading its state from OVN Northbound; retry"
                ) from None
            self._inflight += 1
        try:
            yield
        finally:
            async with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    async def close(self) -> None:
        """Stop admitting operations and wait until the running ones are done."""
        async with self._cond:
            self.is_open = False
            await self._cond.wait_for(lambda: self._inflight == 0)

    async def open(self) -> None:
        """Admit operations again."""
        async with self._cond:
            self.is_open = True
            self._cond.notify_all()


@dataclass
class LoadReport:
    """What a reload from NB found wrong (the reconciler repairs it)."""

    duplicate_ports: list[str] = field(default_factory=list)  # LSP names whose address is taken
    invalid_ports: dict[str, str] = field(default_factory=dict)  # LSP name -> reason
    bad_nodes: dict[str, str] = field(default_factory=dict)  # node -> reason
    foreign_subnets: dict[str, str] = field(default_factory=dict)  # node -> its subnet


class ClusterState:
    """Registered nodes, node subnets, join addresses and per-node address pools."""

    def __init__(self, cfg: ControllerConfig) -> None:
        self.cfg = cfg
        self.nodes: dict[str, NodeRecord] = {}
        self.pools: dict[str, AddressPool] = {}
        self.subnets = SubnetPool(cfg.cluster_cidr, cfg.node_prefix)
        self.join = HostPool(cfg.join_subnet, skip=1)  # .1 is the cluster router
        self.port_locks = KeyedLocks()
        self.topology_lock = asyncio.Lock()
        self.gate = Gate()

    def load(self, snap: NbSnapshot) -> LoadReport:
        """Replace everything with what NB holds (nothing may be in flight)."""
        report = LoadReport(bad_nodes=dict(snap.bad_nodes))
        self.nodes, self.pools = {}, {}
        self.subnets = SubnetPool(self.cfg.cluster_cidr, self.cfg.node_prefix)
        self.join = HostPool(self.join.subnet, skip=1)
        for name in sorted(snap.nodes):
            node = snap.nodes[name]
            problem = self._claim_node(node)
            if not self.subnets.owns(node.subnet):
                report.foreign_subnets[name] = str(node.subnet)
            try:
                addresses = AddressPool(node.subnet)
            except ValueError as exc:
                problem = problem or str(exc)
            if problem is not None:
                report.bad_nodes[name] = problem
                continue
            self.nodes[name] = node
            self.pools[name] = addresses
        for row in sorted(snap.ports, key=lambda r: r.name):
            port = row.port
            if port is None:
                report.invalid_ports[row.name] = row.problem or "malformed"
                continue
            pool = self.pools.get(port.node)
            if pool is None or row.switch != port.node:
                report.invalid_ports[row.name] = (
                    f"not on the switch of a registered node {port.node}"
                )
                continue
            try:
                pool.reserve(port.ip)
            except AddressInUse:
                report.duplicate_ports.append(row.name)
            except ValueError as exc:
                report.invalid_ports[row.name] = str(exc)
        return report

    def _claim_node(self, node: NodeRecord) -> str | None:
        """Reserve a node's subnet and join address; the problem when that fails."""
        try:
            self.subnets.reserve(node.subnet)
        except AddressInUse as exc:
            return f"subnet: {exc}"
        try:
            self.join.reserve(node.join_ip)
        except AddressInUse as exc:
            self.subnets.release(node.subnet)
            return f"join address: {exc}"
        except ValueError:
            pass  # outside the (changed) join subnet: kept, never handed out again
        return None

    def add_node(self, node: NodeRecord) -> None:
        """Record a node whose subnet and join address were allocated from the pools."""
        self.nodes[node.name] = node
        self.pools.setdefault(node.name, AddressPool(node.subnet))

    def drop_node(self, name: str) -> None:
        """Forget a node and return its subnet and join address."""
        node = self.nodes.pop(name, None)
        self.pools.pop(name, None)
        if node is not None:
            self.subnets.release(node.subnet)
            self.join.release(node.join_ip)

    def node_stats(self) -> list[tuple[str, int, int]]:
        """(node, pod ports, free addresses) for every node."""
        return [(n, len(p.used), p.free) for n, p in sorted(self.pools.items())]
