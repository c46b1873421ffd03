"""The controller: NB connection, state, services, the port API's backing and the
supervision loop (daemon.py serves it over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from dpunet.contract.api import EventResult, Health, PodEventReport
from dpunet.controller.auth import (
    Authenticator,
    DpuTokensFirst,
    Principal,
    StaticTokens,
    TokenStore,
)
from dpunet.controller.config import ControllerConfig, ControllerMode
from dpunet.controller.errors import Forbidden
from dpunet.controller.leases import DpuLeases
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient
from dpunet.controller.nodes import NodeService
from dpunet.controller.policies import PolicyController
from dpunet.controller.ports import PortService
from dpunet.controller.reconcile import Reconciler
from dpunet.controller.registration import DpuRegistrar, NodeRegistrations, SouthboundChassis
from dpunet.controller.sb import SbBindings, SbMonitor
from dpunet.controller.services import ServiceController
from dpunet.controller.state import ClusterState
from dpunet.logs import event

if TYPE_CHECKING:
    from dpunet.controller.k8s.mode import KubeMode

log = logging.getLogger("dpunet.controller")
_TICK_S = 0.5
_RETRY_S = 1.0


class Controller:
    """Everything one controller process runs."""

    def __init__(self, cfg: ControllerConfig) -> None:
        self.cfg = cfg
        self.sb: SbMonitor | None = None
        if cfg.wait_for_up and cfg.sb_remotes:
            self.sb = SbMonitor(cfg.sb_remotes, SbBindings())
        bindings = self.sb.bindings if self.sb is not None else None
        self.nb = NbClient(cfg.nb_remotes, cfg.nb_timeout, cfg.nb_workers, bindings)
        self.state = ClusterState(cfg)
        self.metrics = Metrics(self.state.node_stats)
        self.metrics.watch_nb_writes(
            lambda: (self.nb.writes.transactions, self.nb.writes.writes_sent)
        )
        self.reconciler = Reconciler(cfg, self.nb, self.state, self.metrics)
        self.kube: KubeMode | None = None
        self.authenticator: Authenticator
        self.ports: PortService
        if cfg.mode is ControllerMode.KUBERNETES:
            from dpunet.controller.k8s.mode import KubeMode  # Kubernetes client: this mode only

            self.kube = KubeMode(cfg)
            self.authenticator = self.kube.authenticator
            if cfg.dpu_token_file is not None:  # a DPU has no Kubernetes credentials
                dpu_tokens = TokenStore(cfg.dpu_token_file, dpu_only=True)
                self.metrics.watch_token_file(dpu_tokens.valid)
                self.authenticator = DpuTokensFirst(dpu_tokens, self.kube.authenticator)
            self.ports = self.kube.ports(self.nb, self.state, self.metrics, self.request_reload)
        else:
            store = TokenStore(cfg.token_file)
            self.metrics.watch_token_file(store.valid)
            self.authenticator = StaticTokens(store)
            self.ports = PortService(cfg, self.nb, self.state, self.metrics, self.request_reload)
        dpus_authenticate = self.kube is None or cfg.dpu_token_file is not None
        leases = (
            DpuLeases(cfg.dpu_lease_duration)
            if cfg.dpu_lease_duration is not None and dpus_authenticate
            else None
        )
        self.nodes = NodeService(
            cfg, self.nb, self.state, self.reconciler.repair_node_ports, self.request_reload, leases
        )
        self.metrics.watch_dpu_leases(self.nodes.dpu_leases)
        if self.kube is not None:
            self.kube.bind_nodes(self.nodes, self.state)
        self.registrar = DpuRegistrar(
            SouthboundChassis(cfg.sb_remotes) if cfg.sb_remotes else None,
            self.kube.bindings()
            if self.kube is not None
            else NodeRegistrations(self.nodes, self.state),
        )
        self.services = ServiceController(cfg, self.nb, self.metrics)
        if self.kube is not None:
            self.kube.bind_services(self.services)
        self.policies = PolicyController(cfg, self.nb, self.metrics)
        if self.kube is not None:
            self.kube.bind_policies(self.policies)
        self.reconciled = False
        self._reload_wanted = asyncio.Event()

    @property
    def ready(self) -> bool:
        """NB usable and the state loaded from it."""
        return self.nb.ready and self.state.gate.is_open

    def health(self, status: str) -> Health:
        """The body of /healthz and /readyz."""
        return Health(
            status=status,
            nb_connected=self.nb.connected,
            nb_lock=self.nb.has_lock,
            reconciled=self.reconciled,
        )

    async def pod_event(
        self, who: Principal, namespace: str, name: str, report: PodEventReport
    ) -> EventResult:
        """Log a node agent's report; in Kubernetes mode also an Event on the pod."""
        if not who.may_act_for(report.node):
            raise Forbidden(f"{who} may not report events of node {report.node}")
        event(
            log, "pod.event", logging.WARNING, namespace=namespace, pod=name, uid=report.uid,
            node=report.node, reason=report.reason, message=report.message,
        )  # fmt: skip
        if self.kube is None:
            return EventResult(recorded=False)
        await self.kube.pods.admit(namespace, name, report.uid, report.node)
        await self.kube.events.pod(namespace, name, report.uid, report.reason, report.message)
        return EventResult(recorded=True)

    def request_reload(self) -> None:
        """Ask for a reload from NB and a reconcile pass soon."""
        self._reload_wanted.set()

    async def supervise(self) -> None:
        """Standalone: `supervise_nb`. Kubernetes: once elected, `supervise_nb` and the
        Node and Pod sources while the Lease is held."""
        if self.kube is None:
            await self.supervise_nb()
        else:
            await self.kube.run(self.supervise_nb)

    async def supervise_nb(self) -> None:
        """Keep the state in step with NB: reload whenever NB (and its lock) come back,
        periodically, and on request; hold requests back while NB is unusable."""
        loop = asyncio.get_running_loop()
        await self.nb.connect()
        last = float("-inf")
        while True:
            gate = self.state.gate
            if not self.nb.ready:
                if gate.is_open:
                    event(
                        log,
                        "controller.nb_lost",
                        logging.WARNING,
                        connected=self.nb.connected,
                        lock=self.nb.has_lock,
                    )
                    await gate.close()
            elif (
                not gate.is_open
                or self._reload_wanted.is_set()
                or loop.time() - last >= self.cfg.reconcile_interval
            ):
                self._reload_wanted.clear()
                try:
                    await gate.close()
                    async with self.state.topology_lock:
                        await self.reconciler.reload()
                except Exception as exc:
                    self.metrics.reconcile_runs.labels("error").inc()
                    event(log, "reconcile.failed", logging.ERROR, error=str(exc) or repr(exc))
                    await asyncio.sleep(_RETRY_S)
                    continue
                await gate.open()
                self.reconciled = True
                self.metrics.reconcile_runs.labels("ok").inc()
                last = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_wanted.wait(), _TICK_S)

    def start_sb(self) -> None:
        """Start watching SB for ports that are up (when configured)."""
        if self.sb is not None:
            self.sb.start()

    async def close(self) -> None:
        """Release the NB and SB connections."""
        if self.sb is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.sb.stop)
        await self.nb.close()
