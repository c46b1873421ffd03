"""`dpunet-node`: the daemon of a full node (an ordinary node running OVS itself).

Connects to the local OVS database, then serves the CNI socket with a `PodAgent`
over veth pairs, keeps the management port (`ovn-k8s-mp0`, an OVS internal
port) in shape, reconciles sandbox records against namespaces, br-int and the
controller on start and periodically, keeps the shared gateway's flows on the external
bridge (breth0; `node/gateway.py`) and reports breth0's MAC to the controller (at start
and when it changes; a refused report is logged and retried), and exports `/metrics`,
`/healthz` and `/readyz`. No OVN database access: ports come from the controller's port API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydantic import ValidationError

from dpunet.cni.binding.veth import VethAttacher, veth_names
from dpunet.cni.daemon import AgentDaemon
from dpunet.cni.sandboxes import VethDevice
from dpunet.contract.api import GatewayReport, NodeInfo
from dpunet.contract.client import ClientError
from dpunet.logs import event
from dpunet.node.config import NodeAgentConfig
from dpunet.node.gateway import local_mac, reconcile_gateway
from dpunet.node.mgmt import ensure_management_port
from dpunet.ovsdb.local import LocalOvs
from dpunet.ovsdb.remote import OvsdbUnavailable

log = logging.getLogger("dpunet.node")
OVS_RETRY = 2.0


class NodeDaemon(AgentDaemon):
    """One full node's daemon (see module docstring)."""

    metrics_prefix = "dpunet_node"

    def __init__(self, cfg: NodeAgentConfig) -> None:
        self.ovs = LocalOvs(cfg.ovs_db)
        self.attacher = VethAttacher(self.ovs, cfg.integration_bridge)
        super().__init__(cfg, self.attacher, cfg.mgmt_port)
        self.node_cfg = cfg
        self.ovs_connected = False
        self.gateway_problem: str | None = None
        self.reported_mac: str | None = None  # the gateway MAC the controller accepted
        self.report_problem: str | None = None

    async def connect(self, stop: asyncio.Event) -> bool:
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
            event(log, "ovs-connected", db=self.node_cfg.ovs_db)
            return True
        return False

    async def disconnect(self) -> None:
        """Close the OVS connection."""
        await asyncio.to_thread(self.ovs.stop)

    def ensure_management_port(self, node: NodeInfo) -> list[str]:
        """`ovn-k8s-mp0` as an internal port of br-int."""
        return ensure_management_port(
            self.ovs, self.node_cfg.integration_bridge, node, self.cfg.mgmt_ifname
        )

    async def reconcile_extra(self) -> None:
        """Remove veths and OVS ports that no sandbox record knows; the gateway MAC's report;
        the gateway's flows."""
        removed = await asyncio.to_thread(self.attacher.sweep, self._kept_veths)
        for name in removed:
            self.agent.metrics.reconcile_actions.labels("stale-veth").inc()
            event(log, "stale-veth-removed", ifname=name)
        await self.report_gateway_mac()
        if not self.node_cfg.gateway.enabled:
            return
        try:
            node = await asyncio.to_thread(self.client.get_node, self.cfg.node)
            problem = await asyncio.to_thread(
                reconcile_gateway, self.node_cfg.gateway, self.ovs, self.node_cfg.ovs_db, node
            )
        except ClientError as exc:
            problem = f"controller: {exc}"
        if problem != self.gateway_problem:
            self.gateway_problem = problem
            if problem:
                event(log, "gateway-flows-waiting", level=logging.WARNING, problem=problem)

    async def report_gateway_mac(self) -> None:
        """Report breth0's MAC to the controller when it is not the one last accepted; a
        refusal is logged (once per reason) and retried next reconcile."""
        mac = local_mac(self.ovs)
        if mac is None or mac == self.reported_mac:
            return
        try:
            report = GatewayReport(gateway_mac=mac)
            answer = await asyncio.to_thread(self.client.report_gateway, self.cfg.node, report)
        except (ClientError, ValidationError) as exc:
            if str(exc) != self.report_problem:
                self.report_problem = str(exc)
                event(log, "gateway-mac-refused", level=logging.WARNING, mac=mac, error=str(exc))
            return
        self.reported_mac, self.report_problem = mac, None
        event(log, "gateway-mac-reported", mac=mac, changed=answer.changed)

    def _kept_veths(self) -> set[str]:
        """The veths of every recorded attachment; for a sandbox whose file is unreadable,
        those it still names and its `eth0`'s (they stay)."""
        scan = self.agent.store.scan()
        kept: set[str] = set()
        for record in scan.records:
            if isinstance(record.device, VethDevice):
                kept |= {record.device.veth, record.device.peer}
        for unreadable in scan.unreadable:
            kept |= set(veth_names(unreadable.container_id))
            kept |= {
                name
                for device in unreadable.devices
                if isinstance(device, dict)
                for key, name in device.items()
                if key in ("veth", "peer") and isinstance(name, str)
            }
        return kept

    def readiness_problem(self) -> str | None:
        """Not ready while the local OVS database is not connected."""
        if not self.ovs_connected or not self.ovs.state().synced:
            return "not connected to the local OVS database"
        return None
