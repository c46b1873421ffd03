"""ovsdbapp APIs whose connection belongs to the instance (ovsdbapp keeps one per class,
so two instances of one class would share the first one's connection)."""

from __future__ import annotations

from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.ovn_northbound import impl_idl as nb_impl
from ovsdbapp.schema.ovn_southbound import impl_idl as sb_impl


class OwnConnection:
    """Mixin, listed before the ovsdbapp API class: a connection per instance."""

    _own_connection: connection.Connection

    @property
    def ovsdb_connection(self) -> connection.Connection:
        return self._own_connection

    @ovsdb_connection.setter
    def ovsdb_connection(self, conn: connection.Connection) -> None:
        self._own_connection = conn


class NbApi(OwnConnection, nb_impl.OvnNbApiIdlImpl):
    """The OVN Northbound API on its own connection."""


class SbApi(OwnConnection, sb_impl.OvnSbApiIdlImpl):
    """The OVN Southbound API on its own connection."""
