"""A small ovsdbapp connection to the local Open_vSwitch database.

`connect()` checks that the database answers before ovsdbapp starts its IDL thread, so an
unreachable socket is a `OvsdbUnavailable` error with the remote in it rather than a
library traceback. Transactions increment `next_cfg` like `ovs-vsctl` does, and
`OvsDb.wait_applied()` waits (bounded) until ovs-vswitchd has caught up with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command, connection, idlutils

from dpunet.ovsdb.remote import OvsdbUnavailable, probe, validate_remote
from dpunet.ovsdb.vswitch import VswitchApi
from dpunet.setup.plan import SetupError


@dataclass(frozen=True)
class BridgeRow:
    """What the setup needs to know about one Bridge row."""

    name: str
    datapath_type: str
    other_config: Mapping[str, str]
    ports: tuple[str, ...]


@dataclass(frozen=True)
class OvsSnapshot:
    """The parts of the Open_vSwitch database the setup commands read."""

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


class SetMapKeys(command.BaseCommand):
    """Set keys of a map column of one row, leaving its other keys alone."""

    def __init__(self, api: Any, table: str, record: str, column: str, values: Mapping[str, str]):
        super().__init__(api)
        self.table, self.record, self.column, self.values = table, record, column, dict(values)

    def run_idl(self, txn: Any) -> None:
        row = self.api.lookup(self.table, self.record)
        for key, value in self.values.items():
            row.setkey(self.column, key, value)


class EnsureBridge(command.BaseCommand):
    """Create bridge `name` (with its internal port) when missing; set its datapath type
    and `other_config:hwaddr` when given."""

    def __init__(self, api: Any, name: str, datapath_type: str | None, hwaddr: str | None):
        super().__init__(api)
        self.name, self.datapath_type, self.hwaddr = name, datapath_type, hwaddr

    def run_idl(self, txn: Any) -> None:
        bridge = idlutils.row_by_value(self.api.idl, "Bridge", "name", self.name, None)
        if bridge is None:
            iface = txn.insert(self.api._tables["Interface"])
            iface.name = self.name
            iface.type = "internal"
            port = txn.insert(self.api._tables["Port"])
            port.name = self.name
            port.interfaces = [iface]
            bridge = txn.insert(self.api._tables["Bridge"])
            bridge.name = self.name
            bridge.ports = [port]
            self.api._ovs.addvalue("bridges", bridge)
        if self.datapath_type is not None:
            bridge.datapath_type = self.datapath_type
        if self.hwaddr is not None:
            bridge.setkey("other_config", "hwaddr", self.hwaddr)


class OvsDb:
    """An open connection to one Open_vSwitch database."""

    def __init__(self, remote: str, api: Any) -> None:
        self.remote = remote
        self.api = api

    def snapshot(self) -> OvsSnapshot:
        """Read the current configuration."""
        with self.api.ovsdb_connection.lock:
            tables = self.api.tables
            ovs_rows = list(tables["Open_vSwitch"].rows.values())
            if not ovs_rows:
                raise SetupError(
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

    def transact(self, commands: Sequence[Any]) -> int | None:
        """Commit `commands` in one transaction; the new `next_cfg` (None if nothing to do)."""
        try:
            return self.api.transact(commands)
        except Exception as exc:
            raise SetupError(f"OVS database transaction failed: {exc}") from exc

    def cur_cfg(self) -> int:
        """ovs-vswitchd's `cur_cfg`: the last `next_cfg` it has applied."""
        with self.api.ovsdb_connection.lock:
            return int(next(iter(self.api.tables["Open_vSwitch"].rows.values())).cur_cfg)

    def wait_applied(self, next_cfg: int, timeout: float) -> None:
        """Wait until ovs-vswitchd has applied `next_cfg`; SetupError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.cur_cfg() < next_cfg:
            if time.monotonic() > deadline:
                raise SetupError(
                    f"ovs-vswitchd did not apply the new configuration within {timeout:.0f}s "
                    "(is it running and connected to this database?)"
                )
            time.sleep(0.05)

    def interfaces(self, names: Sequence[str]) -> list[InterfaceStatus]:
        """ofport/error of the Interface rows called `names` (missing rows are left out)."""
        out = []
        with self.api.ovsdb_connection.lock:
            for row in self.api.tables["Interface"].rows.values():
                if row.name in names:
                    ofport = row.ofport[0] if row.ofport else None
                    error = row.error[0] if row.error else None
                    out.append(InterfaceStatus(row.name, ofport, error))
        return out


@contextmanager
def connect(remote: str, timeout: float = 10.0) -> Iterator[OvsDb]:
    """An open `OvsDb` on `remote` (`unix:PATH` or `tcp:IP:PORT`), closed on exit."""
    validate_remote(remote)
    probe(remote, timeout)
    try:
        idl = connection.OvsdbIdl.from_server(remote, "Open_vSwitch")
        conn = connection.Connection(idl, timeout)
        api = VswitchApi(conn)
    except Exception as exc:
        raise OvsdbUnavailable(f"cannot open the OVS database at {remote}: {exc}") from exc
    try:
        yield OvsDb(remote, api)
    finally:
        conn.stop()
