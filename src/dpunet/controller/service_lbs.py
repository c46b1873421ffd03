"""Services as OVN load balancers: admission, allocation and the desired Load_Balancer rows.

Pure computation, no I/O (service_nb.py applies it to Northbound). Names and keys follow
OVN-Kubernetes' services controller:
- `Service_<ns>/<name>_<PROTO>`: one cluster load balancer per protocol, VIPs
  `<clusterIP>:<port>`, member of the `clusterLBGroup` load balancer group, which is
  attached to every node switch (pods and the management port reach the cluster IP) and
  every gateway router. It carries the admitted spec in `external_ids:dpunet:service-spec`,
  so Northbound alone restores every service and allocation after a restart.
- `Service_<ns>/<name>_<PROTO>_node_router_<node>`: NodePort services, one per node and
  protocol, VIPs `<node gateway address>:<nodePort>`, attached to `GR_<node>` only (a
  gateway router answers ARP for the VIPs of its load balancers, so each carries only
  its own address).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from dpunet.contract.services import (
    Protocol,
    ServiceInfo,
    ServicePort,
    ServicePortInfo,
    ServiceSpec,
    ServiceType,
)
from dpunet.controller.errors import BadRequest, Conflict, Exhausted
from dpunet.controller.topology import KIND_KEY, NODE_KEY, OWNER, OWNER_KEY, NodeRecord

SERVICE_KIND = "service"  # a cluster load balancer (carries the spec)
NODE_PORT_KIND = "service-node-port"  # a NodePort load balancer of one gateway router
SERVICE_KINDS = frozenset({SERVICE_KIND, NODE_PORT_KIND})
SERVICE_KEY = "dpunet:service"  # "<namespace>/<name>"
SPEC_KEY = "dpunet:service-spec"
CLUSTER_LB_GROUP = "clusterLBGroup"
# Source address of hairpinned connections (a pod reaching itself through its service),
# OVN-Kubernetes' choice: link-local, never a real peer.
HAIRPIN_SNAT_IP = "169.254.169.5"


def service_key(namespace: str, name: str) -> str:
    """`<namespace>/<name>`, the service's identity in Northbound."""
    return f"{namespace}/{name}"


def lb_name(key: str, protocol: Protocol) -> str:
    """The cluster load balancer of one protocol of a service."""
    return f"Service_{key}_{protocol.value}"


def node_lb_name(key: str, protocol: Protocol, node: str) -> str:
    """The NodePort load balancer of one protocol of a service on one gateway router."""
    return f"{lb_name(key, protocol)}_node_router_{node}"


def encode(spec: ServiceSpec) -> str:
    """The spec as stored in Northbound (canonical JSON)."""
    return spec.model_dump_json(by_alias=True, exclude_none=True)


def decode(text: str) -> ServiceSpec:
    """A stored spec; pydantic.ValidationError when it is not one."""
    return ServiceSpec.model_validate_json(text)


# ---------------------------------------------------------------- allocation
def allocate_cluster_ip(cidr: IPv4Network, used: Set[IPv4Address]) -> IPv4Address:
    """The lowest host address of `cidr` not in `used`; Exhausted when none is left."""
    for ip in cidr.hosts():
        if ip not in used:
            return ip
    raise Exhausted(f"no free cluster IP left in {cidr}")


def allocate_node_port(ports: range, used: Set[int]) -> int:
    """The lowest port of `ports` not in `used`; Exhausted when none is left."""
    for port in ports:
        if port not in used:
            return port
    raise Exhausted(f"no free node port left in {ports.start}-{ports.stop - 1}")


def admit(
    cidr: IPv4Network,
    node_ports: range,
    current: Mapping[str, ServiceSpec],
    key: str,
    request: ServiceSpec,
) -> ServiceSpec:
    """Check `request` for service `key` against the others in `current` and fill in its
    cluster IP and node ports (kept from the existing service, else allocated).

    BadRequest: outside the configured ranges; Conflict: taken by another service or
    an immutable field changed; Exhausted: nothing left to allocate.
    """
    existing = current.get(key)
    others = {k: s for k, s in current.items() if k != key}
    for ip in request.endpoints or ():
        if ip in cidr:
            raise BadRequest(f"endpoint {ip} is inside the service CIDR {cidr}")
    taken_ips = {s.cluster_ip for s in others.values() if s.cluster_ip is not None}
    cluster_ip = request.cluster_ip
    if cluster_ip is not None:
        if cluster_ip not in cidr or cluster_ip in (cidr.network_address, cidr.broadcast_address):
            raise BadRequest(f"clusterIP {cluster_ip} is not a host address of {cidr}")
        if existing is not None and existing.cluster_ip != cluster_ip:
            raise Conflict(
                f"clusterIP of {key} is {existing.cluster_ip} and cannot change; "
                "delete the service first"
            )
        owner = next((k for k, s in others.items() if s.cluster_ip == cluster_ip), None)
        if owner is not None:
            raise Conflict(f"clusterIP {cluster_ip} belongs to service {owner}")
    elif existing is not None and existing.cluster_ip is not None:
        cluster_ip = existing.cluster_ip
    else:
        cluster_ip = allocate_cluster_ip(cidr, taken_ips)
    ports = request.ports
    if request.type is ServiceType.NODE_PORT:
        ports = _node_ports(node_ports, others, existing, request)
    return request.model_copy(update={"cluster_ip": cluster_ip, "ports": ports})


def _node_ports(
    node_ports: range,
    others: Mapping[str, ServiceSpec],
    existing: ServiceSpec | None,
    request: ServiceSpec,
) -> list[ServicePort]:
    """The request's ports with every node port checked or allocated."""
    used: dict[Protocol, dict[int, str]] = {p: {} for p in Protocol}
    for other_key, other in others.items():
        for p in other.ports:
            if p.node_port is not None:
                used[p.protocol][p.node_port] = other_key
    previous = {}
    if existing is not None and existing.type is ServiceType.NODE_PORT:
        previous = {(p.protocol, p.port): p.node_port for p in existing.ports}
    mine: dict[Protocol, set[int]] = {p: set() for p in Protocol}
    for p in request.ports:
        if p.node_port is None:
            continue
        if p.node_port not in node_ports:
            raise BadRequest(
                f"nodePort {p.node_port} is outside {node_ports.start}-{node_ports.stop - 1}"
            )
        if p.node_port in used[p.protocol]:
            owner = used[p.protocol][p.node_port]
            raise Conflict(f"nodePort {p.node_port}/{p.protocol} belongs to service {owner}")
        mine[p.protocol].add(p.node_port)
    out = []
    for p in request.ports:
        port = p.node_port
        if port is None:
            kept = previous.get((p.protocol, p.port))
            taken = set(used[p.protocol]) | mine[p.protocol]
            port = kept if kept is not None and kept not in taken else None
            if port is None:
                port = allocate_node_port(node_ports, taken)
            mine[p.protocol].add(port)
        out.append(p.model_copy(update={"node_port": port}))
    return out


# ---------------------------------------------------------------- backends
@dataclass(frozen=True)
class PodBackend:
    """A pod port that is up, as a possible backend."""

    namespace: str
    pod: str
    ip: IPv4Address
    labels: Mapping[str, str] = field(default_factory=dict)


def backend_ips(namespace: str, spec: ServiceSpec, pods: Iterable[PodBackend]) -> list[IPv4Address]:
    """The backend addresses of a service, sorted: its endpoints, or the matching pod
    ports of its namespace."""
    if spec.endpoints is not None:
        return sorted(set(spec.endpoints))
    if spec.pods is not None:
        wanted = set(spec.pods)
        return sorted({p.ip for p in pods if p.namespace == namespace and p.pod in wanted})
    if spec.selector is not None:
        sel = spec.selector.items()
        return sorted(
            {
                p.ip
                for p in pods
                if p.namespace == namespace and all(p.labels.get(k) == v for k, v in sel)
            }
        )
    return []


# ---------------------------------------------------------------- load balancers
@dataclass(frozen=True)
class Lb:
    """A Load_Balancer row; `node` None: in the cluster group, else on `GR_<node>`."""

    name: str
    protocol: str
    vips: Mapping[str, str]
    options: Mapping[str, str]
    external_ids: Mapping[str, str]
    node: str | None = None


def lb_options(spec: ServiceSpec) -> dict[str, str]:
    """Load_Balancer options: refuse (TCP reset / ICMP) when there is no backend, no
    controller events, hairpin source address, no ARP for VIPs, session affinity."""
    options = {
        "reject": "true",
        "event": "false",
        "hairpin_snat_ip": HAIRPIN_SNAT_IP,
        "neighbor_responder": "none",
    }
    if spec.timeout is not None:
        options["affinity_timeout"] = str(spec.timeout)
    return options


def _ids(kind: str, key: str, **extra: str) -> dict[str, str]:
    return {
        OWNER_KEY: OWNER,
        KIND_KEY: kind,
        SERVICE_KEY: key,
        "k8s.ovn.org/kind": "Service",
        "k8s.ovn.org/owner": key,
        **extra,
    }


def desired_lbs(
    key: str,
    spec: ServiceSpec,
    stored: str,
    backends: Iterable[IPv4Address],
    nodes: Mapping[str, NodeRecord],
) -> list[Lb]:
    """The load balancers of an admitted service (`stored`: its spec as kept in NB)."""
    if spec.cluster_ip is None:
        raise ValueError(f"service {key} has no cluster IP")
    ips = list(backends)
    options = lb_options(spec)
    out = []
    for proto in Protocol:
        ports = [p for p in spec.ports if p.protocol is proto]
        if not ports:
            continue
        vips = {f"{spec.cluster_ip}:{p.port}": _targets(ips, p.target) for p in ports}
        out.append(
            Lb(
                lb_name(key, proto),
                proto.value.lower(),
                vips,
                options,
                _ids(SERVICE_KIND, key, **{SPEC_KEY: stored}),
            )
        )
        if spec.type is not ServiceType.NODE_PORT:
            continue
        for node in sorted(nodes):
            address = nodes[node].node_ip.ip
            node_vips = {f"{address}:{p.node_port}": _targets(ips, p.target) for p in ports}
            out.append(
                Lb(
                    node_lb_name(key, proto, node),
                    proto.value.lower(),
                    node_vips,
                    options,
                    _ids(NODE_PORT_KIND, key, **{NODE_KEY: node}),
                    node,
                )
            )
    return out


def _targets(ips: list[IPv4Address], port: int) -> str:
    return ",".join(f"{ip}:{port}" for ip in ips)


def service_info(
    key: str, spec: ServiceSpec, backends: Iterable[IPv4Address], lbs: Iterable[str]
) -> ServiceInfo:
    """The API view of a service."""
    namespace, _, name = key.partition("/")
    return ServiceInfo(
        namespace=namespace,
        name=name,
        type=spec.type,
        cluster_ip=str(spec.cluster_ip),
        ports=[
            ServicePortInfo(
                name=p.name,
                protocol=p.protocol,
                port=p.port,
                target_port=p.target,
                node_port=p.node_port,
            )
            for p in spec.ports
        ],
        endpoints=[str(ip) for ip in spec.endpoints] if spec.endpoints is not None else None,
        pods=spec.pods,
        selector=spec.selector,
        session_affinity=spec.session_affinity,
        affinity_timeout=spec.timeout,
        backends=[str(ip) for ip in backends],
        load_balancers=sorted(lbs),
    )
