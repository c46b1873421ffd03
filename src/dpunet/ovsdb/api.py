"""The OVN NB and SB ovsdbapp APIs with a connection per instance (`own.OwnConnection`)."""

from __future__ import annotations

from ovsdbapp.schema.ovn_northbound import impl_idl as nb_impl
from ovsdbapp.schema.ovn_southbound import impl_idl as sb_impl

from dpunet.ovsdb.own import OwnConnection


class NbApi(OwnConnection, nb_impl.OvnNbApiIdlImpl):
    """The OVN Northbound API on its own connection."""


class SbApi(OwnConnection, sb_impl.OvnSbApiIdlImpl):
    """The OVN Southbound API on its own connection."""
