"""The service controller: Services as OVN load balancers (see service_lbs.py).

Level-triggered: a pass (service_nb.SyncServices) recomputes every service's load
balancers from the specs stored in Northbound, the pod ports that are up and the
registered nodes. Passes run once the controller holds the NB lock, whenever NB
reports a change to switches, routers, load balancers or (while there are services)
pod ports, and every `reconcile_interval` (controller/passes.py): a burst of port
changes costs one pass, not one per port, and a pod going away leaves its services
within a fraction of a second. A PUT or DELETE is
itself one pass that also admits the change, in one transaction.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial

from prometheus_client import Counter, Gauge

from dpunet.contract.api import DeleteResult
from dpunet.contract.services import ServiceInfo, ServiceList, ServiceSpec
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import Conflict, Forbidden, NotFound
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient
from dpunet.controller.nbcommands import LR, LS, LSP
from dpunet.controller.passes import PassLoop
from dpunet.controller.service_lbs import service_info, service_key
from dpunet.controller.service_nb import (
    LB,
    LB_GROUP,
    ReadServices,
    ServiceState,
    SyncResult,
    SyncServices,
)
from dpunet.logs import event

log = logging.getLogger("dpunet.controller.services")
WATCHED = frozenset({LSP, LS, LR, LB, LB_GROUP})


class ServiceController:
    """Service API operations and the sync loop."""

    def __init__(self, cfg: ControllerConfig, nb: NbClient, metrics: Metrics) -> None:
        self.cfg = cfg
        self.nb = nb
        self._external = False  # specs come from Kubernetes, not from the API
        self._specs: dict[str, ServiceSpec] | None = None  # the external set, once known
        self._any_service = True  # the last pass found services (or could not tell)
        self.syncs = Counter(
            "dpunet_controller_service_syncs",
            "Service load balancer passes by result",
            ["result"],
            registry=metrics.registry,
        )
        self.changes = Counter(
            "dpunet_controller_service_changes",
            "Load balancer columns and rows written by service passes",
            registry=metrics.registry,
        )
        self.count = Gauge(
            "dpunet_controller_services",
            "Services in Northbound after the last pass",
            registry=metrics.registry,
        )
        self.passes = PassLoop(
            "service", cfg.reconcile_interval, self._can_run, self.sync, self.syncs, log
        )
        nb.on_change(self._changed)

    def _can_run(self) -> bool:
        return self.nb.ready and not (self._external and self._specs is None)

    def use_external_source(self) -> None:
        """Kubernetes mode: the service set comes from `replace_specs`; the API only reads."""
        self._external = True

    def replace_specs(self, specs: dict[str, ServiceSpec]) -> None:
        """The complete service set (Kubernetes mode); applied by the next pass."""
        self._specs = specs
        self.passes.wake.set()

    def _changed(
        self, table: str, row: uuid.UUID | None = None, columns: frozenset[str] | None = None
    ) -> None:
        """IDL thread: something in Northbound changed."""
        if table == LSP and not self._any_service:
            return  # no service has backends to follow
        if table in WATCHED:
            self.passes.wake_from_thread()

    # ------------------------------------------------------------------ loop
    async def run(self) -> None:
        """Pass after pass, forever (cancel to stop)."""
        await self.passes.run()

    async def sync(self) -> SyncResult:
        """One pass."""
        result = await self._write()
        self.syncs.labels("ok").inc()
        if result.changes:
            event(log, "service.sync", changes=result.changes)
        for key, reason in sorted(result.broken.items()):
            event(log, "service.unreadable", logging.WARNING, service=key, reason=reason)
        return result

    async def _write(
        self, key: str | None = None, spec: ServiceSpec | None = None, delete: bool = False
    ) -> SyncResult:
        if spec is not None or (self._external and self._specs):
            self._any_service = True  # follow port changes from now on
        result: SyncResult = await self.nb.write(
            partial(
                SyncServices,
                cidr=self.cfg.service_cidr,
                node_ports=self.cfg.node_ports,
                key=key,
                spec=spec,
                delete=delete,
                replace=self._specs if self._external else None,
            )
        )
        self.changes.inc(result.changes)
        self.count.set(result.services)
        self._any_service = bool(result.services or result.broken)
        return result

    # ------------------------------------------------------------------ API
    def _admin(self, who: Principal, what: str) -> None:
        if not who.admin:
            raise Forbidden(f"only an admin token may {what} services")
        if self._external:
            raise Conflict("services come from Kubernetes Service objects in this mode")

    async def put(
        self, who: Principal, namespace: str, name: str, spec: ServiceSpec
    ) -> ServiceInfo:
        """Create or update a service (admin); repeating a PUT writes nothing."""
        self._admin(who, "create or change")
        key = service_key(namespace, name)
        result = await self._write(key, spec)
        state = result.state
        assert state is not None
        event(
            log,
            "service.put",
            service=key,
            action=("updated" if result.changes else "unchanged") if result.existed else "created",
            cluster_ip=str(state.spec.cluster_ip),
            ports=[f"{p.port}/{p.protocol.value}" for p in state.spec.ports],
            backends=[str(ip) for ip in state.backends] or None,
            changes=result.changes,
        )
        return _info(state)

    async def get(self, who: Principal, namespace: str, name: str) -> ServiceInfo:
        """One service; 404 when absent."""
        key = service_key(namespace, name)
        state: ServiceState | None = await self.nb.read(partial(ReadServices, key=key))
        if state is None:
            raise NotFound(f"no service {key}")
        return _info(state)

    async def list(self, who: Principal, namespace: str | None = None) -> ServiceList:
        """Every service, optionally of one namespace."""
        states: list[ServiceState] = await self.nb.read(ReadServices)
        return ServiceList(
            items=[
                _info(s)
                for s in states
                if namespace is None or s.key.partition("/")[0] == namespace
            ]
        )

    async def delete(self, who: Principal, namespace: str, name: str) -> DeleteResult:
        """Remove a service and its load balancers (admin); unknown services succeed."""
        self._admin(who, "delete")
        key = service_key(namespace, name)
        result = await self._write(key, delete=True)
        event(log, "service.delete", service=key, existed=result.existed, changes=result.changes)
        if not result.existed:
            return DeleteResult(deleted=False, detail=f"no service {key}")
        return DeleteResult(deleted=True, detail=f"service {key} removed")


def _info(state: ServiceState) -> ServiceInfo:
    return service_info(state.key, state.spec, state.backends, state.load_balancers)
