"""ovsdbapp connections for the benchmarks' raw floors: OVS, OVN NB and OVN SB.

Each API gets its own connection (ovsdbapp keeps one per class otherwise). The IDL
records, as updates arrive, which interfaces have `external_ids:ovn-installed=true`,
which logical switch ports have `up=true` and which Port_Bindings have `up=true` on a
chassis, so a waiter sleeps on a condition instead of polling the replica.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl as ovs_impl

from dpunet.ovsdb.own import OwnConnection

TIMEOUT = 60.0
SB_TABLES = ["Chassis", "Chassis_Private", "Encap", "Port_Binding"]  # a binding's references


class WatchedIdl(connection.OvsdbIdl):
    """An IDL that keeps the sets `installed` (Interface names), `up` (LSP names) and
    `sb_up` (logical ports of bindings up on a chassis) and lets a callback see every
    Port_Binding change (the stand-in chassis)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed = threading.Condition()
        self.installed: set[str] = set()
        self.up: set[str] = set()
        self.sb_up: set[str] = set()
        self.on_port_binding: Callable[[str, Any], None] | None = None

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        table = row._table.name
        if table == "Port_Binding" and self.on_port_binding is not None:
            self.on_port_binding(event, row)
        if table not in ("Interface", "Logical_Switch_Port", "Port_Binding"):
            return
        with self.changed:
            if table == "Port_Binding":
                done = event != ovs_idl.ROW_DELETE and list(row.up) == [True] and bool(row.chassis)
                (self.sb_up.add if done else self.sb_up.discard)(row.logical_port)
            elif table == "Interface":
                done = (
                    event != ovs_idl.ROW_DELETE and row.external_ids.get("ovn-installed") == "true"
                )
                (self.installed.add if done else self.installed.discard)(row.name)
            else:
                done = event != ovs_idl.ROW_DELETE and list(row.up) == [True]
                (self.up.add if done else self.up.discard)(row.name)
            self.changed.notify_all()

    def wait_member(self, which: str, name: str, timeout: float = TIMEOUT) -> None:
        """Until `name` is in the set `which` ("installed", "up" or "sb_up"); TimeoutError
        after."""
        members: set[str] = getattr(self, which)
        with self.changed:
            if not self.changed.wait_for(lambda: name in members, timeout):
                raise TimeoutError(f"{name} not {which} within {timeout:.0f}s")


class OvsApi(OwnConnection, ovs_impl.OvsdbIdl):
    """The Open_vSwitch API on its own connection (transactions as ovsdbapp makes them)."""


@contextmanager
def open_api(
    remote: str, schema: str, api_class: type, tables: list[str] | None = None
) -> Iterator[tuple[Any, WatchedIdl]]:
    """(api, idl) connected to `remote` for `schema`; closed on exit."""
    helper = idlutils.get_schema_helper(remote, schema)
    if tables:
        for table in tables:
            helper.register_table(table)
    else:
        helper.register_all()
    idl = WatchedIdl(remote, helper)
    conn = connection.Connection(idl, TIMEOUT)
    api = api_class(conn)
    try:
        yield api, idl
    finally:
        conn.stop()
