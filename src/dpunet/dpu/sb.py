"""A read-only, conditional monitor of the OVN Southbound database (python-ovs IDL).

Only the rows this DPU can care about are replicated:
- `Chassis` rows named like this chassis (to learn its uuid);
- `Port_Binding` rows whose `options:requested-chassis` is one of this chassis' names,
  or whose `requested_chassis` reference is this chassis (northd resolves the option into
  that column once the Chassis row exists), or whose `logical_port` is one asked for
  explicitly (the management port's `k8s-<node>`).

The IDL runs in its own thread and calls `on_change` (from that thread) whenever the
replica changed or the monitor (re)synchronised. `snapshot()` is only `synced` after the
server answered the monitor request for the current conditions; an agent must not remove
anything on the strength of an unsynced snapshot (at start the replica is empty).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovs.db import idl as ovs_idl

from dpunet.contract.lsp import REQUESTED_CHASSIS
from dpunet.logs import event
from dpunet.ovsdb.monitor import IdlThread
from dpunet.ovsdb.rpc import SB_SCHEMA, schema_helper, set_ssl
from dpunet.tls import TlsFiles

PORT_BINDING_COLUMNS = [
    "logical_port",
    "type",
    "options",
    "mac",
    "requested_chassis",
    "external_ids",
]
CHASSIS_COLUMNS = ["name", "hostname"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortBindingRow:
    """The columns of one SB Port_Binding the agent reads."""

    logical_port: str
    type: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    mac: tuple[str, ...] = ()
    requested_chassis: str | None = None
    external_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SbSnapshot:
    """The replica at one instant."""

    synced: bool
    chassis_uuid: str | None
    bindings: tuple[PortBindingRow, ...] = ()


def port_binding_condition(
    chassis_names: Sequence[str], chassis_uuid: str | None, lports: Sequence[str]
) -> list[Any]:
    """The OVSDB `where` clauses (ORed) that select this chassis' Port_Binding rows."""
    clauses: list[Any] = [
        ["options", "includes", ["map", [[REQUESTED_CHASSIS, name]]]]
        for name in sorted(chassis_names)
    ]
    if chassis_uuid:
        clauses.append(["requested_chassis", "==", ["uuid", chassis_uuid]])
    clauses += [["logical_port", "==", lport] for lport in sorted(lports)]
    return clauses


def _uuid_of(value: Any) -> str | None:
    """The uuid of an optional reference as python-ovs returns it (list of rows/UUIDs)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if item is None:
            continue
        return str(getattr(item, "uuid", item))
    return None


class SbMonitor(IdlThread[ovs_idl.Idl]):
    """Keeps a conditional replica of this chassis' Port_Bindings up to date."""

    CONNECT_FAILED = "sb-connect-failed"
    RUN_FAILED = "sb-monitor-error"

    def __init__(
        self,
        remotes: Sequence[str],
        chassis: str,
        chassis_names: Sequence[str],
        on_change: Callable[[], None],
        lports: Sequence[str] = (),
        ssl: TlsFiles | None = None,
    ) -> None:
        super().__init__("sb-monitor", log)
        self.remotes = list(remotes)
        self.chassis = chassis
        self.chassis_names = sorted(set(chassis_names) | {chassis})
        self.lports = list(lports)
        self.on_change = on_change
        self.ssl = ssl
        self.resyncs = 0
        self._synced = False
        self._seqno = -1
        self._chassis_uuid: str | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the monitor thread (connects and reconnects by itself)."""
        if self.ssl is not None:
            set_ssl(self.ssl.private_key, self.ssl.certificate, self.ssl.ca_cert)
        super().start()

    @property
    def synced(self) -> bool:
        """The replica is complete for the current conditions."""
        return self._synced

    # ------------------------------------------------------------- reading
    def snapshot(self) -> SbSnapshot:
        """The current replica (`synced=False` before the first full answer)."""
        with self._lock:
            if self._idl is None:
                return SbSnapshot(synced=False, chassis_uuid=None)
            rows = []
            for row in self._idl.tables["Port_Binding"].rows.values():
                rows.append(
                    PortBindingRow(
                        logical_port=row.logical_port,
                        type=row.type,
                        options=dict(row.options),
                        mac=tuple(row.mac),
                        requested_chassis=_uuid_of(row.requested_chassis),
                        external_ids=dict(row.external_ids),
                    )
                )
            return SbSnapshot(
                synced=self._synced,
                chassis_uuid=self._chassis_uuid,
                bindings=tuple(sorted(rows, key=lambda r: r.logical_port)),
            )

    # -------------------------------------------------------------- thread
    def _make_idl(self) -> ovs_idl.Idl:
        helper = schema_helper(
            self.remotes,
            SB_SCHEMA,
            {"Port_Binding": PORT_BINDING_COLUMNS, "Chassis": CHASSIS_COLUMNS},
        )
        idl = ovs_idl.Idl(",".join(self.remotes), helper, leader_only=False)
        idl.cond_change("Chassis", [["name", "==", self.chassis]])
        idl.cond_change(
            "Port_Binding", port_binding_condition(self.chassis_names, None, self.lports)
        )
        return idl

    def _changed(self) -> None:
        self.on_change()

    def _after_run(self, idl: ovs_idl.Idl) -> bool:
        """Follow the chassis uuid into the condition; track sync; True to notify."""
        ours = [r for r in idl.tables["Chassis"].rows.values() if r.name == self.chassis]
        chassis_uuid = str(ours[0].uuid) if ours else None
        if chassis_uuid != self._chassis_uuid and idl.state == idl.IDL_S_MONITORING:
            self._chassis_uuid = chassis_uuid
            idl.cond_change(
                "Port_Binding",
                port_binding_condition(self.chassis_names, chassis_uuid, self.lports),
            )
            event(log, "sb-chassis", chassis=self.chassis, uuid=chassis_uuid or "-")
        pending = any(
            t.condition_state.new is not None or t.condition_state.requested is not None
            for t in idl.tables.values()
        )
        # python-ovs keeps `state` at MONITORING while the session is down
        connected = idl._session.is_connected()
        synced = connected and idl.state == idl.IDL_S_MONITORING and not pending
        changed = idl.change_seqno != self._seqno
        self._seqno = idl.change_seqno
        if synced != self._synced:
            self._synced = synced
            if synced:
                self.resyncs += 1
                event(log, "sb-synced", remote=idl.session_name(), resyncs=self.resyncs)
            elif not connected or idl.state != idl.IDL_S_MONITORING:
                event(log, "sb-disconnected", logging.WARNING, remotes=self.remotes)
            return True
        return changed
