"""ovsdbapp's Open_vSwitch API with one connection per instance and transactions that bump
`next_cfg` as ovs-vsctl does, so a writer can wait until ovs-vswitchd applied them; the
commands dpunet adds to ovsdbapp's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ovsdbapp.backend.ovs_idl import command, idlutils, transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from dpunet.ovsdb.own import OwnConnection


class NextCfgTransaction(transaction.Transaction):
    """A transaction that bumps `next_cfg` and records the new value (it does not wait)."""

    next_cfg: int | None = None

    def pre_commit(self, txn: Any) -> None:
        self.api._ovs.increment("next_cfg")
        txn.expected_ifaces = set()  # ovsdbapp's AddPortCommand records its interfaces here

    def post_commit(self, txn: Any) -> None:
        super().post_commit(txn)
        self.next_cfg = txn.get_increment_new_value()


class VswitchApi(OwnConnection, impl_idl.OvsdbIdl):
    """OvsdbIdl with a per-instance connection; its transactions raise on failure and
    bump `next_cfg`."""

    def create_transaction(
        self, check_error: bool = False, log_errors: bool = True, **kwargs: Any
    ) -> NextCfgTransaction:
        return NextCfgTransaction(self, self.ovsdb_connection, check_error=True, log_errors=False)

    def transact(self, commands: Sequence[Any]) -> int | None:
        """Commit `commands` in one transaction; the new `next_cfg` (None when there is
        nothing to do). Raises when the transaction fails."""
        if not commands:
            return None
        txn = self.create_transaction()
        for cmd in commands:
            txn.add(cmd)
        txn.commit()
        return txn.next_cfg


@dataclass(frozen=True)
class IdsChange:
    """Keys to set and keys to remove in one interface's `external_ids`."""

    name: str
    set: Mapping[str, str]
    remove: tuple[str, ...] = ()


class SetIds(command.BaseCommand):
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
