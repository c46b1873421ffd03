"""Request and response bodies of the service API (`/v1/services`).

Field names follow the Kubernetes Service (`clusterIP`, `targetPort`, `nodePort`,
`sessionAffinity`), so a Service manifest's spec maps onto a request almost 1:1.
The request model is also what the controller stores on the service's OVN
Load_Balancer rows (with the allocated `clusterIP` and `nodePort`s filled in).
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from dpunet.contract.api import DNS_LABEL, IPV4, LabelKey, LabelValue

DEFAULT_AFFINITY_TIMEOUT = 10800  # Kubernetes' default sessionAffinityConfig timeout (s)
MAX_AFFINITY_TIMEOUT = 65535  # OVN's limit for options:affinity_timeout
_BROADCAST = IPv4Address("255.255.255.255")

PodName = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
Ipv4 = Annotated[IPv4Address, Field(json_schema_extra={"pattern": IPV4})]
Port = Annotated[int, Field(ge=1, le=65535)]


class Protocol(StrEnum):
    """Transport protocol of a service port."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class ServiceType(StrEnum):
    """ClusterIP: a virtual address inside the cluster; NodePort: also a port on every
    node's gateway address."""

    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"


class SessionAffinity(StrEnum):
    """None: every connection is balanced; ClientIP: one client sticks to one backend."""

    NONE = "None"
    CLIENT_IP = "ClientIP"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ServicePort(_Body):
    """One port of a service."""

    name: str | None = Field(
        default=None, pattern=DNS_LABEL, max_length=63, description="required with several ports"
    )
    protocol: Protocol = Protocol.TCP
    port: Port = Field(description="port on the cluster IP")
    target_port: Port | None = Field(
        default=None, alias="targetPort", description="port on the backends (default: port)"
    )
    node_port: Port | None = Field(
        default=None,
        alias="nodePort",
        description="NodePort services: port on each node's gateway address (default: allocated)",
    )

    @property
    def target(self) -> int:
        """The backends' port."""
        return self.target_port or self.port


class ServiceSpec(_Body):
    """`PUT /v1/services/{namespace}/{name}`: a service and where its backends come from.

    Backends are at most one of: `endpoints` (addresses), `pods` (ports of these pods in
    the service's namespace) or `selector` (ports of the namespace whose labels, given at
    port creation, match all of it). Without backends, connections are refused.
    """

    type: ServiceType = ServiceType.CLUSTER_IP
    cluster_ip: Ipv4 | None = Field(
        default=None, alias="clusterIP", description="inside service_cidr (default: allocated)"
    )
    ports: list[ServicePort] = Field(min_length=1, max_length=64)
    # limits keep the largest valid body inside the default max_body_bytes (16 KiB)
    endpoints: list[Ipv4] | None = Field(default=None, max_length=512)
    pods: list[PodName] | None = Field(default=None, max_length=128)
    selector: dict[LabelKey, LabelValue] | None = Field(default=None, max_length=32)
    session_affinity: SessionAffinity = Field(default=SessionAffinity.NONE, alias="sessionAffinity")
    affinity_timeout: int | None = Field(
        default=None,
        alias="affinityTimeout",
        ge=1,
        le=MAX_AFFINITY_TIMEOUT,
        description=f"ClientIP only, seconds (default {DEFAULT_AFFINITY_TIMEOUT})",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        sources = [s for s in ("endpoints", "pods", "selector") if getattr(self, s) is not None]
        if len(sources) > 1:
            raise ValueError(f"give backends as one of endpoints, pods or selector, not {sources}")
        if self.affinity_timeout is not None and self.session_affinity is SessionAffinity.NONE:
            raise ValueError("affinityTimeout needs sessionAffinity ClientIP")
        if len(self.ports) > 1 and any(p.name is None for p in self.ports):
            raise ValueError("every port needs a name when a service has several")
        names = [p.name for p in self.ports if p.name is not None]
        if len(set(names)) != len(names):
            raise ValueError("port names must be unique")
        keys = [(p.protocol, p.port) for p in self.ports]
        if len(set(keys)) != len(keys):
            raise ValueError("each protocol/port pair may appear once")
        node_ports = [(p.protocol, p.node_port) for p in self.ports if p.node_port is not None]
        if node_ports and self.type is not ServiceType.NODE_PORT:
            raise ValueError("nodePort needs type NodePort")
        if len(set(node_ports)) != len(node_ports):
            raise ValueError("each protocol/nodePort pair may appear once")
        for group in (self.endpoints, self.pods):
            if group is not None and len(set(group)) != len(group):
                raise ValueError("backends must not repeat")
        for ip in self.endpoints or ():
            if ip.is_multicast or ip.is_unspecified or ip.is_loopback or ip == _BROADCAST:
                raise ValueError(f"endpoint {ip} is not a unicast address")
        return self

    @property
    def timeout(self) -> int | None:
        """The affinity timeout in effect (None without ClientIP affinity)."""
        if self.session_affinity is SessionAffinity.NONE:
            return None
        return self.affinity_timeout or DEFAULT_AFFINITY_TIMEOUT


class ServicePortInfo(BaseModel):
    """A service port as in effect (allocated node port included)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str | None = None
    protocol: Protocol
    port: int
    target_port: int = Field(alias="targetPort")
    node_port: int | None = Field(default=None, alias="nodePort")


class ServiceInfo(BaseModel):
    """A service, its allocations and the backends currently in its load balancers."""

    model_config = ConfigDict(populate_by_name=True)

    namespace: str
    name: str
    type: ServiceType
    cluster_ip: str = Field(alias="clusterIP")
    ports: list[ServicePortInfo]
    endpoints: list[str] | None = None
    pods: list[str] | None = None
    selector: dict[str, str] | None = None
    session_affinity: SessionAffinity = Field(alias="sessionAffinity")
    affinity_timeout: int | None = Field(default=None, alias="affinityTimeout")
    backends: list[str] = Field(description="backend addresses now in the load balancers")
    load_balancers: list[str] = Field(alias="loadBalancers", description="OVN Load_Balancer names")


class ServiceList(BaseModel):
    """`GET /v1/services`."""

    items: list[ServiceInfo]
