"""The local Open_vSwitch database: one connection API for every component (the DPU and
node agents, the setup commands, verify).

`LocalOvs` replicates either the columns `STATE_COLUMNS` (what the agents read, so
interface statistics do not wake them; `on_change` is called from the ovsdbapp thread for
every replicated change) or the whole database (`columns=None`: setup, verify). Before
opening, it checks that the database answers, so an unreachable socket is an
`OvsdbUnavailable` with the remote in it rather than a library traceback. Transactions
increment `next_cfg` like `ovs-vsctl` does; `wait_applied` waits until ovs-vswitchd has
caught up with it (its `cur_cfg`, published by the IDL thread).

A port is *owned* by dpunet when its interface has `external_ids:dpunet-owned=true`;
the agents change and remove owned ports only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection, idlutils

from dpunet.ovsdb.own import NoYieldIdl
from dpunet.ovsdb.remote import OvsdbError, OvsdbUnavailable, probe, validate_remote
from dpunet.ovsdb.vswitch import IdsChange, SetIds, VswitchApi

SCHEMA = "Open_vSwitch"
OWNED_KEY = "dpunet-owned"
OWNED_VALUE = "true"
IFACE_ID = "iface-id"
IFACE_ID_VER = "iface-id-ver"
ATTACHED_MAC = "attached-mac"
MANAGED_KEYS = (IFACE_ID, IFACE_ID_VER, ATTACHED_MAC, OWNED_KEY)
"""The interface `external_ids` keys the agents write; they leave every other key alone."""

STATE_COLUMNS: Mapping[str, Sequence[str]] = {
    "Open_vSwitch": ["external_ids", "next_cfg", "cur_cfg", "bridges"],
    "Bridge": ["name", "ports"],
    "Port": ["name", "interfaces"],
    "Interface": [
        "name",
        "type",
        "external_ids",
        "ofport",
        "error",
        "mac",
        "mac_in_use",
        "mtu_request",
    ],
}
"""What `state()` and `apply()` need."""


@dataclass(frozen=True)
class OvsPort:
    """One port (its first interface's view) on some bridge."""

    name: str
    bridge: str
    external_ids: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None
    error: str | None = None
    type: str = ""
    mac_in_use: str | None = None

    @property
    def owned(self) -> bool:
        """The port carries dpunet's ownership marker."""
        return self.external_ids.get(OWNED_KEY) == OWNED_VALUE


@dataclass(frozen=True)
class OvsState:
    """The agents' view of the database at one instant."""

    synced: bool
    external_ids: Mapping[str, str] = field(default_factory=dict)
    bridges: frozenset[str] = frozenset()
    ports: tuple[OvsPort, ...] = ()


@dataclass(frozen=True)
class BridgeRow:
    """What the setup needs to know about one Bridge row."""

    name: str
    datapath_type: str
    other_config: Mapping[str, str]
    ports: tuple[str, ...]


@dataclass(frozen=True)
class OvsSnapshot:
    """The global configuration and the bridges, as the setup commands read them."""

    other_config: Mapping[str, str] = field(default_factory=dict)
    external_ids: Mapping[str, str] = field(default_factory=dict)
    bridges: Mapping[str, BridgeRow] = field(default_factory=dict)

    def bridge_of_port(self, port: str) -> str | None:
        """The bridge holding port `port`, or None."""
        for bridge in self.bridges.values():
            if port in bridge.ports:
                return bridge.name
        return None


@dataclass(frozen=True)
class InterfaceStatus:
    """ofport and error of one Interface row, as ovs-vswitchd reported them."""

    name: str
    ofport: int | None
    error: str | None


class _Idl(NoYieldIdl):
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


def _first(value: Any) -> Any:
    """The value of an optional column (python-ovs gives a list of zero or one)."""
    return value[0] if value else None


class LocalOvs:
    """A connection to the local Open_vSwitch database (see the module docstring)."""

    def __init__(
        self,
        remote: str,
        on_change: Callable[[], None] | None = None,
        timeout: float = 10.0,
        columns: Mapping[str, Sequence[str]] | None = STATE_COLUMNS,
    ) -> None:
        self.remote = remote
        self.timeout = timeout
        self.columns = columns
        self._on_change = on_change
        self._conn: connection.Connection | None = None
        self.api: Any = None

    def start(self) -> None:
        """Connect and replicate; OvsdbUnavailable when the database cannot be opened."""
        validate_remote(self.remote)
        probe(self.remote, self.timeout)
        try:
            helper = idlutils.get_schema_helper(self.remote, SCHEMA)
            if self.columns is None:
                helper.register_all()
            for table, columns in (self.columns or {}).items():
                helper.register_columns(table, list(columns))
            idl = _Idl(self.remote, helper)
            idl.on_change = self._on_change
            conn = connection.Connection(idl, self.timeout)
            self.api = VswitchApi(conn)
            self._conn = conn
        except Exception as exc:
            raise OvsdbUnavailable(f"cannot open the OVS database at {self.remote}: {exc}") from exc

    def stop(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.stop(timeout=5)

    @contextmanager
    def tables(self) -> Iterator[Mapping[str, Any]]:
        """The replicated tables (python-ovs rows), held still while in the block."""
        assert self._conn is not None, "start() first"
        with self._conn.lock:
            yield self._conn.idl.tables

    # ------------------------------------------------------------ reading
    def state(self) -> OvsState:
        """Ports of every bridge, with their first interface's ids, ofport and error."""
        assert self._conn is not None, "start() first"
        idl = self._conn.idl
        with self.tables() as tables:
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
                            ofport=_first(iface.ofport) if iface else None,
                            error=_first(iface.error) if iface else None,
                            type=iface.type if iface else "",
                            mac_in_use=_first(iface.mac_in_use) if iface else None,
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

    def snapshot(self) -> OvsSnapshot:
        """The global configuration and the bridges (needs `columns=None`)."""
        with self.tables() as tables:
            ovs_rows = list(tables["Open_vSwitch"].rows.values())
            if not ovs_rows:
                raise OvsdbError(
                    f"the OVS database at {self.remote} has no Open_vSwitch row "
                    "(run `ovs-vsctl --no-wait init` once)"
                )
            ovs = ovs_rows[0]
            bridges = {
                row.name: BridgeRow(
                    name=row.name,
                    datapath_type=row.datapath_type,
                    other_config=dict(row.other_config),
                    ports=tuple(sorted(port.name for port in row.ports)),
                )
                for row in tables["Bridge"].rows.values()
            }
            return OvsSnapshot(
                other_config=dict(ovs.other_config),
                external_ids=dict(ovs.external_ids),
                bridges=bridges,
            )

    def interfaces(self, names: Sequence[str]) -> list[InterfaceStatus]:
        """ofport/error of the Interface rows called `names` (missing rows are left out)."""
        with self.tables() as tables:
            return [
                InterfaceStatus(row.name, _first(row.ofport), _first(row.error))
                for row in tables["Interface"].rows.values()
                if row.name in names
            ]

    # ------------------------------------------------------------ writing
    def transact(self, commands: Sequence[Any]) -> int | None:
        """Commit `commands` (built on `api`) in one transaction; the new `next_cfg` (None
        when there is nothing to do). OvsdbError when the transaction fails."""
        try:
            next_cfg: int | None = self.api.transact(commands)
        except Exception as exc:  # ovsdbapp raises many kinds
            raise OvsdbError(f"OVS database transaction failed: {exc}") from exc
        return next_cfg

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
        when there was nothing to do). OvsdbError when the transaction fails."""
        api = self.api
        commands: list[Any] = [api.del_port(name, if_exists=True) for name in remove]
        for name, ids in (add or {}).items():
            extra = dict((columns or {}).get(name, {}))
            commands.append(
                api.add_port(bridge, name, may_exist=False, external_ids=dict(ids), **extra)
            )
        commands += [SetIds(api, change) for change in update]
        return self.transact(commands)

    def wait_applied(self, next_cfg: int, timeout: float) -> bool:
        """Wait until ovs-vswitchd applied `next_cfg` (`cur_cfg`); False after `timeout`."""
        assert self._conn is not None, "start() first"
        idl = self._conn.idl
        with idl.applied:
            return bool(idl.applied.wait_for(lambda: idl.cur_cfg >= next_cfg, timeout))


@contextmanager
def connect(remote: str, timeout: float = 10.0) -> Iterator[LocalOvs]:
    """The whole database at `remote` (`unix:PATH` or `tcp:IP:PORT`), closed on exit."""
    ovs = LocalOvs(remote, timeout=timeout, columns=None)
    ovs.start()
    try:
        yield ovs
    finally:
        ovs.stop()
