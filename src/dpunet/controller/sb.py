"""The controller's read-only view of OVN Southbound: which pod ports ovn-controller
reports up, and on which chassis (docs/controller.md, "When a port PUT answers").

ovn-controller sets `Port_Binding.up` once the flows of a binding are installed; northd
copies it to NB `Logical_Switch_Port.up` on its next pass. A PUT waiting for the SB row
saves that pass. Only a narrow subset is replicated: Port_Binding rows carrying dpunet's
pod-port marks (northd copies an LSP's external ids to its binding), columns
`logical_port`, `chassis`, `up`, `mac`, `external_ids`, and every Chassis' `name` and
`hostname`. `mac` and `external_ids` tie a binding to the LSP contents a PUT wrote: a
binding still showing an earlier port of the same name (northd has not processed the
new row yet) does not count.

`SbBindings` is the state (fed from the monitor thread, read on the event loop);
`SbMonitor` is the python-ovs IDL thread that feeds it, reconnecting by itself. A row
that does not parse as a dpunet pod port is reported once and skipped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ovs.db import idl as ovs_idl

from dpunet import logs
from dpunet.controller.topology import KIND_KEY, OWNER, OWNER_KEY, Kind, PodPort
from dpunet.ovsdb.monitor import IdlThread
from dpunet.ovsdb.rpc import SB_SCHEMA, schema_helper

PORT_BINDING = "Port_Binding"
CHASSIS = "Chassis"
COLUMNS = {
    PORT_BINDING: ["logical_port", "chassis", "up", "mac", "external_ids"],
    CHASSIS: ["name", "hostname"],
}
POD_MARKS = {OWNER_KEY: OWNER, KIND_KEY: Kind.POD.value}

log = logging.getLogger("dpunet.controller.sb")


@dataclass(frozen=True)
class Expected:
    """What the binding of a port written by a PUT must show to count as ready."""

    chassis: str  # the node's chassis (name or hostname, as requested-chassis)
    mac: tuple[str, ...]  # the LSP's addresses, which northd copies to `mac`
    external_ids: Mapping[str, str]  # the LSP's external ids, copied likewise


@dataclass(frozen=True)
class _Binding:
    row: uuid.UUID
    chassis: uuid.UUID | None
    up: bool
    mac: tuple[str, ...]
    external_ids: frozenset[tuple[str, str]]


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a set of strings: {value!r}")
    return tuple(value)


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"external_ids is not a string map: {value!r}")
    return dict(value)


def _optional_ref(value: Any) -> uuid.UUID | None:
    items = list(value) if isinstance(value, list | tuple) else [value]
    if len(items) > 1:
        raise ValueError(f"chassis holds {len(items)} references")
    if not items or items[0] is None:
        return None
    ref = getattr(items[0], "uuid", items[0])
    if not isinstance(ref, uuid.UUID):
        raise ValueError(f"chassis is not a reference: {ref!r}")
    return ref


def _optional_bool(value: Any) -> bool:
    items = list(value) if isinstance(value, list | tuple) else [value]
    if len(items) > 1 or not all(isinstance(v, bool) for v in items):
        raise ValueError(f"up is not an optional boolean: {value!r}")
    return bool(items and items[0])


class SbBindings:
    """dpunet pod ports' bindings as SB reports them (see the module docstring).

    Written by one thread (the monitor's), read by the event loop: every update replaces
    a dict entry whole, so a reader sees one binding's old or new state, never a mix.
    """

    def __init__(self) -> None:
        self._ports: dict[str, _Binding] = {}  # logical port -> its binding
        self._rows: dict[uuid.UUID, str] = {}  # Port_Binding row -> its logical port
        self._chassis: dict[uuid.UUID, frozenset[str]] = {}
        self._malformed: set[uuid.UUID] = set()  # reported, until the row changes again
        self.connected = False  # the replica is live (set by the monitor)
        self.listener: Callable[[str], None] | None = None  # (logical port), monitor thread

    def __len__(self) -> int:
        return len(self._ports)

    # ------------------------------------------------------------ updates
    def chassis_changed(self, deleted: bool, row: uuid.UUID, names: Sequence[str]) -> None:
        """A Chassis row was inserted, updated or deleted (its name and hostname)."""
        if deleted:
            self._chassis.pop(row, None)
        else:
            self._chassis[row] = frozenset(n for n in names if n)

    def port_changed(
        self,
        deleted: bool,
        row: uuid.UUID,
        logical_port: Any,
        chassis: Any,
        up: Any,
        mac: Any,
        external_ids: Any,
    ) -> None:
        """A Port_Binding row changed (its columns as python-ovs gives them: sets as
        lists, references as rows or uuids). A malformed row is reported and dropped."""
        binding = (
            None if deleted else self._parse(row, logical_port, chassis, up, mac, external_ids)
        )
        if deleted:
            self._malformed.discard(row)
        before = self._rows.pop(row, None)
        if before is not None and (binding is None or before != logical_port):
            current = self._ports.get(before)
            if current is not None and current.row == row:
                del self._ports[before]
        if binding is not None:
            self._rows[row] = logical_port
            if self._ports.get(logical_port) != binding:
                self._ports[logical_port] = binding
                self._notify(logical_port)

    def _parse(
        self, row: uuid.UUID, logical_port: Any, chassis: Any, up: Any, mac: Any, ids: Any
    ) -> _Binding | None:
        """The binding a row's columns describe; None (reported once) when malformed."""
        if not isinstance(logical_port, str) or not logical_port:
            self._report(row, repr(logical_port), "logical_port is not a name")
            return None
        try:
            external_ids = _string_map(ids)
            addresses = _strings(mac, "mac")
            binding = _Binding(
                row,
                _optional_ref(chassis),
                _optional_bool(up),
                addresses,
                frozenset(external_ids.items()),
            )
            PodPort.from_lsp(list(addresses), external_ids)  # what a dpunet pod port holds
        except (ValueError, KeyError, TypeError) as exc:
            self._report(row, logical_port, str(exc) or repr(exc))
            return None
        self._malformed.discard(row)
        return binding

    def clear(self) -> None:
        """Forget everything (before the replica is read again after a resync), the rows
        reported malformed too: one deleted meanwhile sends no delete to forget it by, one
        still there is read (and reported) again."""
        self._ports.clear()
        self._rows.clear()
        self._chassis.clear()
        self._malformed.clear()

    def _report(self, row: uuid.UUID, logical_port: str, error: str) -> None:
        if row not in self._malformed:
            self._malformed.add(row)
            logs.event(
                log,
                "sb.port_binding_malformed",
                logging.WARNING,
                row=str(row),
                logical_port=logical_port,
                error=error,
            )

    def _notify(self, logical_port: str) -> None:
        if self.listener is not None:
            self.listener(logical_port)

    # ------------------------------------------------------------ reading
    def ready(self, logical_port: str, want: Expected) -> bool:
        """SB shows the port bound and up on `want.chassis`, with the contents the PUT
        wrote (and the replica is live)."""
        binding = self._ports.get(logical_port)
        return (
            self.connected
            and binding is not None
            and binding.up
            and binding.chassis is not None
            and want.chassis in self._chassis.get(binding.chassis, ())
            and binding.mac == want.mac
            and binding.external_ids == frozenset(want.external_ids.items())
        )


class _Idl(ovs_idl.Idl):
    """An IDL that passes every row change on to its bindings."""

    bindings: SbBindings

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        deleted = event == ovs_idl.ROW_DELETE
        table = row._table.name
        try:
            if table == CHASSIS:
                names = [] if deleted else [row.name, row.hostname]
                self.bindings.chassis_changed(deleted, row.uuid, names)
            elif table == PORT_BINDING:
                self.bindings.port_changed(
                    deleted,
                    row.uuid,
                    row.logical_port,
                    [] if deleted else row.chassis,
                    [] if deleted else row.up,
                    [] if deleted else row.mac,
                    {} if deleted else row.external_ids,
                )
        except Exception as exc:  # python-ovs gave something unreadable: skip the row
            logs.event(log, "sb.row_unreadable", logging.WARNING, table=table, error=repr(exc))


class SbMonitor(IdlThread[_Idl]):
    """Keeps `bindings` current from a read-only SB connection (its own thread)."""

    CONNECT_FAILED = "sb.connect_failed"
    RUN_FAILED = "sb.monitor_error"

    def __init__(self, remotes: Sequence[str], bindings: SbBindings) -> None:
        super().__init__("dpunet-sb", log)
        self.remotes = list(remotes)
        self.bindings = bindings

    def _make_idl(self) -> _Idl:
        helper = schema_helper(self.remotes, SB_SCHEMA, COLUMNS)
        idl = _Idl(",".join(self.remotes), helper, leader_only=False)
        idl.bindings = self.bindings
        marks = ["map", [[k, v] for k, v in sorted(POD_MARKS.items())]]
        idl.cond_change(PORT_BINDING, [["external_ids", "includes", marks]])
        return idl

    def _after_run(self, idl: _Idl) -> bool:
        self._track(idl)
        return False

    def _run_failed(self) -> None:
        self.bindings.connected = False

    def _stopped(self) -> None:
        self.bindings.connected = False

    def _track(self, idl: _Idl) -> None:
        """Follow the connection state; after a reconnection, re-read the replica (python-ovs
        drops its rows on a full resync without reporting them deleted)."""
        live = idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING
        was = self.bindings.connected
        if live and not was:
            self.bindings.clear()
            for table in (CHASSIS, PORT_BINDING):
                for row in list(idl.tables[table].rows.values()):
                    idl.notify(ovs_idl.ROW_CREATE, row)
            logs.event(log, "sb.connected", remote=idl.session_name())
        elif was and not live:
            logs.event(log, "sb.disconnected", logging.WARNING, remotes=",".join(self.remotes))
        self.bindings.connected = live
