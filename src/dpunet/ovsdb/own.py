"""What every ovsdbapp connection of dpunet's is made of: the mixin that gives an API a
connection per instance (ovsdbapp keeps one per class, so two instances of one class would
share the first one's connection), and the IDL that does not yield per row. Apart from
`api` so that the Open_vSwitch API does not load the OVN schemas' modules (and netaddr)."""

from __future__ import annotations

from ovsdbapp.backend.ovs_idl import connection


class OwnConnection:
    """Mixin, listed before the ovsdbapp API class: a connection per instance."""

    _own_connection: connection.Connection

    @property
    def ovsdb_connection(self) -> connection.Connection:
        return self._own_connection

    @ovsdb_connection.setter
    def ovsdb_connection(self, conn: connection.Connection) -> None:
        self._own_connection = conn


class NoYieldIdl(connection.OvsdbIdl):
    """ovsdbapp's IDL without its `time.sleep(0)` for every row of an update (there for
    eventlet): it runs holding the connection lock that every read and transaction waits
    for, and hands the GIL away each time (each handoff can cost the interpreter's 5 ms
    switch interval); python-ovs' own IDL does not yield either."""

    def cooperative_yield(self) -> None:
        """Nothing (see the class docstring)."""
