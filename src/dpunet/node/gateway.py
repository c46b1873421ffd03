"""The shared gateway's flows on a full node's external bridge (breth0), programmed by
`dpunet-node` each reconcile (docs/architecture.md, section 4a).

The node IP comes from the controller's node record (the gateway router's address); the
bridge from `ovn-bridge-mappings`' physnet; the host is the bridge's LOCAL port (the
node's address lives on breth0); the uplink is the bridge's one other system port.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Interface

from dpunet.contract.api import NodeInfo
from dpunet.logs import event
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowConnection, OpenFlowError, mgmt_socket
from dpunet.ovsdb.local import LocalOvs

log = logging.getLogger(__name__)


def reconcile_gateway(
    settings: gw.GatewaySettings, ovs: LocalOvs, ovs_db: str, node: NodeInfo
) -> str | None:
    """One pass (blocking); the problem that kept it from completing, or None."""
    state = ovs.state()
    if not state.synced:
        return "waiting for the OVS replica"
    bridge = gw.physnet_bridge(state.external_ids)
    if bridge is None:
        return "no physnet bridge in external_ids:ovn-bridge-mappings"
    ports = [
        gw.BridgePort(p.name, p.type, p.ofport, p.mac_in_use)
        for p in state.ports
        if p.bridge == bridge
    ]
    uplink = state.external_ids.get("ovn-gw-interface")
    node_ip = IPv4Interface(node.node_ip).ip
    flows = gw.wanted_flows(settings, bridge, ports, None, uplink, node_ip)
    if isinstance(flows, str):
        return flows
    try:
        with OpenFlowConnection(mgmt_socket(ovs_db, bridge)) as conn:
            changes = gw.reconcile(conn, flows)
    except OpenFlowError as exc:
        return str(exc)
    if changes:
        event(
            log,
            "gateway-flows",
            bridge=bridge,
            added=len(changes.added),
            removed=len(changes.removed),
            flows=len(flows),
        )
    return None
