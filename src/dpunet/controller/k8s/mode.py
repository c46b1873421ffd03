"""The controller's Kubernetes mode: one API client, TokenReview authentication, the
Lease, the Node, Pod, Service and NetworkPolicy sources, Events, and port admission
(docs/kubernetes.md).

`KubeMode.run(work)` waits to be elected, then runs `work` (the NB supervision) beside
the sources while it renews the Lease; losing the Lease raises `LeadershipLost` (the
process then exits and restarts as a candidate), cancelling releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ovsdbapp.backend.ovs_idl import command

from dpunet.contract.api import PortInfo, PortRequest
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import DeadlineExceeded, Exhausted
from dpunet.controller.k8s import events
from dpunet.controller.k8s.bindings import NodeAnnotations
from dpunet.controller.k8s.events import EventRecorder
from dpunet.controller.k8s.kube import make_client, own_namespace
from dpunet.controller.k8s.leader import LeaderElector
from dpunet.controller.k8s.policies import PolicySource
from dpunet.controller.k8s.services import ServiceSource
from dpunet.controller.k8s.sources import NodeSource, PodSource
from dpunet.controller.k8s.tokenreview import TokenReviewAuthenticator
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient
from dpunet.controller.nodes import NodeService
from dpunet.controller.policies import PolicyController
from dpunet.controller.ports import PortService
from dpunet.controller.services import ServiceController
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import mgmt_port
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s")
_EVENT_TIMEOUT_S = 10.0


class MgmtPortUp(command.ReadOnlyCommand):
    """True when the management LSP `k8s-<node>` is up (the node's DPU plugged it)."""

    def __init__(self, api: Any, node: str) -> None:
        super().__init__(api)
        self.name = mgmt_port(node)

    def run_idl(self, txn: Any) -> None:
        rows = self.api.tables["Logical_Switch_Port"].rows.values()
        self.result = any(r.name == self.name and r.up and r.up[0] for r in rows)


class KubePortService(PortService):
    """Port PUTs only for existing pods on the caller's node with that uid; each port's pod
    gets its pod-networks annotation; failures a user must see become Events."""

    def __init__(
        self,
        cfg: ControllerConfig,
        nb: NbClient,
        state: ClusterState,
        metrics: Metrics,
        on_uncertain: Callable[[], None],
        mode: KubeMode,
    ) -> None:
        super().__init__(cfg, nb, state, metrics, on_uncertain)
        self.mode = mode

    async def put(
        self, who: Principal, namespace: str, name: str, req: PortRequest, timeout: float | None
    ) -> PortInfo:
        """Admission, then the port, then the annotation (see class docstring)."""
        await self.mode.pods.admit(namespace, name, req.uid, req.node)
        try:
            port = await super().put(who, namespace, name, req, timeout)
        except DeadlineExceeded as exc:
            self.mode.spawn(self._timed_out(namespace, name, req, str(exc)))
            raise
        except Exhausted as exc:
            self.mode.spawn(
                self.mode.events.pod(namespace, name, req.uid, events.PORT_FAILED, str(exc))
            )
            raise
        await self.mode.pods.publish(port)
        return port

    async def _timed_out(self, namespace: str, name: str, req: PortRequest, detail: str) -> None:
        node = self.state.nodes.get(req.node)
        chassis = node.chassis if node is not None else "?"
        try:
            ready = bool(await self.nb.read(lambda api: MgmtPortUp(api, req.node)))
        except Exception:  # NB trouble is in the detail already
            ready = True
        if not ready:
            reason = events.DPU_NOT_READY
            message = (
                f"the DPU of node {req.node} (chassis {chassis}) is not ready: its management "
                f"port {mgmt_port(req.node)} is not up, so it cannot plug the pod's VF ({detail})"
            )
        else:
            reason = events.DPU_TIMEOUT
            message = f"timed out waiting for the DPU (chassis {chassis}): {detail}"
        await self.mode.events.pod(namespace, name, req.uid, reason, message)


class KubeMode:
    """Everything the controller runs in Kubernetes mode."""

    def __init__(self, cfg: ControllerConfig) -> None:
        self.cfg = cfg
        self.namespace = own_namespace(cfg)
        self.client = make_client(cfg)
        self.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.authenticator = TokenReviewAuthenticator(
            self.client,
            self.namespace,
            cfg.k8s_audiences,
            cfg.k8s_agent_service_accounts,
            cfg.k8s_admin_users,
        )
        self.elector = LeaderElector(
            self.client,
            self.namespace,
            cfg.lease_name,
            self.identity,
            cfg.lease_duration,
            cfg.lease_renew_deadline,
            cfg.lease_retry_period,
        )
        self.events = EventRecorder(self.client, self.identity)
        self._tasks: set[asyncio.Task[None]] = set()
        self.pods: PodSource
        self.nodes: NodeSource
        self.services: ServiceSource
        self.policies: PolicySource

    def ports(
        self,
        nb: NbClient,
        state: ClusterState,
        metrics: Metrics,
        on_uncertain: Callable[[], None],
    ) -> KubePortService:
        """The port service of this mode; its pod source is created with it."""
        service = KubePortService(self.cfg, nb, state, metrics, on_uncertain, self)
        self.pods = PodSource(self.client, service, self.cfg.reconcile_interval)
        return service

    def bind_nodes(self, nodes: NodeService, state: ClusterState) -> None:
        """Create the node source over the node service."""
        self.nodes = NodeSource(
            self.client,
            nodes,
            state,
            self.cfg.k8s_next_hop,
            self.cfg.k8s_node_ip_prefix,
            self.cfg.reconcile_interval,
        )

    def bindings(self) -> NodeAnnotations:
        """Where DPU registrations bind their nodes: the Node annotations (after
        `bind_nodes`)."""
        return NodeAnnotations(self.nodes)

    def bind_services(self, services: ServiceController) -> None:
        """Create the Service/EndpointSlice source of the service controller."""
        self.services = ServiceSource(self.client, services)

    def bind_policies(self, policies: PolicyController) -> None:
        """Create the NetworkPolicy/Namespace source of the policy controller (pods' labels
        and named ports from the pod source)."""
        self.policies = PolicySource(self.client, policies, self.pods)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run `coro` (an Event write) in the background, bounded in time."""

        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(coro, _EVENT_TIMEOUT_S)

        task = asyncio.create_task(bounded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Be elected, then run `work` and the sources while holding the Lease."""
        try:
            await self.elector.acquire()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.elector.hold())
                tasks.create_task(work())
                tasks.create_task(self.nodes.run())
                tasks.create_task(self.pods.run())
                tasks.create_task(self.services.run())
                tasks.create_task(self.policies.run())
        finally:
            await asyncio.shield(self._stop())

    async def _stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.elector.release(), 5.0)
        await self.client.close()
        event(log, "k8s.stopped", id=self.identity)
