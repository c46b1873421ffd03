"""The shared gateway's flows on the DPU's external bridge (brp0), programmed by
`dpunet-dpu` each pass (docs/architecture.md, section 4a).

Inputs, all local or read-only: the gateway router's port `rtoe-GR_<host node>` in the
SB replica (its `mac` column holds the MAC and the node IP OVN uses), the bridge of
`ovn-bridge-mappings`' physnet, the uplink (`ovn-gw-interface`), the host PF
representor, and the patch port ovn-controller made. The flows go through the bridge's
OpenFlow management socket (`dpunet.openflow`), never `ovs-ofctl`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dpunet.contract.lsp import gateway_external_port
from dpunet.dpu.sb import SbSnapshot
from dpunet.hw.representors import read_smart_nic_pf_mac
from dpunet.hw.sysfs import Sysfs
from dpunet.logs import event
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowError
from dpunet.openflow.protocol import Flow
from dpunet.ovsdb.local import OvsState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatewayResult:
    """One pass: what changed, or why nothing could be done (`problem`)."""

    changes: gw.FlowChanges = field(default_factory=gw.FlowChanges)
    flows: int = 0
    problem: str | None = None


def wanted_flows(
    settings: gw.GatewaySettings,
    snapshot: SbSnapshot,
    state: OvsState,
    host_node: str,
    host_port: str,
    uplink: str | None,
) -> tuple[str, list[gw.Flow], str | None] | str:
    """(bridge, flows, GR MAC) this DPU's external bridge should hold, or a problem."""
    bridge = gw.physnet_bridge(state.external_ids)
    if bridge is None:
        return "no physnet bridge in external_ids:ovn-bridge-mappings"
    lport = gateway_external_port(host_node)
    binding = next((b for b in snapshot.bindings if b.logical_port == lport), None)
    if binding is None:
        return bridge, [], None
    parsed = gw.parse_gateway_mac(binding.mac)
    if parsed is None:
        return f"SB Port_Binding {lport} has no '<mac> <ip>' entry: {list(binding.mac)}"
    mac, node_ip = parsed
    ports = gw.bridge_ports(state.ports, bridge)
    uplink = uplink or state.external_ids.get("ovn-gw-interface")
    flows = gw.wanted_flows(settings, bridge, ports, host_port, uplink, node_ip)
    if isinstance(flows, str):
        return flows
    return bridge, flows, mac


class GatewayFlows:
    """Level-triggered: `reconcile` compares dpunet's flows on the switch with the wanted
    set whenever that set changed, and otherwise at least every `settings.interval`
    (the agent passes far more often, after every port change: reading the flows back
    each time cost more than the port's own pass)."""

    def __init__(
        self,
        settings: gw.GatewaySettings,
        ovs_db: str,
        host_node: str | None,
        host_port: str,
        uplink: str | None,
        sysfs: Sysfs,
        program: Callable[[str, str, Sequence[Flow]], gw.FlowChanges] = gw.program,
    ) -> None:
        """`program` writes the flows (`openflow.gateway.program`)."""
        self.settings = settings
        self.ovs_db = ovs_db
        self.host_node = host_node
        self.host_port = host_port
        self.uplink = uplink
        self.sysfs = sysfs
        self._program = program
        self._warned: str | None = None
        self._checked: tuple[str, list[Flow], str | None] | None = None  # last in place
        self._checked_at = 0.0

    def reconcile(self, snapshot: SbSnapshot, state: OvsState) -> GatewayResult:
        """One pass (blocking); never raises for a switch that cannot be reached."""
        if not self.settings.enabled or self.host_node is None:
            return GatewayResult()
        if not snapshot.synced or not state.synced:
            return GatewayResult(problem="waiting for synced SB and OVS replicas")
        wanted = wanted_flows(
            self.settings, snapshot, state, self.host_node, self.host_port, self.uplink
        )
        if isinstance(wanted, str):
            return GatewayResult(problem=wanted)
        bridge, flows, mac = wanted
        now = time.monotonic()
        if wanted == self._checked and now - self._checked_at < self.settings.interval:
            return GatewayResult(flows=len(flows))  # the same set, checked recently
        self._check_mac(mac, state)
        try:
            changes = self._program(self.ovs_db, bridge, flows)
        except OpenFlowError as exc:
            self._checked = None
            return GatewayResult(problem=str(exc))
        self._checked, self._checked_at = wanted, now
        return GatewayResult(changes, len(flows))

    def _check_mac(self, mac: str | None, state: OvsState) -> None:
        """Warn (once per value) when the GR's MAC is not the host PF's: the node IP would
        then have two MACs on the wire."""
        uplink = self.uplink or state.external_ids.get("ovn-gw-interface")
        host_mac = read_smart_nic_pf_mac(self.sysfs, uplink) if uplink else None
        if mac is None or host_mac is None or mac == host_mac.lower():
            return
        if self._warned != mac:
            self._warned = mac
            event(
                log,
                "gateway-mac-mismatch",
                logging.WARNING,
                gateway_mac=mac,
                host_pf_mac=host_mac,
                detail="the registration reports the host PF's MAC; until the controller "
                "has it, the gateway router keeps the MAC it was given",
            )
