"""What the OVN Southbound database expects of one chassis, read with one OVSDB `transact`
of `select` operations (no replica is kept: verify and topology look once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dpunet.contract.lsp import REQUESTED_CHASSIS, representor_wanted
from dpunet.ovsdb.atoms import ovsdb_map
from dpunet.ovsdb.rpc import SB_SCHEMA, request


class SbError(Exception):
    """The Southbound database could not be read."""


@dataclass(frozen=True)
class SbPort:
    """A Port_Binding requested on the chassis."""

    logical_port: str
    options: Mapping[str, str] = field(default_factory=dict)
    bound: bool = False  # `chassis` is set
    up: bool | None = None

    @property
    def representor(self) -> bool:
        """A VF representor is to be plugged for it (dpunet's or OVN's plug options)."""
        return representor_wanted(self.options)


@dataclass(frozen=True, order=True)
class RemoteChassis:
    """Another chassis and its tunnel endpoint."""

    name: str
    encap_type: str
    ip: str


@dataclass(frozen=True)
class SbView:
    """Port_Bindings requested on one chassis, every other chassis' encaps, and the
    gateway router ports on the chassis (`rtoe-GR_<node>`: its `mac` entries)."""

    chassis: str
    ports: tuple[SbPort, ...] = ()
    remote_chassis: tuple[RemoteChassis, ...] = ()
    gateway_ports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _has_ref(value: Any) -> bool:
    """An optional reference column is set (`["uuid", ...]` rather than `["set", []]`)."""
    return isinstance(value, list) and bool(value) and value[0] == "uuid"


def _optional_bool(value: Any) -> bool | None:
    """An optional boolean column (`true`, `false` or `["set", []]`)."""
    return value if isinstance(value, bool) else None


def parse_sb(chassis: str, results: list[Any]) -> SbView:
    """The answers of the selects made by `read_sb`."""
    chassis_rows, encap_rows, port_rows = (r.get("rows", []) for r in results[:3])
    gateway_rows = results[3].get("rows", []) if len(results) > 3 else []
    ports = tuple(
        sorted(
            (
                SbPort(
                    logical_port=row["logical_port"],
                    options=ovsdb_map(row.get("options")),
                    bound=_has_ref(row.get("chassis")),
                    up=_optional_bool(row.get("up")),
                )
                for row in port_rows
            ),
            key=lambda p: p.logical_port,
        )
    )
    names = {row["name"] for row in chassis_rows}
    remotes = tuple(
        sorted(
            RemoteChassis(row["chassis_name"], row["type"], row["ip"])
            for row in encap_rows
            if row.get("chassis_name") != chassis and row.get("chassis_name") in names
        )
    )
    gateways = {row["logical_port"]: _string_set(row.get("mac")) for row in gateway_rows}
    return SbView(chassis, ports, remotes, gateways)


def _string_set(value: Any) -> tuple[str, ...]:
    """An OVSDB set of strings (`"a"` or `["set", ["a", ...]]`)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return tuple(str(v) for v in value[1])
    return ()


def read_sb(remote: str, chassis: str, timeout: float = 10.0) -> SbView:
    """Port_Bindings requested on `chassis` and the other chassis' tunnel endpoints."""
    params: list[Any] = [
        SB_SCHEMA,
        {"op": "select", "table": "Chassis", "where": [], "columns": ["name"]},
        {
            "op": "select",
            "table": "Encap",
            "where": [],
            "columns": ["chassis_name", "type", "ip"],
        },
        {
            "op": "select",
            "table": "Port_Binding",
            "where": [["options", "includes", ["map", [[REQUESTED_CHASSIS, chassis]]]]],
            "columns": ["logical_port", "options", "chassis", "up"],
        },
        {
            "op": "select",
            "table": "Port_Binding",
            "where": [
                ["type", "==", "l3gateway"],
                ["options", "includes", ["map", [["l3gateway-chassis", chassis]]]],
            ],
            "columns": ["logical_port", "mac"],
        },
    ]
    try:
        reply = request(remote, "transact", params, int(timeout * 1000))
    except OSError as exc:
        raise SbError(f"cannot read OVN Southbound at {remote}: {exc}") from exc
    if reply.error is not None:
        raise SbError(f"OVN Southbound at {remote}: {reply.error}")
    results = reply.result or []
    errors = [r["error"] for r in results if isinstance(r, dict) and r.get("error")]
    if errors:
        raise SbError(f"OVN Southbound at {remote}: {errors[0]}")
    return parse_sb(chassis, results)
