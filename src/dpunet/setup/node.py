"""`dpunet node setup`: the full (control-plane) node's OVS settings, which the seed's
ovs-node and ovnkube-node (full mode) pods make: `system-id`, `hostname`, `ovn-remote`,
`ovn-encap-type=geneve` and `ovn-encap-ip`, `ovn-bridge-mappings=physnet:breth0`
(and `ovn-bridge-datapath-type`), and the gateway bridge `breth0` holding the uplink, the
node's address moved (or, with `address`, assigned) onto it.

The same plan and application as `dpu setup` (`dpunet.setup.dpu`, `full_node=True`): a
full node has no host PF representor, no hw-offload and no dpu-host external ids.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dpunet.ovsdb.remote import default_ovs_db, validate_remote
from dpunet.setup.dpu import DatapathChoice, DpuSetupConfig, Name, check_ovn_remote
from dpunet.setup.plan import IfName

FULL_NODE_BRIDGE = "breth0"


class NodeSetupConfig(BaseModel):
    """Input of `dpunet node setup` (the CLI options, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uplink: IfName = Field(description="the node's uplink netdev (into the bridge)")
    bridge: IfName = FULL_NODE_BRIDGE
    address: ipaddress.IPv4Interface | None = None
    encap_ip: ipaddress.IPv4Address | None = None
    system_id: Name | None = None
    hostname: Name | None = None
    ovn_remote: Annotated[str, AfterValidator(check_ovn_remote)] | None = None
    datapath_type: DatapathChoice = "auto"
    ovs_db: Annotated[str, AfterValidator(validate_remote)] = Field(default_factory=default_ovs_db)

    def plan_config(self) -> DpuSetupConfig:
        """The shared plan's input for this node."""
        return DpuSetupConfig(
            full_node=True,
            host_pf_rep=None,
            **self.model_dump(exclude_none=True),
        )
