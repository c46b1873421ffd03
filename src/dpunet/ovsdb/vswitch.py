"""ovsdbapp's Open_vSwitch API with one connection per instance and transactions that bump
`next_cfg` as ovs-vsctl does, so a writer can wait until ovs-vswitchd applied them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ovsdbapp.backend.ovs_idl import connection, transaction
from ovsdbapp.schema.open_vswitch import impl_idl


class NextCfgTransaction(transaction.Transaction):
    """A transaction that bumps `next_cfg` and records the new value (it does not wait)."""

    next_cfg: int | None = None

    def pre_commit(self, txn: Any) -> None:
        self.api._ovs.increment("next_cfg")
        txn.expected_ifaces = set()  # ovsdbapp's AddPortCommand records its interfaces here

    def post_commit(self, txn: Any) -> None:
        super().post_commit(txn)
        self.next_cfg = txn.get_increment_new_value()


class VswitchApi(impl_idl.OvsdbIdl):
    """OvsdbIdl with a per-instance connection (ovsdbapp keeps one per class); its
    transactions raise on failure and bump `next_cfg`."""

    @property
    def ovsdb_connection(self) -> connection.Connection:
        return self._own_connection

    @ovsdb_connection.setter
    def ovsdb_connection(self, conn: connection.Connection) -> None:
        self._own_connection = conn

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
