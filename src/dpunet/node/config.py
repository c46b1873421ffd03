"""`NodeAgentConfig`: settings of `dpunet-node` (file < `DPUNET_*` env < flags).

Every default is listed in docs/node-agent.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from dpunet.cni.daemon import AgentSettings
from dpunet.observability import parse_listen
from dpunet.openflow.gateway import GatewaySettings
from dpunet.ovsdb.remote import default_ovs_db, validate_remote


def _listen(value: str | None) -> str | None:
    if value:
        parse_listen(value)
    return value or None


class NodeAgentConfig(AgentSettings):
    """Settings of the full-node daemon."""

    token_file: Path = Field(
        default=Path("/etc/dpunet/node/token"), description="bearer token for the controller"
    )
    ovs_db: Annotated[str, AfterValidator(validate_remote)] = Field(
        default_factory=default_ovs_db,
        description="local OVS database; default unix:$OVS_RUNDIR/db.sock",
    )
    integration_bridge: str = Field(default="br-int", min_length=1, max_length=15)
    mgmt_port: bool = Field(default=True, description="keep the management port in place")
    gateway: GatewaySettings = Field(
        default_factory=GatewaySettings,
        description="the shared gateway's flows on the external bridge (checked every "
        "reconcile_interval)",
    )
    metrics_address: Annotated[str | None, AfterValidator(_listen)] = Field(
        default="127.0.0.1:9479", description="HOST:PORT of /metrics, /healthz, /readyz"
    )
