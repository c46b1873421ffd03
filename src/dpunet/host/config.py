"""`HostAgentConfig`: settings of `dpunet-host` (file < `DPUNET_*` env < flags).

Every default is listed in docs/host-agent.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from dpunet.cni.daemon import AgentSettings
from dpunet.hw.pools import ManagementVf, PoolConfig, load_pool_config, parse_pool_config

SEED_RESOURCE = "mlnx_sriov_cx6"


class HostAgentConfig(AgentSettings):
    """Settings of the dpu-host node daemon."""

    token_file: Path = Field(
        default=Path("/etc/dpunet/host/token"), description="bearer token for the controller"
    )
    sysfs_root: Path | None = Field(default=None, description="default: $DPUNET_SYSFS_ROOT or /sys")
    pf: str = Field(default="enp2s0f0np0", description="the DPU NIC's PF on this host")
    pool_config: Path | None = Field(
        default=None,
        description="sriov-network-device-plugin config.json (or its ConfigMap); default: one "
        "pool of all VFs of `pf` named mellanox.com/mlnx_sriov_cx6, as in the seed",
    )
    resource_prefix: str = Field(default="mellanox.com", description="prefix of unprefixed pools")
    mgmt_vf: int | None = Field(
        default=0, ge=0, description="VF index of `pf` used as the management port (None: none)"
    )
    device_plugin: bool = Field(
        default=False, description="serve kubelet's device plugin API, one resource per pool"
    )
    pod_resources: bool = Field(
        default=False,
        description="find a pod's VF through kubelet's PodResources API when the network "
        "config names none (Kubernetes without multus)",
    )
    kubelet_dir: Path = Field(default=Path("/var/lib/kubelet"), description="kubelet's root dir")
    device_info_dir: Path = Field(
        default=Path("/var/run/k8s.cni.cncf.io/devinfo/dp"),
        description="where Allocate writes the device-info files multus reads",
    )
    plugin_registration: Literal["auto", "kubelet", "watcher"] = Field(
        default="auto",
        description="kubelet: Register on kubelet.sock; watcher: a socket in plugins_registry; "
        "auto: watcher when <kubelet_dir>/plugins_registry exists",
    )
    metrics_address: str | None = Field(
        default="127.0.0.1:9478", description="HOST:PORT of /metrics, /healthz, /readyz"
    )
    dpu_lease_ttl: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="seconds the DPU lease state the controller reported is reused",
    )

    def pools(self) -> PoolConfig:
        """The VF pools this node hands out."""
        if self.pool_config is not None:
            return load_pool_config(self.pool_config, self.resource_prefix)
        seed_like = {
            "resourceList": [
                {
                    "resourceName": SEED_RESOURCE,
                    "selectors": {
                        "vendors": ["15b3"],
                        "drivers": ["mlx5_core"],
                        "pfNames": [self.pf],
                    },
                }
            ]
        }
        return parse_pool_config(seed_like, self.resource_prefix)

    def management_vfs(self) -> tuple[ManagementVf, ...]:
        """The management VF, excluded from every pool."""
        return () if self.mgmt_vf is None else (ManagementVf(self.pf, self.mgmt_vf),)
