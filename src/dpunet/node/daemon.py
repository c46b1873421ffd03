"""`dpunet-node`: the daemon of a full node (an ordinary node running OVS itself).

Connects to the local OVS database, then serves the CNI socket with a `PodAgent`
over veth pairs, keeps the management port (`ovn-k8s-mp0`, an OVS internal
port) in shape, reconciles sandbox records against namespaces, br-int and the
controller on start and periodically, and exports `/metrics`, `/healthz` and
`/readyz`. No OVN database access: ports come from the controller's port API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CollectorRegistry

from dpunet.agent.pods import AgentMetrics, PodAgent
from dpunet.agent.sandboxes import SandboxStore
from dpunet.cni.server import CniServer
from dpunet.controller.client import ClientError, ControllerClient, read_token_file
from dpunet.dpu.config import parse_listen
from dpunet.dpu.ovs import LocalOvs
from dpunet.logs import event
from dpunet.node.config import NodeAgentConfig
from dpunet.node.mgmt import ensure_management_port
from dpunet.node.veths import VethAttacher
from dpunet.observability import check_handler, metrics_handler, start_http
from dpunet.podnet import PodNetError
from dpunet.setup.ovsdb import OvsdbUnavailable

log = logging.getLogger("dpunet.node")
OVS_RETRY = 2.0


class NodeDaemon:
    """One full node's daemon (see module docstring)."""

    def __init__(self, cfg: NodeAgentConfig) -> None:
        self.cfg = cfg
        self.client = ControllerClient(
            cfg.controller_url, read_token_file(str(cfg.token_file)), timeout=cfg.port_timeout + 30
        )
        self.registry = CollectorRegistry()
        self.ovs = LocalOvs(cfg.ovs_db)
        self.attacher = VethAttacher(self.ovs, cfg.integration_bridge)
        self.agent = PodAgent(
            cfg.node,
            self.attacher,
            SandboxStore(cfg.state_dir),
            self.client,
            AgentMetrics(self.registry, "dpunet_node"),
            cfg.port_timeout,
        )
        self.ovs_connected = False
        self.last_reconcile_ok = 0.0
        self.mgmt_ok = not cfg.mgmt_port

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        http = None
        if self.cfg.metrics_address:
            host, port = parse_listen(self.cfg.metrics_address)
            http = await start_http(
                host,
                port,
                {
                    "/metrics": metrics_handler(self.registry),
                    "/healthz": check_handler(lambda: (True, "alive")),
                    "/readyz": check_handler(self.readiness),
                },
            )
        server = None
        try:
            if not await self._connect_ovs(stop):
                return
            server = CniServer(self.agent, self.cfg.cni_socket, state_dir=self.cfg.state_dir)
            await server.start()
            event(log, "started", node=self.cfg.node, socket=self.cfg.cni_socket)
            while not stop.is_set():
                await self.reconcile_once()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.reconcile_interval)
        finally:
            if server is not None:
                await server.close()
            if http is not None:
                http.close()
            await asyncio.to_thread(self.ovs.stop)
            self.client.close()
            event(log, "stopped", node=self.cfg.node)

    async def _connect_ovs(self, stop: asyncio.Event) -> bool:
        """Connect to the local OVS database, retrying; False when stopped first."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.ovs.start)
            except OvsdbUnavailable as exc:
                event(log, "ovs-unavailable", level=logging.WARNING, error=str(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), OVS_RETRY)
                continue
            self.ovs_connected = True
            event(log, "ovs-connected", db=self.cfg.ovs_db)
            return True
        return False

    async def reconcile_once(self) -> None:
        """Management port, sandboxes, stale veths; failures are logged, never fatal."""
        await self._ensure_mgmt()
        try:
            await self.agent.reconcile()
            removed = await asyncio.to_thread(self.attacher.sweep, self._known_sandboxes)
            for name in removed:
                self.agent.metrics.reconcile_actions.labels("stale-veth").inc()
                event(log, "stale-veth-removed", ifname=name)
            self.last_reconcile_ok = time.monotonic()
        except Exception as exc:  # keep serving; the next pass retries
            event(log, "reconcile-error", level=logging.ERROR, error=repr(exc))

    def _known_sandboxes(self) -> list[str]:
        return [r.container_id for r in self.agent.store.all()]

    async def _ensure_mgmt(self) -> None:
        if not self.cfg.mgmt_port:
            return
        try:
            node = await asyncio.to_thread(self.client.get_node, self.cfg.node)
            changes = await asyncio.to_thread(
                ensure_management_port,
                self.ovs, self.cfg.integration_bridge, node, self.cfg.mgmt_ifname,
            )  # fmt: skip
        except (ClientError, PodNetError) as exc:
            self.mgmt_ok = False
            event(log, "mgmt-port-error", level=logging.WARNING, error=str(exc))
            return
        self.mgmt_ok = True
        if changes:
            event(log, "mgmt-port-configured", ifname=self.cfg.mgmt_ifname, changes=changes)

    def readiness(self) -> tuple[bool, str]:
        """Ready once OVS is connected, a reconcile succeeded recently and the management
        port is in place."""
        if not self.ovs_connected or not self.ovs.state().synced:
            return False, "not connected to the local OVS database"
        fresh = time.monotonic() - self.last_reconcile_ok < 3 * self.cfg.reconcile_interval + 5
        if not fresh:
            return False, "no successful reconcile recently (controller unreachable?)"
        if not self.mgmt_ok:
            return False, "management port not configured"
        return True, "ready"
