"""The local Open_vSwitch database as the agent sees it: ports, their interface
`external_ids`, and the transactions that plug and unplug representors (ovsdbapp).

A port is *owned* by dpunet when its interface has `external_ids:dpunet-owned=true`;
the agent changes and removes owned ports only. Only the columns the agent reads are
replicated, so interface statistics do not wake it up; `on_change` is called (from the
ovsdbapp thread) for every replicated change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import command, connection, idlutils

from dpunet.ovsdb.remote import OvsdbUnavailable
from dpunet.ovsdb.vswitch import VswitchApi

OWNED_KEY = "dpunet-owned"
OWNED_VALUE = "true"
IFACE_ID = "iface-id"
IFACE_ID_VER = "iface-id-ver"
ATTACHED_MAC = "attached-mac"
MANAGED_KEYS = (IFACE_ID, IFACE_ID_VER, ATTACHED_MAC, OWNED_KEY)
"""The interface `external_ids` keys the agent writes; it leaves every other key alone."""

COLUMNS = {
    "Open_vSwitch": ["external_ids", "next_cfg", "cur_cfg", "bridges"],
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "external_ids", "ofport", "error", "mac", "mtu_request"],
}


@dataclass(frozen=True)
class OvsPort:
    """One port (its first interface's view) on some bridge."""

    name: str
    bridge: str
    external_ids: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None
    error: str | None = None

    @property
    def owned(self) -> bool:
        """The port carries dpunet's ownership marker."""
        return self.external_ids.get(OWNED_KEY) == OWNED_VALUE


@dataclass(frozen=True)
class OvsState:
    """The replicated part of the Open_vSwitch database at one instant."""

    synced: bool
    external_ids: Mapping[str, str] = field(default_factory=dict)
    bridges: frozenset[str] = frozenset()
    ports: tuple[OvsPort, ...] = ()


@dataclass(frozen=True)
class IdsChange:
    """Keys to set and keys to remove in one interface's `external_ids`."""

    name: str
    set: Mapping[str, str]
    remove: tuple[str, ...] = ()


class _Idl(connection.OvsdbIdl):
    """An IDL that tells its owner about every change it replicates and publishes
    ovs-vswitchd's `cur_cfg` for `LocalOvs.wait_applied`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_change: Callable[[], None] | None = None
        self.cur_cfg = -1
        self.applied = threading.Condition()

    def notify(self, event: Any, row: Any, updates: Any = None) -> None:
        if row._table.name == "Open_vSwitch" and event != ovs_idl.ROW_DELETE:
            with self.applied:
                self.cur_cfg = int(row.cur_cfg)
                self.applied.notify_all()
        if self.on_change is not None:
            self.on_change()


class _SetIds(command.BaseCommand):
    """Set and remove keys of one interface's `external_ids` (mutations: other writers'
    keys, e.g. ovn-controller's `ovn-installed`, are untouched)."""

    def __init__(self, api: Any, change: IdsChange) -> None:
        super().__init__(api)
        self.change = change

    def run_idl(self, txn: Any) -> None:
        row = idlutils.row_by_value(self.api.idl, "Interface", "name", self.change.name)
        for key, value in self.change.set.items():
            row.setkey("external_ids", key, value)
        for key in self.change.remove:
            row.delkey("external_ids", key)


class LocalOvs:
    """A connection to the local Open_vSwitch database."""

    def __init__(
        self, remote: str, on_change: Callable[[], None] | None = None, timeout: float = 10.0
    ) -> None:
        self.remote = remote
        self.timeout = timeout
        self._on_change = on_change
        self._conn: connection.Connection | None = None
        self._api: Any = None

    def start(self) -> None:
        """Connect and wait for the first replica; OvsdbUnavailable when that fails."""
        try:
            helper = idlutils.get_schema_helper(self.remote, "Open_vSwitch")
            for table, columns in COLUMNS.items():
                helper.register_columns(table, columns)
            idl = _Idl(self.remote, helper)
            idl.on_change = self._on_change
            conn = connection.Connection(idl, self.timeout)
            self._api = VswitchApi(conn)
            self._conn = conn
        except Exception as exc:
            raise OvsdbUnavailable(f"cannot open the OVS database at {self.remote}: {exc}") from exc

    def stop(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.stop(timeout=5)

    def state(self) -> OvsState:
        """Ports of every bridge, with their first interface's ids, ofport and error."""
        assert self._conn is not None, "start() first"
        with self._conn.lock:
            idl = self._conn.idl
            tables = idl.tables
            ovs_rows = list(tables["Open_vSwitch"].rows.values())
            ports = []
            bridges = set()
            for bridge in tables["Bridge"].rows.values():
                bridges.add(bridge.name)
                for port in bridge.ports:
                    ifaces = list(port.interfaces)
                    iface = next((i for i in ifaces if i.name == port.name), None) or (
                        ifaces[0] if ifaces else None
                    )
                    ports.append(
                        OvsPort(
                            name=port.name,
                            bridge=bridge.name,
                            external_ids=dict(iface.external_ids) if iface else {},
                            ofport=(iface.ofport[0] if iface and iface.ofport else None),
                            error=(iface.error[0] if iface and iface.error else None),
                        )
                    )
            return OvsState(
                synced=idl._session.is_connected()
                and idl.state == ovs_idl.Idl.IDL_S_MONITORING
                and bool(ovs_rows),
                external_ids=dict(ovs_rows[0].external_ids) if ovs_rows else {},
                bridges=frozenset(bridges),
                ports=tuple(sorted(ports, key=lambda p: (p.bridge, p.name))),
            )

    def apply(
        self,
        bridge: str,
        remove: Iterable[str] = (),
        add: Mapping[str, Mapping[str, str]] | None = None,
        update: Sequence[IdsChange] = (),
        columns: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> int | None:
        """One transaction: delete ports `remove`, add ports `add` (name -> interface
        external_ids; `columns`: other Interface columns of an added port, e.g. `type`,
        `mac`, `mtu_request`) to `bridge`, change interface ids; the new `next_cfg` (None
        when there was nothing to do). Raises on a failed transaction."""
        api = self._api
        commands: list[Any] = [api.del_port(name, if_exists=True) for name in remove]
        for name, ids in (add or {}).items():
            extra = dict((columns or {}).get(name, {}))
            commands.append(
                api.add_port(bridge, name, may_exist=False, external_ids=dict(ids), **extra)
            )
        commands += [_SetIds(api, change) for change in update]
        return api.transact(commands)

    def wait_applied(self, next_cfg: int, timeout: float) -> bool:
        """Wait until ovs-vswitchd applied `next_cfg` (`cur_cfg`); False after `timeout`."""
        assert self._conn is not None
        idl = self._conn.idl
        with idl.applied:
            return bool(idl.applied.wait_for(lambda: idl.cur_cfg >= next_cfg, timeout))
