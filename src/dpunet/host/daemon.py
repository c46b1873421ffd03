"""`dpunet-host`: the dpu-host node daemon.

Serves the CNI socket with a `PodAgent` over VFs, keeps the management port
(`ovn-k8s-mp0`) in shape, reconciles sandbox records against namespaces and the
controller on start and periodically, and exports `/metrics`, `/healthz` and
`/readyz`. With `device_plugin` it also serves kubelet's device plugin API (one
resource per pool, health from sysfs, the management port and the DPU lease). While
the DPU's lease at the controller is expired (`host.lease`), CNI STATUS and ADD answer
code 50. No OVS and no OVN access on this node: everything goes through the
controller's port API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from dpunet.cni.binding.vf import VfAttacher
from dpunet.cni.daemon import AgentDaemon
from dpunet.contract.api import NodeInfo
from dpunet.host.config import HostAgentConfig
from dpunet.host.lease import DpuLeaseView
from dpunet.host.mgmt import ManagementPort
from dpunet.hw.sysfs import Sysfs

if TYPE_CHECKING:
    from dpunet.host.kubelet.deviceplugin import DevicePluginManager

log = logging.getLogger("dpunet.host")


class HostDaemon(AgentDaemon):
    """One dpu-host node's daemon (see module docstring)."""

    metrics_prefix = "dpunet_host"

    def __init__(self, cfg: HostAgentConfig) -> None:
        self.host_cfg = cfg
        self.sysfs = Sysfs.from_env(cfg.sysfs_root)
        pools = cfg.pools()
        resolver = None
        if cfg.pod_resources:  # the kubelet APIs (gRPC) load only when configured
            from dpunet.host.kubelet.podresources import SOCKET, PodResourcesResolver

            resolver = PodResourcesResolver(
                cfg.kubelet_dir / SOCKET, [r.full_name for r in pools.resource_list]
            )
        self.attacher = VfAttacher(self.sysfs, pools, cfg.management_vfs(), resolver)
        self.mgmt_port = (
            ManagementPort(self.sysfs, cfg.pf, cfg.mgmt_vf, cfg.mgmt_ifname)
            if cfg.mgmt_vf is not None
            else None
        )
        super().__init__(cfg, self.attacher, cfg.mgmt_vf is not None)
        self.agent.dpu_problem = self._dpu_problem
        self.lease = DpuLeaseView(
            cfg.node, lambda: self.client.get_node(cfg.node), cfg.dpu_lease_ttl
        )
        self.agent.dpu_down = self.lease.problem
        self.vfs = Gauge(
            "dpunet_host_pool_vfs", "VFs per pool, by state.", ["resource", "state"],
            registry=self.registry,
        )  # fmt: skip
        self.device_plugin: DevicePluginManager | None = None
        if cfg.device_plugin:
            from dpunet.host.kubelet.deviceplugin import (
                DevicePluginManager,
                DevicePluginSettings,
                PoolSource,
            )

            self.device_plugin = DevicePluginManager(
                DevicePluginSettings(cfg.kubelet_dir, cfg.device_info_dir, cfg.plugin_registration),
                pools.resource_list,
                PoolSource(self.sysfs, self.attacher.assignment, self._held_vfs, self._dpu_ready),
                self.registry,
            )
        self._plugin: asyncio.Task[None] | None = None

    def ensure_management_port(self, node: NodeInfo) -> list[str]:
        """VF `mgmt_vf` of `pf` as `ovn-k8s-mp0`."""
        assert self.mgmt_port is not None
        return self.mgmt_port.ensure(node)

    async def reconcile_extra(self) -> None:
        """Pool gauges; the device plugin starts once the DPU's state is known, then is told
        to re-check health after every reconcile."""
        scan = await asyncio.to_thread(self.agent.store.scan)
        usage = await asyncio.to_thread(self.attacher.pool_usage, scan.claimed)
        for resource, (used, total) in usage.items():
            self.vfs.labels(resource, "used").set(used)
            self.vfs.labels(resource, "free").set(total - used)
        if self.device_plugin is not None:
            if self._plugin is None:
                self._plugin = asyncio.create_task(self.device_plugin.run(asyncio.Event()))
            self.device_plugin.poke()

    async def disconnect(self) -> None:
        """Stop the device plugin."""
        if self._plugin is not None:
            self._plugin.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._plugin

    def _held_vfs(self) -> set[str]:
        """The VFs this node's sandboxes hold (for the device plugin's health), unreadable
        records' included."""
        return self.agent.store.scan().claimed

    def _dpu_problem(self) -> str | None:
        """Why pods cannot get a port on this node's DPU (for the DPUNotReady event)."""
        if self.mgmt_ok:
            return None
        return (
            f"the DPU of node {self.cfg.node} is not ready: the management port "
            f"{self.cfg.mgmt_ifname} is not configured (the node is not registered with the "
            "controller: its DPU has not registered its chassis for it yet, so its Node "
            "lacks the k8s.ovn.org/node-chassis-id annotation; or the management VF is "
            "missing)"
        )

    def _dpu_ready(self) -> tuple[bool, str]:
        """The DPU is ready for pods once the management port is in place, while its
        lease holds (blocking: asks the controller when the lease view is stale)."""
        if not self.mgmt_ok:
            return False, "management port not configured"
        down = self.lease.problem()
        return down is None, down or ""
