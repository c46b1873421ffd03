"""ovsdbapp commands that keep services' OVN load balancers in step with their specs.

`SyncServices` is the whole level-triggered pass in one transaction, run in ovsdbapp's
connection thread against the IDL replica: read every service spec stored on the owned
cluster load balancers, the pod ports that are up and the registered nodes; optionally
admit one change (a PUT, with its allocations, or a DELETE); compute the desired rows
(service_lbs.py) and compare-and-set. Transactions run one at a time in that thread, so
two changes never allocate the same cluster IP or node port, and a pass that finds
everything as wanted sends nothing to the server.

A stored spec that does not parse leaves that service's rows untouched (never guessed
at, never deleted) until a PUT or DELETE of the service replaces them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ovsdbapp.backend.ovs_idl import command, idlutils
from pydantic import ValidationError

from dpunet.contract.services import ServiceSpec
from dpunet.controller.nbcommands import LR, LS, LSP, read_column
from dpunet.controller.service_lbs import (
    CLUSTER_LB_GROUP,
    NODE_PORT_KIND,
    SERVICE_KEY,
    SERVICE_KIND,
    SERVICE_KINDS,
    SPEC_KEY,
    Lb,
    PodBackend,
    admit,
    backend_ips,
    decode,
    desired_lbs,
    encode,
)
from dpunet.controller.topology import KIND_KEY, NODE_KEY, Kind, NodeRecord, PodPort, owned

LB = "Load_Balancer"
LB_GROUP = "Load_Balancer_Group"

Row = Any  # ovs.db.idl.Row (untyped library)


def _refs(row: Row, column: str) -> list[Row]:
    """A reference column; [] for a row inserted in this transaction."""
    try:
        return list(getattr(row, column))
    except AttributeError:
        return []


def _kind(row: Row) -> str | None:
    ext = read_column(row, "external_ids")
    return ext.get(KIND_KEY) if owned(ext) else None


@dataclass
class _View:
    """dpunet's services, pods and nodes as the IDL replica holds them."""

    specs: dict[str, tuple[ServiceSpec, str]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # service key -> reason
    lbs: dict[str, list[Row]] = field(default_factory=dict)  # owned service LBs by name
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    switches: dict[str, Row] = field(default_factory=dict)
    routers: dict[str, Row] = field(default_factory=dict)
    api: Any = None

    @cached_property
    def pods(self) -> list[PodBackend]:
        """Every dpunet pod port that is up: read (a pass over all ports) only when some
        service needs its backends."""
        return _pod_backends(self.api)

    def backends(self, key: str) -> list[IPv4Address]:
        """The current backend addresses of a service."""
        namespace = key.partition("/")[0]
        return backend_ips(namespace, self.specs[key][0], self.pods)

    def desired(self) -> list[Lb]:
        """Every load balancer the specs call for."""
        out: list[Lb] = []
        for key, (spec, stored) in sorted(self.specs.items()):
            out += desired_lbs(key, spec, stored, self.backends(key), self.nodes)
        return out


def _load(api: Any) -> _View:
    view = _View(api=api)
    for row in api.tables[LB].rows.values():
        if _kind(row) in SERVICE_KINDS:
            view.lbs.setdefault(row.name, []).append(row)
    for name in sorted(view.lbs):
        for row in view.lbs[name]:
            ext = row.external_ids
            key = ext.get(SERVICE_KEY, "")
            if ext.get(KIND_KEY) != SERVICE_KIND or key in view.specs:
                continue
            try:
                view.specs[key] = (decode(ext[SPEC_KEY]), ext[SPEC_KEY])
                view.broken.pop(key, None)
            except (KeyError, ValidationError) as exc:
                view.broken.setdefault(key, f"unreadable spec on {name}: {exc}")
    for row in api.tables[LS].rows.values():
        if _kind(row) != Kind.NODE_SWITCH.value or row.name in view.nodes:
            continue
        try:
            view.nodes[row.name] = NodeRecord.from_switch(
                row.name, row.other_config, row.external_ids
            )
        except (KeyError, ValueError):
            continue
        view.switches[row.name] = row
    for row in api.tables[LR].rows.values():
        node = row.external_ids.get(NODE_KEY)
        if _kind(row) == Kind.GATEWAY_ROUTER.value and node in view.nodes:
            view.routers.setdefault(node, row)
    return view


def _pod_backends(api: Any) -> list[PodBackend]:
    """Every dpunet primary pod port that is up, as a possible service backend (services
    live on the pods' primary network)."""
    pods = []
    for row in api.tables[LSP].rows.values():
        up = read_column(row, "up")
        if not (up and up[0]) or _kind(row) != Kind.POD.value:
            continue
        try:
            port = PodPort.from_lsp(read_column(row, "addresses"), read_column(row, "external_ids"))
        except (KeyError, ValueError):
            continue
        if port.network is None:
            pods.append(PodBackend(port.namespace, port.pod, port.ip, dict(port.labels)))
    return pods


@dataclass(frozen=True)
class ServiceState:
    """One service as found in Northbound."""

    key: str
    spec: ServiceSpec
    backends: list[IPv4Address]
    load_balancers: list[str]


def _state(view: _View, key: str) -> ServiceState:
    names = [n for n, rows in view.lbs.items() if rows[0].external_ids.get(SERVICE_KEY) == key]
    return ServiceState(key, view.specs[key][0], view.backends(key), sorted(names))


class ReadServices(command.ReadOnlyCommand):
    """Every readable service (result: list of ServiceState, by key), or one (`key`:
    ServiceState or None)."""

    def __init__(self, api: Any, key: str | None = None) -> None:
        super().__init__(api)
        self.key = key

    def run_idl(self, txn: Any) -> None:
        view = _load(self.api)
        if self.key is None:
            self.result: Any = [_state(view, k) for k in sorted(view.specs)]
        else:
            self.result = _state(view, self.key) if self.key in view.specs else None


@dataclass(frozen=True)
class SyncResult:
    """What a pass did: columns/rows changed, how many services there are, the services
    it could not read and, for a PUT, the service as admitted; whether the changed
    service existed before."""

    changes: int
    services: int
    broken: dict[str, str]
    state: ServiceState | None = None
    existed: bool = False


class SyncServices(command.BaseCommand):
    """Make the service load balancers match the stored specs, after admitting `spec` for
    `key` (a PUT) or removing `key` (`delete`); or match `replace`, the complete set from
    another source (Kubernetes: taken as it is, no allocation); result: a SyncResult."""

    def __init__(
        self,
        api: Any,
        cidr: IPv4Network,
        node_ports: range,
        key: str | None = None,
        spec: ServiceSpec | None = None,
        delete: bool = False,
        replace: dict[str, ServiceSpec] | None = None,
    ) -> None:
        super().__init__(api)
        self.replace = replace
        self.cidr = cidr
        self.node_ports = node_ports
        self.key = key
        self.spec = spec
        self.delete = delete
        self.changes = 0

    def run_idl(self, txn: Any) -> None:
        self.changes = 0
        view = _load(self.api)
        key, existed = self.key, False
        if self.replace is not None:
            old_specs = view.specs
            view.specs, view.broken = {}, {}
            for k, s in self.replace.items():
                old = old_specs.get(k)
                view.specs[k] = (s, old[1] if old is not None and old[0] == s else encode(s))
        elif key is not None:
            existed = key in view.specs or key in view.broken
            view.broken.pop(key, None)
            if self.delete:
                view.specs.pop(key, None)
            elif self.spec is not None:
                current = {k: s for k, (s, _) in view.specs.items()}
                admitted = admit(self.cidr, self.node_ports, current, key, self.spec)
                old = view.specs.get(key)
                # an unchanged spec keeps its stored text, so a repeated PUT writes nothing
                stored = old[1] if old is not None and old[0] == admitted else encode(admitted)
                view.specs[key] = (admitted, stored)
        desired = view.desired()
        self._apply(txn, view, desired)
        state = None
        if key is not None and key in view.specs:
            names = [lb.name for lb in desired if lb.external_ids[SERVICE_KEY] == key]
            state = ServiceState(key, view.specs[key][0], view.backends(key), sorted(names))
        self.result = SyncResult(self.changes, len(view.specs), dict(view.broken), state, existed)

    # ------------------------------------------------------------------ writes
    def _set(self, row: Row, new: bool, **columns: Any) -> None:
        for col, value in columns.items():
            if new or getattr(row, col) != value:
                setattr(row, col, value)
                self.changes += 1

    def _apply(self, txn: Any, view: _View, desired: list[Lb]) -> None:
        ours = {r.uuid for rows in view.lbs.values() for r in rows}
        rows: dict[str, Row] = {}
        for lb in desired:
            found = view.lbs.pop(lb.name, [])
            for extra in found[1:]:
                extra.delete()
                self.changes += 1
            new = not found
            row = txn.insert(self.api.tables[LB]) if new else found[0]
            self.changes += new
            self._set(
                row,
                new,
                name=lb.name,
                protocol=[lb.protocol],
                vips=dict(lb.vips),
                options=dict(lb.options),
                external_ids=dict(lb.external_ids),
            )
            rows[lb.name] = row
        kept = [  # rows of services whose spec cannot be read stay as they are
            r
            for found in view.lbs.values()
            for r in found
            if r.external_ids.get(SERVICE_KEY) in view.broken
        ]
        cluster = [rows[lb.name] for lb in desired if lb.node is None]
        cluster += [r for r in kept if _kind(r) == SERVICE_KIND]
        self._group(txn, view, cluster, ours)
        for node, router in view.routers.items():
            wanted = [rows[lb.name] for lb in desired if lb.node == node]
            wanted += [
                r
                for r in kept
                if _kind(r) == NODE_PORT_KIND and r.external_ids.get(NODE_KEY) == node
            ]
            self._members(router, "load_balancer", wanted, ours)
        kept_ids = {r.uuid for r in kept}
        for found in view.lbs.values():
            for row in found:
                if row.uuid not in kept_ids:
                    row.delete()
                    self.changes += 1

    def _members(
        self, parent: Row, column: str, wanted: Iterable[Row], ours: set[uuid.UUID]
    ) -> None:
        """Make `parent.column` hold exactly `wanted` among dpunet's rows (others stay)."""
        want = {r.uuid for r in wanted}
        have = {r.uuid for r in _refs(parent, column)}
        for u in have - want:
            if u in ours:
                parent.delvalue(column, u)
                self.changes += 1
        for u in want - have:
            parent.addvalue(column, u)
            self.changes += 1

    def _group(self, txn: Any, view: _View, cluster: list[Row], ours: set[uuid.UUID]) -> None:
        """`clusterLBGroup` holds the cluster load balancers and is attached to every node
        switch and gateway router; without services it is removed again (unless it holds
        load balancers that are not dpunet's)."""
        found = list(idlutils.rows_by_value(self.api.idl, LB_GROUP, "name", CLUSTER_LB_GROUP))
        group = found[0] if found else None
        foreign = [r for r in _refs(group, "load_balancer") if r.uuid not in ours] if group else []
        holders = [*view.switches.values(), *view.routers.values()]
        if not cluster and group is not None and not foreign:
            for table in (LS, LR):
                for row in self.api.tables[table].rows.values():
                    if any(g.uuid == group.uuid for g in _refs(row, "load_balancer_group")):
                        row.delvalue("load_balancer_group", group.uuid)
                        self.changes += 1
            group.delete()
            self.changes += 1
            return
        if not cluster:
            return
        if group is None:
            group = txn.insert(self.api.tables[LB_GROUP])
            group.name = CLUSTER_LB_GROUP
            self.changes += 1
        self._members(group, "load_balancer", cluster, ours)
        for row in holders:
            if all(g.uuid != group.uuid for g in _refs(row, "load_balancer_group")):
                row.addvalue("load_balancer_group", group.uuid)
                self.changes += 1
