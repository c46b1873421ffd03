"""The shared gateway's flows on a full node's external bridge (breth0), programmed by
`dpunet-node` each reconcile (docs/architecture.md, section 4a).

The node IP comes from the controller's node record (the gateway router's address); the
bridge from `ovn-bridge-mappings`' physnet; the host is the bridge's LOCAL port (the
node's address lives on breth0); the uplink is the bridge's one other system port.
The LOCAL port's MAC is the node's gateway MAC, which `dpunet-node` reports to the
controller (`PUT /v1/nodes/{name}/gateway`): the gateway router shares it.
"""

from __future__ import annotations

from ipaddress import IPv4Interface

from dpunet.contract.api import NodeInfo
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowError
from dpunet.ovsdb.local import LocalOvs


def local_mac(ovs: LocalOvs) -> str | None:
    """The MAC of the external bridge's LOCAL port in the OVS replica (None: not known)."""
    state = ovs.state()
    bridge = gw.physnet_bridge(state.external_ids) if state.synced else None
    for port in state.ports:
        if port.bridge == bridge and port.name == bridge:
            return port.mac_in_use
    return None


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
    ports = gw.bridge_ports(state.ports, bridge)
    uplink = state.external_ids.get("ovn-gw-interface")
    node_ip = IPv4Interface(node.node_ip).ip
    flows = gw.wanted_flows(settings, bridge, ports, None, uplink, node_ip)
    if isinstance(flows, str):
        return flows
    try:
        gw.program(ovs_db, bridge, flows)
    except OpenFlowError as exc:
        return str(exc)
    return None
