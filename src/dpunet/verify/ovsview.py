"""A read-only snapshot of a node's Open_vSwitch database (ovsdbapp), for verify and topology."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dpunet.ovsdb.local import connect

POD_LSP_SEPARATOR = "_"
MGMT_LSP_PREFIX = "k8s-"


@dataclass(frozen=True)
class IfaceView:
    """One Interface row (with the bridge and port it belongs to)."""

    name: str
    bridge: str
    port: str
    type: str = ""
    external_ids: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None
    error: str | None = None
    port_external_ids: Mapping[str, str] = field(default_factory=dict)
    mac_in_use: str | None = None

    @property
    def iface_id(self) -> str | None:
        """The OVN logical port bound to this interface."""
        return self.external_ids.get("iface-id")


@dataclass(frozen=True)
class BridgeView:
    """One Bridge row."""

    name: str
    datapath_type: str
    fail_mode: str | None
    ports: tuple[str, ...]


@dataclass(frozen=True)
class OvsView:
    """The parts of an Open_vSwitch database verify and topology read."""

    other_config: Mapping[str, str] = field(default_factory=dict)
    external_ids: Mapping[str, str] = field(default_factory=dict)
    bridges: Mapping[str, BridgeView] = field(default_factory=dict)
    interfaces: Mapping[str, IfaceView] = field(default_factory=dict)

    def bridge_ifaces(self, bridge: str) -> list[IfaceView]:
        """Interfaces of one bridge, by name."""
        return sorted(
            (i for i in self.interfaces.values() if i.bridge == bridge), key=lambda i: i.name
        )

    @property
    def hw_offload(self) -> bool:
        """`other_config:hw-offload` is true."""
        return self.other_config.get("hw-offload", "false").lower() == "true"

    @property
    def userspace_datapath(self) -> bool:
        """Some bridge uses the userspace (netdev) datapath."""
        return any(b.datapath_type == "netdev" for b in self.bridges.values())


def pod_of_lsp(lsp: str | None) -> str | None:
    """`<namespace>_<pod>` -> `namespace/pod`; `k8s-<node>` -> `mgmt:<node>`; else None."""
    if not lsp:
        return None
    if lsp.startswith(MGMT_LSP_PREFIX):
        return f"mgmt:{lsp[len(MGMT_LSP_PREFIX) :]}"
    namespace, sep, name = lsp.partition(POD_LSP_SEPARATOR)
    return f"{namespace}/{name}" if sep and namespace and name else None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple) and value else None


def read_ovs(remote: str) -> OvsView:
    """Snapshot the database at `remote` (`unix:PATH`); OvsdbUnavailable when unreachable."""
    with connect(remote) as ovs, ovs.tables() as tables:
        root = next(iter(tables["Open_vSwitch"].rows.values()), None)
        bridges: dict[str, BridgeView] = {}
        ifaces: dict[str, IfaceView] = {}
        for bridge in tables["Bridge"].rows.values():
            ports = sorted(p.name for p in bridge.ports)
            bridges[bridge.name] = BridgeView(
                bridge.name,
                bridge.datapath_type or "system",
                _first(bridge.fail_mode),
                tuple(ports),
            )
            for port in bridge.ports:
                for iface in port.interfaces:
                    ifaces[iface.name] = IfaceView(
                        name=iface.name,
                        bridge=bridge.name,
                        port=port.name,
                        type=iface.type,
                        external_ids=dict(iface.external_ids),
                        options=dict(iface.options),
                        ofport=_first(iface.ofport),
                        error=_first(iface.error),
                        port_external_ids=dict(port.external_ids),
                        mac_in_use=_first(iface.mac_in_use),
                    )
        return OvsView(
            other_config=dict(root.other_config) if root else {},
            external_ids=dict(root.external_ids) if root else {},
            bridges=bridges,
            interfaces=ifaces,
        )
