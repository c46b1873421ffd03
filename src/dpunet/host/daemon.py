"""`dpunet-host`: the dpu-host node daemon.

Serves the CNI socket with a `PodAgent` over VFs, keeps the management port
(`ovn-k8s-mp0`) in shape, reconciles sandbox records against namespaces and the
controller on start and periodically, and exports `/metrics`, `/healthz` and
`/readyz`. With `device_plugin` it also serves kubelet's device plugin API (one
resource per pool, health from sysfs and the management port). No OVS and no
OVN access on this node: everything goes through the controller's port API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CollectorRegistry, Gauge

from dpunet.agent.pods import AgentMetrics, PodAgent
from dpunet.agent.sandboxes import SandboxStore
from dpunet.cni.server import CniServer
from dpunet.controller.client import ClientError, ControllerClient, read_token_file
from dpunet.host.config import HostAgentConfig
from dpunet.host.mgmt import ensure_management_port
from dpunet.host.vfs import VfAttacher
from dpunet.hw.sysfs import Sysfs
from dpunet.k8s.deviceplugin import DevicePluginManager, DevicePluginSettings, PoolSource
from dpunet.k8s.podresources import SOCKET as POD_RESOURCES_SOCKET
from dpunet.k8s.podresources import PodResourcesResolver
from dpunet.logs import event
from dpunet.observability import check_handler, metrics_handler, start_http
from dpunet.podnet import PodNetError

log = logging.getLogger("dpunet.host")


class HostDaemon:
    """One dpu-host node's daemon (see module docstring)."""

    def __init__(self, cfg: HostAgentConfig) -> None:
        self.cfg = cfg
        self.sysfs = Sysfs.from_env(cfg.sysfs_root)
        self.client = ControllerClient(
            cfg.controller_url, read_token_file(str(cfg.token_file)), timeout=cfg.port_timeout + 30
        )
        self.registry = CollectorRegistry()
        pools = cfg.pools()
        resolver = (
            PodResourcesResolver(
                cfg.kubelet_dir / POD_RESOURCES_SOCKET, [r.full_name for r in pools.resource_list]
            )
            if cfg.pod_resources
            else None
        )
        self.attacher = VfAttacher(self.sysfs, pools, cfg.management_vfs(), resolver)
        self.agent = PodAgent(
            cfg.node,
            self.attacher,
            SandboxStore(cfg.state_dir),
            self.client,
            AgentMetrics(self.registry, "dpunet_host"),
            cfg.port_timeout,
        )
        self.vfs = Gauge(
            "dpunet_host_pool_vfs", "VFs per pool, by state.", ["resource", "state"],
            registry=self.registry,
        )  # fmt: skip
        self.last_reconcile_ok = 0.0
        self.mgmt_ok = cfg.mgmt_vf is None
        self.device_plugin = (
            DevicePluginManager(
                DevicePluginSettings(cfg.kubelet_dir, cfg.device_info_dir, cfg.plugin_registration),
                pools.resource_list,
                PoolSource(self.sysfs, self.attacher.assignment, self._held_vfs, self._dpu_ready),
                self.registry,
            )
            if cfg.device_plugin
            else None
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        server = CniServer(self.agent, self.cfg.cni_socket, state_dir=self.cfg.state_dir)
        await server.start()
        http = None
        if self.cfg.metrics_address:
            host, _, port = self.cfg.metrics_address.rpartition(":")
            http = await start_http(
                host,
                int(port),
                {
                    "/metrics": metrics_handler(self.registry),
                    "/healthz": check_handler(lambda: (True, "alive")),
                    "/readyz": check_handler(self.readiness),
                },
            )
        event(log, "started", node=self.cfg.node, socket=self.cfg.cni_socket)
        plugin: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                await self.reconcile_once()
                if self.device_plugin is not None:  # started once the DPU's state is known
                    if plugin is None:
                        plugin = asyncio.create_task(self.device_plugin.run(stop))
                    self.device_plugin.poke()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.reconcile_interval)
        finally:
            if plugin is not None:
                plugin.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await plugin
            await server.close()
            if http is not None:
                http.close()
            self.client.close()
            event(log, "stopped", node=self.cfg.node)

    async def reconcile_once(self) -> None:
        """Management port, sandboxes, pool gauges; failures are logged, never fatal."""
        await self._ensure_mgmt()
        try:
            await self.agent.reconcile()
            self.last_reconcile_ok = time.monotonic()
        except Exception as exc:  # keep serving; the next pass retries
            event(log, "reconcile-error", level=logging.ERROR, error=repr(exc))
        held = [r.device for r in await asyncio.to_thread(self.agent.store.all)]
        usage = await asyncio.to_thread(self.attacher.pool_usage, held)
        for resource, (used, total) in usage.items():
            self.vfs.labels(resource, "used").set(used)
            self.vfs.labels(resource, "free").set(total - used)

    async def _ensure_mgmt(self) -> None:
        if self.cfg.mgmt_vf is None:
            return
        try:
            node = await asyncio.to_thread(self.client.get_node, self.cfg.node)
            changes = await asyncio.to_thread(
                ensure_management_port,
                self.sysfs, self.cfg.pf, self.cfg.mgmt_vf, node, self.cfg.mgmt_ifname,
            )  # fmt: skip
        except (ClientError, PodNetError) as exc:
            self.mgmt_ok = False
            event(log, "mgmt-port-error", level=logging.WARNING, error=str(exc))
            return
        self.mgmt_ok = True
        if changes:
            event(log, "mgmt-port-configured", ifname=self.cfg.mgmt_ifname, changes=changes)

    def _held_vfs(self) -> set[str]:
        """The VFs this node's sandboxes hold (for the device plugin's health)."""
        return {str(r.device.get("pci")) for r in self.agent.store.all()}

    def _dpu_ready(self) -> tuple[bool, str]:
        """The DPU is ready for pods once the management port is in place."""
        return self.mgmt_ok, "" if self.mgmt_ok else "management port not configured"

    def readiness(self) -> tuple[bool, str]:
        """Ready once a reconcile succeeded recently and the management port is in place."""
        fresh = time.monotonic() - self.last_reconcile_ok < 3 * self.cfg.reconcile_interval + 5
        if not fresh:
            return False, "no successful reconcile recently (controller unreachable?)"
        if not self.mgmt_ok:
            return False, "management port not configured"
        return True, "ready"
