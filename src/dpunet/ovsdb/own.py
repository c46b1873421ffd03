"""The mixin that gives an ovsdbapp API a connection per instance (ovsdbapp keeps one per
class, so two instances of one class would share the first one's connection). Apart from
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
