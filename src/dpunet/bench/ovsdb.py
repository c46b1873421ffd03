"""ovsdbapp connections for the benchmarks' raw floors: OVS, OVN NB and OVN SB.

Each API gets its own connection (ovsdbapp keeps one per class otherwise). The IDL
records, as updates arrive, which interfaces have `external_ids:ovn-installed=true`,
which logical switch ports have `up=true` and which Port_Bindings have `up=true` on a
chassis, so a waiter sleeps until its own name is in (not polling the replica, nor woken
by every other row's change).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl as ovs_impl

from dpunet.ovsdb.own import NoYieldIdl, OwnConnection

TIMEOUT = 60.0
SB_TABLES = ["Chassis", "Chassis_Private", "Encap", "Port_Binding"]  # a binding's references


class MemberSets:
    """Named sets of names (e.g. the LSPs that are up) that threads can wait on: a waiter
    is woken when its own name joins its set, not by every other change."""

    def __init__(self, *sets: str) -> None:
        self._lock = threading.Lock()
        self._sets: dict[str, set[str]] = {which: set() for which in sets}
        self._waiters: dict[tuple[str, str], list[threading.Event]] = {}

    def mark(self, which: str, name: str, member: bool) -> None:
        """`name` is (or is no longer) in set `which`; wake whoever waits for it."""
        with self._lock:
            if not member:
                self._sets[which].discard(name)
                return
            self._sets[which].add(name)
            for waiter in self._waiters.pop((which, name), ()):
                waiter.set()

    def wait(self, which: str, name: str, timeout: float) -> None:
        """Until `name` is in set `which` (or has been since the call); TimeoutError after
        `timeout` seconds."""
        with self._lock:
            if name in self._sets[which]:
                return
            woken = threading.Event()
            self._waiters.setdefault((which, name), []).append(woken)
        if woken.wait(timeout):
            return
        with self._lock:
            waiting = self._waiters.get((which, name), [])
            if woken in waiting:
                waiting.remove(woken)
                if not waiting:
                    del self._waiters[(which, name)]
        if not woken.is_set():
            raise TimeoutError(f"{name} not {which} within {timeout:.0f}s")


class WatchedIdl(NoYieldIdl):
    """An IDL that keeps the member sets `installed` (Interface names), `up` (LSP names)
    and `sb_up` (logical ports of bindings up on a chassis) and lets a callback see every
    Port_Binding change (the stand-in chassis)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.members = MemberSets("installed", "up", "sb_up")
        self.on_port_binding: Callable[[str, Any], None] | None = None

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        table = row._table.name
        if table == "Port_Binding" and self.on_port_binding is not None:
            self.on_port_binding(event, row)
        live = event != ovs_idl.ROW_DELETE
        if table == "Port_Binding":
            done = live and list(row.up) == [True] and bool(row.chassis)
            self.members.mark("sb_up", row.logical_port, done)
        elif table == "Interface":
            done = live and row.external_ids.get("ovn-installed") == "true"
            self.members.mark("installed", row.name, done)
        elif table == "Logical_Switch_Port":
            self.members.mark("up", row.name, live and list(row.up) == [True])

    def wait_member(self, which: str, name: str, timeout: float = TIMEOUT) -> None:
        """Until `name` is in the set `which` ("installed", "up" or "sb_up"); TimeoutError
        after."""
        self.members.wait(which, name, timeout)


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
