"""What `dpunet-host` and `dpunet-node` share as daemons: settings, the serve loop,
the management port upkeep, readiness.

A subclass supplies the device `Attacher`, how to make its management port
(`ensure_management_port`), and optionally something to wait for before serving
(`connect`) and extra reconcile work (`reconcile_extra`).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ipaddress
import logging
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field

from dpunet.cni.binding.base import Attacher
from dpunet.cni.pods import AgentMetrics, PodAgent
from dpunet.cni.sandboxes import SandboxStore
from dpunet.cni.server import CniServer
from dpunet.cni.wire import DEFAULT_SOCKET, DEFAULT_STATE_DIR
from dpunet.contract.api import NodeInfo
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.linux.netlink import InterfaceConfig, LinuxError, Route
from dpunet.logs import event
from dpunet.observability import check_handler, metrics_handler, start_http
from dpunet.tls import ClientTls, client_context, plain_url, require_tls, warn_insecure

log = logging.getLogger("dpunet.agent")

MGMT_IFNAME = "ovn-k8s-mp0"


def management_config(node: NodeInfo, ifname: str = MGMT_IFNAME) -> InterfaceConfig:
    """The management interface the controller's node record describes (either kind of
    node): the subnet's `.2`, routes to the cluster and service CIDRs via `.1`."""
    gateway = ipaddress.IPv4Address(node.gateway_ip.split("/")[0])
    return InterfaceConfig(
        ifname=ifname,
        mac=node.mgmt_mac,
        mtu=node.mtu,
        address=ipaddress.IPv4Interface(node.mgmt_ip),
        gateway=None,
        routes=tuple(
            Route(ipaddress.IPv4Network(cidr), gateway)
            for cidr in (node.cluster_cidr, node.service_cidr)
        ),
    )


class AgentSettings(BaseModel):
    """Settings every node daemon has (file < `DPUNET_*` env < flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", description="this node's name"
    )
    controller_url: str = Field(
        default="http://127.0.0.1:9477",
        description="controller API: https://HOST:PORT, unix:PATH, or http:// on loopback "
        "(elsewhere with insecure)",
    )
    controller_tls: ClientTls | None = Field(
        default=None, description="CA (and client certificate) of an https:// controller_url"
    )
    insecure: bool = Field(
        default=False, description="allow plain http:// to another machine (a warning at start)"
    )
    token_file: Path = Field(description="bearer token for the controller")
    state_dir: Path = Field(default=Path(DEFAULT_STATE_DIR), description="sandbox records")
    cni_socket: Path = Field(default=Path(DEFAULT_SOCKET), description="where dpunet-cni connects")
    mgmt_ifname: str = Field(default=MGMT_IFNAME, min_length=1, max_length=15)
    metrics_address: str | None = Field(
        default=None, pattern=r"^[^:]*:\d{1,5}$", description="HOST:PORT of /metrics, /readyz"
    )
    reconcile_interval: float = Field(default=10.0, gt=0, description="seconds between reconciles")
    port_timeout: float = Field(default=60.0, gt=0, le=600, description="wait for a port (s)")
    gateway_timeout: float = Field(
        default=1.0, ge=0, le=30,
        description="how long ADD waits for the pod's gateway to answer the pod (s); 0: no wait",
    )  # fmt: skip
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    log_format: str = Field(default="kv", pattern=r"^(kv|json)$")


class AgentDaemon(abc.ABC):
    """The serve/reconcile loop of a node daemon (see module docstring)."""

    metrics_prefix = "dpunet_agent"

    def __init__(self, cfg: AgentSettings, attacher: Attacher, mgmt_enabled: bool) -> None:
        self.cfg = cfg
        plain = [cfg.controller_url] if plain_url(cfg.controller_url) else []
        require_tls("controller_url", plain, cfg.insecure)
        if cfg.insecure:
            warn_insecure(log, plain)
        self.client = ControllerClient(
            cfg.controller_url,
            token_file=str(cfg.token_file),
            timeout=cfg.port_timeout + 30,
            tls=client_context(cfg.controller_tls),
        )
        self.registry = CollectorRegistry()
        self.agent = PodAgent(
            cfg.node,
            attacher,
            SandboxStore(cfg.state_dir),
            self.client,
            AgentMetrics(self.registry, self.metrics_prefix),
            cfg.port_timeout,
            gateway_timeout=cfg.gateway_timeout,
        )
        self.mgmt_enabled = mgmt_enabled
        self.mgmt_ok = not mgmt_enabled
        self.last_reconcile_ok = 0.0

    # ------------------------------------------------------------- hooks
    async def connect(self, stop: asyncio.Event) -> bool:
        """Wait for what must exist before serving CNI; False when stopped first."""
        return True

    async def disconnect(self) -> None:  # noqa: B027 (optional hook)
        """Release what `connect` opened."""

    @abc.abstractmethod
    def ensure_management_port(self, node: NodeInfo) -> list[str]:
        """Make the management port match the controller's node record; the changes made.
        Blocking (runs in a thread)."""

    async def reconcile_extra(self) -> None:  # noqa: B027 (optional hook)
        """Device-specific repairs after the sandbox reconcile."""

    def readiness_problem(self) -> str | None:
        """Why the daemon is not ready, beyond the shared conditions (None: no reason)."""
        return None

    # -------------------------------------------------------------- loop
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
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
        server = None
        try:
            if not await self.connect(stop):
                return
            server = CniServer(
                self.agent,
                self.cfg.cni_socket,
                state_dir=self.cfg.state_dir,
                locks=self.agent.locks,
            )
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
            await self.disconnect()
            self.client.close()
            event(log, "stopped", node=self.cfg.node)

    async def reconcile_once(self) -> None:
        """Management port, sandboxes, device extras; failures are logged, never fatal."""
        await self._ensure_mgmt()
        try:
            await self.agent.reconcile()
            await self.reconcile_extra()
            self.last_reconcile_ok = time.monotonic()
        except Exception as exc:  # keep serving; the next pass retries
            event(log, "reconcile-error", level=logging.ERROR, error=repr(exc))

    async def _ensure_mgmt(self) -> None:
        if not self.mgmt_enabled:
            return
        try:
            node = await asyncio.to_thread(self.client.get_node, self.cfg.node)
            changes = await asyncio.to_thread(self.ensure_management_port, node)
        except (ClientError, LinuxError) as exc:
            self.mgmt_ok = False
            event(log, "mgmt-port-error", level=logging.WARNING, error=str(exc))
            return
        self.mgmt_ok = True
        if changes:
            event(log, "mgmt-port-configured", ifname=self.cfg.mgmt_ifname, changes=changes)

    def readiness(self) -> tuple[bool, str]:
        """Ready once a reconcile succeeded recently and the management port is in place."""
        problem = self.readiness_problem()
        if problem:
            return False, problem
        if time.monotonic() - self.last_reconcile_ok > 3 * self.cfg.reconcile_interval + 5:
            return False, "no successful reconcile recently (controller unreachable?)"
        if not self.mgmt_ok:
            return False, "management port not configured"
        return True, "ready"
