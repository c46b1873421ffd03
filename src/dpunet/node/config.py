"""`NodeAgentConfig`: settings of `dpunet-node` (file < `DPUNET_*` env < flags).

Every default is listed in docs/node-agent.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dpunet.cni.shim import DEFAULT_SOCKET, DEFAULT_STATE_DIR
from dpunet.dpu.config import parse_listen
from dpunet.setup.ovsdb import default_ovs_db, validate_remote
from dpunet.setup.plan import SetupError


def _ovs_db(value: str) -> str:
    try:
        return validate_remote(value)
    except SetupError as exc:
        raise ValueError(str(exc)) from exc


def _listen(value: str | None) -> str | None:
    if value:
        parse_listen(value)
    return value or None


class NodeAgentConfig(BaseModel):
    """Settings of the full-node daemon."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", description="this node's name"
    )
    controller_url: str = Field(
        default="http://127.0.0.1:9477", description="controller API: http://HOST:PORT or unix:PATH"
    )
    token_file: Path = Field(
        default=Path("/etc/dpunet/node/token"), description="bearer token for the controller"
    )
    state_dir: Path = Field(default=Path(DEFAULT_STATE_DIR), description="sandbox records")
    cni_socket: Path = Field(default=Path(DEFAULT_SOCKET), description="where dpunet-cni connects")
    ovs_db: Annotated[str, AfterValidator(_ovs_db)] = Field(
        default_factory=default_ovs_db,
        description="local OVS database; default unix:$OVS_RUNDIR/db.sock",
    )
    integration_bridge: str = Field(default="br-int", min_length=1, max_length=15)
    mgmt_port: bool = Field(default=True, description="keep the management port in place")
    mgmt_ifname: str = Field(default="ovn-k8s-mp0", min_length=1, max_length=15)
    metrics_address: Annotated[str | None, AfterValidator(_listen)] = Field(
        default="127.0.0.1:9479", description="HOST:PORT of /metrics, /healthz, /readyz"
    )
    reconcile_interval: float = Field(default=10.0, gt=0, description="seconds between reconciles")
    port_timeout: float = Field(default=60.0, gt=0, le=600, description="wait for a port (s)")
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    log_format: str = Field(default="kv", pattern=r"^(kv|json)$")
