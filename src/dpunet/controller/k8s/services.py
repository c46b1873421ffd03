"""Kubernetes mode: Services and EndpointSlices are the source of the services (docs/services.md).

Every Service with an IPv4 cluster IP (not headless, not ExternalName) becomes a
`ServiceSpec`: type ClusterIP, or NodePort for NodePort and LoadBalancer services (node
ports as the API server allocated them); each port's targetPort as its EndpointSlices
resolved it (a named targetPort has no number otherwise); backends: the IPv4 addresses
of the service's slices that are ready or, when none is, those still serving while
terminating (as kube-proxy does); ClientIP affinity with its timeout (OVN caps it at
65535 s). Once both lists have arrived, the whole set replaces the services in NB on
every pass of the service controller, so a Service deleted while the controller was down
is removed as well.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address

from lightkube import AsyncClient
from lightkube.models.core_v1 import ServicePort as KubePort
from lightkube.models.discovery_v1 import Endpoint
from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from dpunet.contract.services import (
    DEFAULT_AFFINITY_TIMEOUT,
    MAX_AFFINITY_TIMEOUT,
    Protocol,
    ServicePort,
    ServiceSpec,
    ServiceType,
    SessionAffinity,
)
from dpunet.controller.k8s.kube import list_and_watch
from dpunet.controller.service_lbs import service_key
from dpunet.controller.services import ServiceController
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s.services")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _ipv4(text: str | None) -> IPv4Address | None:
    try:
        ip = ip_address(text or "")
    except ValueError:
        return None
    return ip if isinstance(ip, IPv4Address) else None


def _ready(ep: Endpoint) -> bool:
    cond = ep.conditions
    return cond is None or cond.ready is None or bool(cond.ready)


def _serving_terminating(ep: Endpoint) -> bool:
    cond = ep.conditions
    return cond is not None and bool(cond.terminating) and cond.serving is not False


def backends(slices: Iterable[EndpointSlice]) -> list[IPv4Address]:
    """The IPv4 backends of a service's slices: ready ones, else serving terminating ones."""
    endpoints = [ep for s in slices if s.addressType == "IPv4" for ep in s.endpoints or []]
    chosen = [ep for ep in endpoints if _ready(ep)] or [
        ep for ep in endpoints if _serving_terminating(ep)
    ]
    return sorted({ip for ep in chosen for a in ep.addresses or [] if (ip := _ipv4(a))})


def _target(port: KubePort, slices: list[EndpointSlice]) -> int | None:
    """A service port's target port number: from the slices (they resolve named ones),
    else the Service's own number."""
    name, protocol = port.name or None, port.protocol or "TCP"
    for s in slices:
        for p in s.ports or []:
            if (p.name or None) == name and (p.protocol or "TCP") == protocol and p.port:
                return int(p.port)
    target = port.targetPort
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    return None


def spec_of(service: Service, slices: list[EndpointSlice]) -> ServiceSpec | None:
    """The ServiceSpec of a Service (None when dpunet has nothing to do for it)."""
    spec = service.spec
    cluster_ip = _ipv4(spec.clusterIP if spec else None)
    if spec is None or cluster_ip is None or not spec.ports:
        return None
    node_ports = spec.type in _NODE_PORT_TYPES
    ports = []
    for p in spec.ports:
        try:
            protocol = Protocol(p.protocol or "TCP")
        except ValueError:
            continue
        target = _target(p, slices)
        ports.append(
            ServicePort.model_construct(
                name=p.name or None,
                protocol=protocol,
                port=p.port,
                target_port=target if target is not None and target != p.port else None,
                node_port=p.nodePort if node_ports and p.nodePort else None,
            )
        )
    if not ports:
        return None
    timeout = None
    affinity = SessionAffinity.NONE
    if spec.sessionAffinity == "ClientIP":
        affinity = SessionAffinity.CLIENT_IP
        config = spec.sessionAffinityConfig
        seconds = config.clientIP.timeoutSeconds if config and config.clientIP else None
        timeout = min(seconds or DEFAULT_AFFINITY_TIMEOUT, MAX_AFFINITY_TIMEOUT)
    # constructed, not validated: the API server validated the Service, and a Service may
    # have more endpoints than the standalone API accepts in one request
    return ServiceSpec.model_construct(
        type=ServiceType.NODE_PORT if node_ports else ServiceType.CLUSTER_IP,
        cluster_ip=cluster_ip,
        ports=ports,
        endpoints=backends(slices),
        pods=None,
        selector=None,
        session_affinity=affinity,
        affinity_timeout=timeout,
    )


class ServiceSource:
    """Watch Services and EndpointSlices; hand the service controller the whole set."""

    def __init__(self, client: AsyncClient, services: ServiceController) -> None:
        self.client = client
        self.services = services
        self._services: dict[str, Service] = {}
        self._slices: dict[str, dict[str, EndpointSlice]] = {}  # service key -> slice name -> it
        self._specs: dict[str, ServiceSpec] = {}
        self._listed: set[str] = set()
        services.use_external_source()

    async def run(self) -> None:
        """Until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                list_and_watch(self.client, Service, self._services_listed, self._service_changed)
            )
            tasks.create_task(
                list_and_watch(self.client, EndpointSlice, self._slices_listed, self._slice_changed)
            )

    def _publish(self, *keys: str) -> None:
        """Recompute the specs of `keys` (all without) and hand over the set, once both
        lists have arrived."""
        if self._listed != {"services", "slices"}:
            return
        if not keys:
            self._specs = {}
        for key in keys or list(self._services):
            svc = self._services.get(key)
            spec = spec_of(svc, list(self._slices.get(key, {}).values())) if svc else None
            if spec is None:
                self._specs.pop(key, None)
            else:
                self._specs[key] = spec
        self.services.replace_specs(dict(self._specs))

    @staticmethod
    def _key(obj: Service | EndpointSlice) -> str | None:
        meta = obj.metadata
        if meta is None or not meta.namespace:
            return None
        if isinstance(obj, EndpointSlice):
            owner = (meta.labels or {}).get(SERVICE_NAME_LABEL)
            return service_key(meta.namespace, owner) if owner else None
        return service_key(meta.namespace, meta.name) if meta.name else None

    async def _services_listed(self, items: list[Service]) -> None:
        self._services = {k: s for s in items if (k := self._key(s)) is not None}
        self._listed.add("services")
        event(log, "k8s.services_listed", services=len(self._services))
        self._publish()

    async def _service_changed(self, kind: str, svc: Service) -> None:
        key = self._key(svc)
        if key is None:
            return
        if kind == "DELETED":
            self._services.pop(key, None)
        else:
            self._services[key] = svc
        self._publish(key)

    async def _slices_listed(self, items: list[EndpointSlice]) -> None:
        slices: dict[str, dict[str, EndpointSlice]] = {}
        for s in items:
            key = self._key(s)
            if key is not None and s.metadata and s.metadata.name:
                slices.setdefault(key, {})[s.metadata.name] = s
        self._slices = slices
        self._listed.add("slices")
        self._publish()

    async def _slice_changed(self, kind: str, s: EndpointSlice) -> None:
        key = self._key(s)
        if key is None or s.metadata is None or not s.metadata.name:
            return
        if kind == "DELETED":
            self._slices.get(key, {}).pop(s.metadata.name, None)
        else:
            self._slices.setdefault(key, {})[s.metadata.name] = s
        self._publish(key)
