"""Every ovsdbapp IDL of dpunet's processes an update without handing the GIL away per
row (ovsdbapp's `cooperative_yield` sleeps for eventlet, holding the connection lock)."""

from __future__ import annotations

import time

import pytest
from ovsdbapp.backend.ovs_idl import connection

from dpunet.bench.ovsdb import WatchedIdl
from dpunet.controller import nb
from dpunet.ovsdb import local
from dpunet.ovsdb.own import NoYieldIdl


@pytest.mark.parametrize("idl_class", [nb._Idl, local._Idl, WatchedIdl])
def test_dpunets_idls_do_not_yield_per_row(idl_class: type) -> None:
    assert issubclass(idl_class, NoYieldIdl)


def test_a_no_yield_idl_does_not_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    idl = NoYieldIdl.__new__(NoYieldIdl)  # (the method needs no connection)
    idl.cooperative_yield()
    assert slept == []
    connection.OvsdbIdl.cooperative_yield(idl)  # what it replaces
    assert slept == [0]
