"""ovsdbapp commands that read and write dpunet's Northbound objects.

Each write is one command in one transaction, so it is atomic, and it compares
before it sets, so running it again (ovsdbapp retries a transaction whose
outcome was lost in a leader change) changes nothing. Read commands run under
the connection's lock against the IDL replica and return plain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ovsdbapp.backend.ovs_idl import command, idlutils

from dpunet.contract import lsp
from dpunet.controller.errors import Conflict, NotFound, NotOwned
from dpunet.controller.topology import (
    CLUSTER_ROUTER,
    JOIN_SWITCH,
    KIND_KEY,
    NODE_KEY,
    Desired,
    Kind,
    Lrp,
    Lsp,
    Nat,
    NodeRecord,
    PodPort,
    Policy,
    Route,
    owned,
)

LS = "Logical_Switch"
LSP = "Logical_Switch_Port"
LR = "Logical_Router"
LRP = "Logical_Router_Port"
ROUTE = "Logical_Router_Static_Route"
NAT = "NAT"
POLICY = "Logical_Router_Policy"

Row = Any  # ovs.db.idl.Row (untyped library)


def read_column(row: Row, column: str) -> Any:
    """`getattr(row, column)`, cheaply: for a row with no change pending in a
    transaction, the replica's datum is converted directly (python-ovs otherwise
    rebuilds and re-validates a set or map column on every attribute access, which
    dominates any pass over thousands of rows)."""
    data = row._data
    if data is not None and not row._changes and not row._mutations:
        datum = data.get(column)
        if datum is not None:
            return datum.to_python(row._uuid_to_row)
    return getattr(row, column)


def _raw_uuid(atom: uuid.UUID, base: Any) -> uuid.UUID:
    return atom


def ref_uuids(row: Row, column: str) -> set[uuid.UUID]:
    """The uuids a reference column holds (without looking the rows up); empty for a row
    inserted in this transaction that has none yet."""
    data = row._data
    if data is not None and not row._changes and not row._mutations:
        datum = data.get(column)
        if datum is not None:
            return set(datum.to_python(_raw_uuid))
    return {r.uuid for r in _refs(row, column) if r is not None}


def _by_name(api: Any, table: str, name: str) -> list[Row]:
    return list(idlutils.rows_by_value(api.idl, table, "name", name))


def _is_pod(row: Row) -> bool:
    ext = read_column(row, "external_ids")
    return owned(ext) and ext.get(KIND_KEY) == Kind.POD.value


def _refs(row: Row, column: str) -> list[Row]:
    """A reference column; [] for a row inserted in this transaction that has none yet."""
    try:
        return list(read_column(row, column))
    except AttributeError:
        return []


def _parents(api: Any, table: str, column: str, child: Row) -> list[Row]:
    """Every row of `table` whose `column` refers to `child` (a scan of the table)."""
    return [p for p in api.tables[table].rows.values() if child.uuid in ref_uuids(p, column)]


def _pod_switch(api: Any, row: Row) -> Row | None:
    """The switch holding pod port `row`: its node's switch when it is there (an index
    lookup), else whichever switch refers to it (a scan; None when none does)."""
    node = read_column(row, "external_ids").get(NODE_KEY)
    for switch in _by_name(api, LS, node) if node else []:
        if row.uuid in ref_uuids(switch, "ports"):
            return switch
    parents = _parents(api, LS, "ports", row)
    return parents[0] if parents else None


class _Writer(command.BaseCommand):
    """Shared helpers: compare-and-set, counting what changed."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.changes = 0

    def _set(self, row: Row, new: bool, **columns: Any) -> None:
        for col, value in columns.items():
            if new or getattr(row, col) != value:
                setattr(row, col, value)
                self.changes += 1

    def _insert(self, txn: Any, table: str) -> Row:
        self.changes += 1
        return txn.insert(self.api.tables[table])

    def _unlink(self, parent: Row, column: str, child: Row) -> None:
        parent.delvalue(column, child)
        child.delete()
        self.changes += 1


# ------------------------------------------------------------------ topology
def lsp_columns(spec: Lsp) -> dict[str, Any]:
    """The LSP columns a spec sets (also how a snapshot row is compared with a spec)."""
    return {
        "type": spec.type,
        "addresses": list(spec.addresses),
        "port_security": list(spec.port_security),
        "options": dict(spec.options),
        "external_ids": dict(spec.external_ids),
    }


def _lrp_columns(spec: Lrp) -> dict[str, Any]:
    return {
        "mac": spec.mac,
        "networks": list(spec.networks),
        "external_ids": dict(spec.external_ids),
    }


def _route_columns(spec: Route) -> dict[str, Any]:
    return {
        "ip_prefix": spec.ip_prefix,
        "nexthop": spec.nexthop,
        "policy": [spec.policy],
        "output_port": [spec.output_port] if spec.output_port else [],
        "external_ids": dict(spec.external_ids),
    }


def _nat_columns(spec: Nat) -> dict[str, Any]:
    return {
        "type": spec.type,
        "external_ip": spec.external_ip,
        "logical_ip": spec.logical_ip,
        "external_ids": dict(spec.external_ids),
    }


def _policy_columns(spec: Policy) -> dict[str, Any]:
    return {
        "priority": spec.priority,
        "match": spec.match,
        "action": spec.action,
        "nexthops": list(spec.nexthops),
        "external_ids": dict(spec.external_ids),
    }


def _policy_key(row: Row) -> Hashable:
    return (row.priority, row.match)


def _route_key(row: Row) -> Hashable:
    return (row.ip_prefix, (row.policy or ["dst-ip"])[0])


def _nat_key(row: Row) -> Hashable:
    return (row.type, row.logical_ip)


class EnsureDesired(_Writer):
    """Create or repair the objects of some `Desired` states and prune what they no longer
    list; result: how many columns/rows changed."""

    def __init__(self, api: Any, *desired: Desired, port_rows: PortRows | None = None) -> None:
        """`port_rows`: the kept LSPs, to pass over a switch's pod ports without reading
        them (a node switch holds hundreds; none is a topology object)."""
        super().__init__(api)
        self.desired = desired
        self.port_rows = port_rows
        self.each: list[int] = []  # changes per desired state
        self._read: dict[
            tuple[uuid.UUID, str],
            tuple[list[Row], dict[uuid.UUID, dict[str, str]], dict[Hashable, Row]],
        ] = {}

    def run_idl(self, txn: Any) -> None:
        self.each = []
        for d in self.desired:
            before = self.changes
            self._apply(txn, d)
            self.each.append(self.changes - before)
        self.result = self._outcome()

    def _outcome(self) -> Any:
        """The command's result: how many columns/rows changed."""
        return self.changes

    def _apply(self, txn: Any, d: Desired) -> None:
        for ls in d.switches:
            parent = self._root(
                txn, LS, ls.name, ls.external_ids, other_config=dict(ls.other_config)
            )
            self._sync(
                txn,
                parent,
                "ports",
                LSP,
                ls.ports,
                d.scope,
                row_key=lambda r: r.name,
                spec_key=lambda s: s.name,
                columns=lsp_columns,
                parent_table=LS,
            )
        for lr in d.routers:
            parent = self._root(txn, LR, lr.name, lr.external_ids, options=dict(lr.options))
            self._sync(
                txn,
                parent,
                "ports",
                LRP,
                lr.ports,
                d.scope,
                row_key=lambda r: r.name,
                spec_key=lambda s: s.name,
                columns=_lrp_columns,
                parent_table=LR,
            )
            self._sync(
                txn,
                parent,
                "static_routes",
                ROUTE,
                lr.routes,
                d.scope,
                row_key=_route_key,
                spec_key=lambda s: (s.ip_prefix, s.policy),
                columns=_route_columns,
            )
            self._sync(
                txn,
                parent,
                "nat",
                NAT,
                lr.nats,
                d.scope,
                row_key=_nat_key,
                spec_key=lambda s: (s.type, s.logical_ip),
                columns=_nat_columns,
            )
            self._sync(
                txn,
                parent,
                "policies",
                POLICY,
                lr.policies,
                d.scope,
                row_key=_policy_key,
                spec_key=lambda s: (s.priority, s.match),
                columns=_policy_columns,
            )

    def _root(
        self, txn: Any, table: str, name: str, external_ids: Mapping[str, str], **columns: Any
    ) -> Row:
        rows = _by_name(self.api, table, name)
        mine = [r for r in rows if owned(r.external_ids)]
        if rows and not mine:
            raise NotOwned(f"{table} {name} exists and is not owned by dpunet")
        for extra in mine[1:]:
            extra.delete()
            self.changes += 1
        new = not mine
        row = self._insert(txn, table) if new else mine[0]
        self._set(row, new, name=name, external_ids=dict(external_ids), **columns)
        return row

    def _sync(
        self,
        txn: Any,
        parent: Row,
        column: str,
        table: str,
        specs: Iterable[Any],
        scope: str | None,
        *,
        row_key: Callable[[Row], Hashable],
        spec_key: Callable[[Any], Hashable],
        columns: Callable[[Any], dict[str, Any]],
        parent_table: str | None = None,
    ) -> None:
        current, exts, by_key = self._read_children(parent, column, table, row_key)
        kept: set[uuid.UUID] = set()
        for spec in specs:
            row = by_key.get(spec_key(spec))
            if row is None and parent_table is not None:
                row = self._adopt(parent, column, table, parent_table, spec.name)
            new = row is None
            if row is None:
                row = self._insert(txn, table)
                parent.addvalue(column, row.uuid)
            elif not owned(row.external_ids):
                raise NotOwned(f"{table} {spec_key(spec)} exists and is not owned by dpunet")
            extra = {"name": spec.name} if parent_table is not None else {}
            self._set(row, new, **extra, **columns(spec))
            kept.add(row.uuid)
        for row in current:
            ext = exts[row.uuid]
            if row.uuid in kept or not owned(ext) or ext.get(KIND_KEY) == Kind.POD.value:
                continue
            if ext.get(NODE_KEY) == scope:
                self._unlink(parent, column, row)

    def _read_children(
        self, parent: Row, column: str, table: str, row_key: Callable[[Row], Hashable]
    ) -> tuple[list[Row], dict[uuid.UUID, dict[str, str]], dict[Hashable, Row]]:
        """`parent`'s children in `column`, their external ids and the children by key.
        Every node's desired state lists the cluster router and the join switch: while
        nothing changed, they are read once per command, not once per node."""
        memo_key = (parent.uuid, column)
        if self.changes == 0 and (memo := self._read.get(memo_key)) is not None:
            return memo
        current = self._children(parent, column, table)
        exts = {row.uuid: read_column(row, "external_ids") for row in current}
        by_key: dict[Hashable, Row] = {}
        for row in current:
            by_key.setdefault(row_key(row), row)
        if self.changes == 0:  # (after a change, rows and keys are read afresh)
            self._read[memo_key] = (current, exts, by_key)
        return current, exts, by_key

    def _children(self, parent: Row, column: str, table: str) -> list[Row]:
        """`parent`'s rows in `column`, without the pod ports (topology passes never touch
        them) when the kept LSPs say which they are."""
        if table != LSP or self.port_rows is None:
            return _refs(parent, column)
        rows = self.api.tables[LSP].rows
        children = (rows.get(ref) for ref in ref_uuids(parent, column))
        return [r for r in children if r is not None and self.port_rows.kept(r).port is None]

    def _adopt(
        self, parent: Row, column: str, table: str, parent_table: str, name: str
    ) -> Row | None:
        """A uniquely named port that exists under another parent: move it here."""
        rows = _by_name(self.api, table, name)
        if not rows:
            return None
        row = rows[0]
        if not owned(row.external_ids):
            raise NotOwned(f"{table} {name} exists and is not owned by dpunet")
        for old in _parents(self.api, parent_table, column, row):
            old.delvalue(column, row)
        parent.addvalue(column, row.uuid)
        self.changes += 1
        return row


class EnsureEach(EnsureDesired):
    """EnsureDesired whose result is the number of changes of each desired state, in order
    (one transaction for many nodes' topology, each node's repairs still told apart)."""

    def _outcome(self) -> Any:
        return tuple(self.each)


class DeleteScope(_Writer):
    """Remove every owned object of one node (its ports included)."""

    def __init__(self, api: Any, node: str, port_rows: PortRows | None = None) -> None:
        """`port_rows`: the kept LSPs, to find the node's switch ports among every switch's
        without reading them."""
        super().__init__(api)
        self.node = node
        self.port_rows = port_rows

    def run_idl(self, txn: Any) -> None:
        roots = {LS: (Kind.NODE_SWITCH, Kind.EXT_SWITCH), LR: (Kind.GATEWAY_ROUTER,)}
        children = {LS: ("ports",), LR: ("ports", "static_routes", "nat", "policies")}
        for table, kinds in roots.items():
            for row in list(self.api.tables[table].rows.values()):
                ext = read_column(row, "external_ids")
                if owned(ext) and ext.get(NODE_KEY) == self.node and ext.get(KIND_KEY) in kinds:
                    row.delete()
                    self.changes += 1
                    continue
                for column in children[table]:
                    for child in self._children(table, row, column):
                        self._unlink(row, column, child)
        self.result = self.changes

    def _children(self, table: str, row: Row, column: str) -> list[Row]:
        """`row`'s children in `column` that are owned and of this node."""
        if table == LS and self.port_rows is not None:
            lsps = self.api.tables[LSP].rows
            found = (lsps.get(ref) for ref in ref_uuids(row, column))
            return [c for c in found if c is not None and self.port_rows.kept(c).scope == self.node]
        return [
            child
            for child in _refs(row, column)
            if owned(ext := read_column(child, "external_ids")) and ext.get(NODE_KEY) == self.node
        ]


# --------------------------------------------------------------------- ports
class WritePort(_Writer):
    """Create or update one pod LSP on its node switch; result: the LSP's uuid.

    `allowed_uids`: pod uids the existing LSP may carry (anything else means the port
    changed under us: Conflict). `fresh`: the port must be a new row (pod replaced or
    moved to another VF), so `up` starts from scratch.
    """

    def __init__(
        self, api: Any, switch: str, spec: Lsp, allowed_uids: set[str], fresh: bool
    ) -> None:
        super().__init__(api)
        self.switch = switch
        self.spec = spec
        self.allowed_uids = allowed_uids
        self.fresh = fresh
        self._inserted: Row | None = None

    def run_idl(self, txn: Any) -> None:
        parent = next(
            (
                r
                for r in _by_name(self.api, LS, self.switch)
                if owned(r.external_ids) and r.external_ids.get(KIND_KEY) == Kind.NODE_SWITCH.value
            ),
            None,
        )
        if parent is None:
            raise NotFound(f"node {self.switch} is not registered")
        rows = _by_name(self.api, LSP, self.spec.name)
        row = rows[0] if rows else None
        cols = lsp_columns(self.spec)
        if row is not None:
            if not _is_pod(row):
                raise NotOwned(f"Logical_Switch_Port {self.spec.name} is not a dpunet pod port")
            in_parent = row.uuid in ref_uuids(parent, "ports")
            if in_parent and all(getattr(row, c) == v for c, v in cols.items()):
                self.result = row.uuid  # already as wanted (e.g. a retried transaction)
                return
            if row.external_ids.get(lsp.UID, "") not in self.allowed_uids:
                raise Conflict(f"port {self.spec.name} changed concurrently; retry")
            if self.fresh:
                for old in _parents(self.api, LS, "ports", row):
                    self._unlink(old, "ports", row)
                row = None
            elif not in_parent:
                for old in _parents(self.api, LS, "ports", row):
                    old.delvalue("ports", row)
                parent.addvalue("ports", row.uuid)
        new = row is None
        if row is None:
            row = self._inserted = self._insert(txn, LSP)
            parent.addvalue("ports", row.uuid)
        self._set(row, new, name=self.spec.name, **cols)
        self.result = row.uuid

    def post_commit(self, txn: Any) -> None:
        if self._inserted is not None:
            self.result = txn.get_insert_uuid(self._inserted.uuid) or self._inserted.uuid


class DeletePort(_Writer):
    """Remove one pod LSP; result: the removed port (None when there was nothing to do).

    With `uid`, only a port of that pod uid is removed (a stale release of a replaced
    pod changes nothing).
    """

    def __init__(self, api: Any, name: str, uid: str | None = None) -> None:
        super().__init__(api)
        self.name = name
        self.uid = uid

    def run_idl(self, txn: Any) -> None:
        self.result = None
        rows = _by_name(self.api, LSP, self.name)
        if not rows:
            return
        row = rows[0]
        if not _is_pod(row):
            raise NotOwned(f"Logical_Switch_Port {self.name} is not a dpunet pod port")
        if self.uid is not None and row.external_ids.get(lsp.UID) != self.uid:
            return
        try:
            self.result = PodPort.from_lsp(row.addresses, row.external_ids)
        except (KeyError, ValueError):
            self.result = None
        for parent in _parents(self.api, LS, "ports", row):
            self._unlink(parent, "ports", row)


# --------------------------------------------------------------------- reads
@dataclass(frozen=True)
class PortRow:
    """An owned pod LSP as found in NB."""

    name: str
    uuid: uuid.UUID
    switch: str | None
    up: bool
    uid: str | None
    port: PodPort | None  # None when the row is malformed
    columns: dict[str, Any]  # type, addresses, port_security, options, external_ids
    problem: str | None = None


@dataclass
class NbSnapshot:
    """dpunet's view of Northbound at one instant."""

    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    bad_nodes: dict[str, str] = field(default_factory=dict)
    ports: list[PortRow] = field(default_factory=list)
    scopes: set[str] = field(default_factory=set)
    conflicts: list[str] = field(default_factory=list)


def _port_row(row: Row, switch: str | None) -> PortRow:
    up_column = read_column(row, "up")
    up = bool(up_column and up_column[0])
    columns = {
        "type": read_column(row, "type"),
        "addresses": list(read_column(row, "addresses")),
        "port_security": list(read_column(row, "port_security")),
        "options": dict(read_column(row, "options")),
        "external_ids": dict(read_column(row, "external_ids")),
    }
    try:
        port: PodPort | None = PodPort.from_lsp(columns["addresses"], columns["external_ids"])
        problem = None
    except (KeyError, ValueError) as exc:
        port, problem = None, f"malformed pod port: {exc}"
    uid = columns["external_ids"].get(lsp.UID)
    return PortRow(read_column(row, "name"), row.uuid, switch, up, uid, port, columns, problem)


@dataclass(frozen=True)
class KeptLsp:
    """What passes over many LSPs need of one row: its node scope (`dpunet:node` of an
    owned row) and, for a pod port, its PortRow (switch: the scope's, the usual place)."""

    scope: str | None
    port: PortRow | None


def _keep(row: Row) -> KeptLsp:
    ext = read_column(row, "external_ids")
    scope = ext.get(NODE_KEY) if owned(ext) else None
    pod = owned(ext) and ext.get(KIND_KEY) == Kind.POD.value
    return KeptLsp(scope, _port_row(row, scope) if pod else None)


class PortRows:
    """A KeptLsp of every LSP, kept current from the IDL's change notifications (in the
    IDL thread, under the connection lock like every read), so that a snapshot or a
    node's listing neither parses thousands of unchanged ports again nor reads a column
    of every row through python-ovs; and which row holds each LSP name (names are
    unique in NB), so that a port request learns who holds its name without a read."""

    def __init__(self) -> None:
        self._kept: dict[uuid.UUID, KeptLsp] = {}
        self._names: dict[str, uuid.UUID] = {}  # LSP name -> the row that last had it
        self._row_names: dict[uuid.UUID, str] = {}

    def changed(self, deleted: bool, row: Row) -> None:
        """IDL thread: LSP `row` was created, updated or (`deleted`) deleted."""
        name = None if deleted else read_column(row, "name")
        before = self._row_names.pop(row.uuid, None)
        if before is not None and before != name and self._names.get(before) == row.uuid:
            del self._names[before]
        if deleted or row._changes or row._mutations:
            # (a row a transaction in flight is changing shows that transaction's values:
            # parsed again when next asked for, when no transaction is in flight)
            self._kept.pop(row.uuid, None)
        else:
            self._kept[row.uuid] = _keep(row)
        if name is not None:
            self._row_names[row.uuid] = name
            self._names[name] = row.uuid

    def prune(self, present: Container[uuid.UUID]) -> None:
        """IDL thread: forget the rows no longer in the replica (`present`): python-ovs
        drops rows on a full resync without reporting them deleted."""
        for row in [r for r in self._row_names if r not in present]:
            name = self._row_names.pop(row)
            if self._names.get(name) == row:
                del self._names[name]
        for row in [r for r in self._kept if r not in present]:
            del self._kept[row]

    def kept(self, row: Row) -> KeptLsp:
        """LSP `row`'s KeptLsp (parsed now if not kept; kept unless a transaction is
        changing the row)."""
        found = self._kept.get(row.uuid)
        if found is None:  # (rows replaced after a reconnection are notified again)
            found = _keep(row)
            if not row._changes and not row._mutations:
                self._kept[row.uuid] = found
        return found

    def get(self, row: Row, switch: str | None) -> PortRow:
        """The PortRow of pod LSP `row` on `switch`."""
        found = self.kept(row).port
        if found is None:
            raise ValueError(f"Logical_Switch_Port {row.uuid} is not a dpunet pod port")
        return found if found.switch == switch else replace(found, switch=switch)

    def by_name(
        self, name: str, in_replica: Callable[[uuid.UUID], bool]
    ) -> tuple[PortRow | None, bool] | None:
        """What `ReadPortName` reads (the port's switch: its node's), from the kept rows
        (any thread); None when they cannot tell: the row holding the name is being
        changed by a transaction, or is no longer in the replica (`in_replica`: python-ovs
        drops rows on a resync without reporting them deleted)."""
        row = self._names.get(name)
        if row is None:
            return None, False  # every row of the replica was reported when it arrived
        kept = self._kept.get(row)
        if kept is None or self._row_names.get(row) != name or not in_replica(row):
            return None
        return kept.port, kept.port is None


class ReadPort(command.ReadOnlyCommand):
    """One pod LSP (None when absent or not a dpunet pod port)."""

    def __init__(self, api: Any, name: str) -> None:
        super().__init__(api)
        self.name = name

    def run_idl(self, txn: Any) -> None:
        rows = [r for r in _by_name(self.api, LSP, self.name) if _is_pod(r)]
        if not rows:
            self.result = None
            return
        switch = _pod_switch(self.api, rows[0])
        self.result = _port_row(rows[0], switch.name if switch is not None else None)


class ReadPortName(command.ReadOnlyCommand):
    """Who holds LSP name `name`: (the dpunet pod port or None, whether an LSP of that name
    that is not a dpunet pod port exists)."""

    def __init__(self, api: Any, name: str) -> None:
        super().__init__(api)
        self.name = name

    def run_idl(self, txn: Any) -> None:
        rows = _by_name(self.api, LSP, self.name)
        pods = [r for r in rows if _is_pod(r)]
        port = None
        if pods:
            switch = _pod_switch(self.api, pods[0])
            port = _port_row(pods[0], switch.name if switch is not None else None)
        self.result = (port, len(pods) < len(rows))


class NodePorts(command.ReadOnlyCommand):
    """The pod ports of node `node`: those on its switch that name it (from `port_rows`:
    no pass over other nodes' ports). A port of the node found elsewhere is not one: the
    next reconcile pass removes it."""

    def __init__(self, api: Any, node: str, port_rows: PortRows) -> None:
        super().__init__(api)
        self.node = node
        self.port_rows = port_rows

    def run_idl(self, txn: Any) -> None:
        lsps = self.api.tables[LSP].rows
        found: dict[uuid.UUID, PortRow] = {}
        for switch in _by_name(self.api, LS, self.node):
            for ref in ref_uuids(switch, "ports"):
                row = lsps.get(ref)
                port = self.port_rows.kept(row).port if row is not None else None
                if port is not None and port.port is not None and port.port.node == self.node:
                    found.setdefault(ref, replace(port, switch=self.node))
        self.result = list(found.values())


class Snapshot(command.ReadOnlyCommand):
    """Registered nodes, owned pod ports, node scopes in use and foreign objects in the way
    (LSPs from `port_rows` when given: no column of an unchanged LSP is read again). It
    then prunes `port_rows` to the replica's LSPs, and hands them to `prune` (under the
    connection lock, like the change notifications)."""

    def __init__(
        self,
        api: Any,
        port_rows: PortRows | None = None,
        prune: Callable[[Container[uuid.UUID]], None] | None = None,
    ) -> None:
        super().__init__(api)
        self.port_rows = port_rows if port_rows is not None else PortRows()
        self.prune = prune

    def run_idl(self, txn: Any) -> None:
        snap = NbSnapshot()
        lsps = self.api.tables[LSP].rows
        linked: set[uuid.UUID] = set()
        for table in (LS, LR):
            for row in self.api.tables[table].rows.values():
                ext = read_column(row, "external_ids")
                if row.name in (CLUSTER_ROUTER, JOIN_SWITCH) and not owned(ext):
                    snap.conflicts.append(f"{table} {row.name}")
                if owned(ext) and NODE_KEY in ext:
                    snap.scopes.add(ext[NODE_KEY])
                if table == LR:
                    for child in self._router_children(row):
                        child_ext = read_column(child, "external_ids")
                        if owned(child_ext) and NODE_KEY in child_ext:
                            snap.scopes.add(child_ext[NODE_KEY])
                    continue
                if owned(ext) and ext.get(KIND_KEY) == Kind.NODE_SWITCH.value:
                    try:
                        snap.nodes[row.name] = NodeRecord.from_switch(
                            row.name, read_column(row, "other_config"), ext
                        )
                    except (KeyError, ValueError) as exc:
                        snap.bad_nodes[row.name] = f"incomplete node record: {exc}"
                for ref in ref_uuids(row, "ports"):
                    lsp_row = lsps.get(ref)
                    if lsp_row is None:
                        continue
                    kept = self.port_rows.kept(lsp_row)
                    if kept.scope is not None:
                        snap.scopes.add(kept.scope)
                    if kept.port is not None:  # (a port on two switches: listed twice)
                        linked.add(ref)
                        port = kept.port
                        snap.ports.append(
                            port if port.switch == row.name else replace(port, switch=row.name)
                        )
        for ref, lsp_row in lsps.items():
            if ref not in linked:
                stray = self.port_rows.kept(lsp_row).port
                if stray is not None:
                    snap.ports.append(replace(stray, switch=None) if stray.switch else stray)
        self.port_rows.prune(lsps)
        if self.prune is not None:
            self.prune(lsps)
        self.result = snap

    @staticmethod
    def _router_children(row: Row) -> list[Row]:
        return [
            *_refs(row, "ports"),
            *_refs(row, "static_routes"),
            *_refs(row, "nat"),
            *_refs(row, "policies"),
        ]
