"""Request and response bodies of the controller API: the server validates with them
(they define its OpenAPI schema) and `ControllerClient` returns them.

A pod has one port per attachment: its primary port (interface `eth0`, network None, LSP
`<ns>_<pod>`) and one per secondary network (`network` = the CNI network name, LSP
`contract.lsp.pod_lsp_name`).
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from dpunet.contract.lsp import DEFAULT_IFNAME

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
NODE_NAME = r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$"
CHASSIS = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
OPAQUE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
IFNAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$"
NETWORK = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"  # a CNI network name
PCI = r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$"
MAC = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^({_OCTET}\.){{3}}{_OCTET}$"
IPV4_CIDR = rf"^({_OCTET}\.){{3}}{_OCTET}/(3[0-2]|[12]?[0-9])$"

# Kubernetes label syntax: an optional DNS-subdomain prefix and a name of up to 63 characters.
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"
PORT_NAME = r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$"  # IANA_SVC_NAME: up to 15 characters

JOIN_SWITCH = "join"  # the NB switch all gateway routers share: no node may take its name
RESERVED_NODE_NAMES = frozenset({JOIN_SWITCH})
PRIMARY_IFNAME = DEFAULT_IFNAME


class NodeRole(StrEnum):
    """How a node's pods are attached."""

    DPU_HOST = "dpu-host"  # VFs, switched by the DPU's OVS (its chassis)
    FULL = "full"  # the node runs OVS itself; veth pods


def port_network(ifname: str, network: str) -> str | None:
    """The `network` of the port of attachment (`ifname`, CNI `network`): None (the pod's
    primary port) for `eth0`, the pod's default interface; the network for the others."""
    return None if ifname == PRIMARY_IFNAME else network


NodeName = Annotated[str, StringConstraints(pattern=NODE_NAME)]
Mac = Annotated[str, StringConstraints(pattern=MAC)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY, max_length=253)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)]


def check_node_name(name: str) -> str:
    """`name` when it may name a node; ValueError otherwise."""
    if name in RESERVED_NODE_NAMES:
        raise ValueError(f"node name {name!r} is reserved")
    return name


def _unicast_mac(value: str | None) -> str | None:
    if value is None:
        return None
    mac = value.lower()
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{value} is a multicast MAC")
    if mac == "00:00:00:00:00:00":
        raise ValueError("the all-zero MAC is not a valid address")
    return mac


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSpec(_Body):
    """`PUT /v1/nodes/{name}`: a node joins (or updates) the cluster."""

    role: NodeRole = Field(description="dpu-host: VFs switched by a DPU; full: runs OVS itself")
    chassis: str = Field(
        pattern=CHASSIS,
        description="OVN chassis (OVS system-id) of the node, for a dpu-host: its DPU's",
    )
    node_ip: IPv4Interface = Field(
        description="the node's underlay address with prefix, e.g. 192.0.2.101/24",
        json_schema_extra={"pattern": IPV4_CIDR},
    )
    next_hop: IPv4Address = Field(
        description="gateway next hop on the underlay", json_schema_extra={"pattern": IPV4}
    )
    gateway_mac: Mac | None = Field(
        default=None,
        description="MAC of the gateway router's external port, the node's own (None: keep "
        "the one known; a node without one has no gateway router until its DPU's "
        "registration or its node agent's report brings it)",
    )
    mgmt_pf_mac: Mac | None = Field(
        default=None, description="dpu-host: MAC of the PF whose VF is the management port"
    )
    mgmt_vf_num: int | None = Field(
        default=None, ge=0, le=4095, description="dpu-host: VF index of the management port"
    )

    _macs = field_validator("gateway_mac", "mgmt_pf_mac")(_unicast_mac)

    @model_validator(mode="after")
    def _consistent(self) -> NodeSpec:
        net = self.node_ip.network
        if net.prefixlen < 31 and self.node_ip.ip in (net.network_address, net.broadcast_address):
            raise ValueError(f"node_ip {self.node_ip} is not a host address of {net}")
        if self.next_hop not in net or self.next_hop == self.node_ip.ip:
            raise ValueError(f"next_hop {self.next_hop} must be another address inside {net}")
        if (self.mgmt_pf_mac is None) != (self.mgmt_vf_num is None):
            raise ValueError("mgmt_pf_mac and mgmt_vf_num go together")
        if self.role is NodeRole.FULL and self.mgmt_pf_mac is not None:
            raise ValueError("a full node has no management VF")
        return self


class LeaseState(StrEnum):
    """Whether the DPU serving a dpu-host node is alive, as its lease says."""

    HELD = "held"  # renewed within the lease's duration
    EXPIRED = "expired"  # no renewal for longer than the duration: the DPU agent is down
    UNKNOWN = "unknown"  # no renewal yet since the controller started, less than a duration ago


class DpuLease(BaseModel):
    """The lease the DPU agent of a dpu-host node renews through the controller (kept in
    the controller's memory: a restarted controller knows no renewal, `unknown`)."""

    chassis: str = Field(description="the DPU (OVN chassis) that renews it")
    state: LeaseState
    duration: float = Field(description="seconds a renewal holds")
    renewed_ago: float | None = Field(
        description="seconds since the last renewal; None: none since the controller started"
    )
    silent_for: float = Field(
        description="seconds since the last renewal, or since the controller started if none"
    )


class DpuRegistration(_Body):
    """`PUT /v1/nodes/{name}/dpu`: "I am chassis `chassis`, my tunnel endpoint is
    `encap_ip`, I serve dpu-host node `name`" (the DPU agent, with its `dpu:<chassis>`
    token). The controller checks it against OVN Southbound before it binds the node."""

    chassis: str = Field(pattern=CHASSIS, description="the DPU's OVN chassis (OVS system-id)")
    encap_ip: IPv4Address = Field(
        description="the DPU's Geneve endpoint (external_ids:ovn-encap-ip), as SB has it",
        json_schema_extra={"pattern": IPV4},
    )
    host_pf_mac: Mac | None = Field(
        default=None,
        description="the host PF's MAC as the DPU reads it (smart_nic/pf/config of its "
        "uplink): the node's gateway router shares it (a unicast MAC; None: not known)",
    )

    _macs = field_validator("host_pf_mac")(_unicast_mac)


class GatewayReport(_Body):
    """`PUT /v1/nodes/{name}/gateway`: a full node's agent reports its gateway MAC, that of
    its external bridge's LOCAL port (breth0, where the node IP lives): the node's gateway
    router shares it."""

    gateway_mac: Mac = Field(description="breth0's MAC (a unicast MAC)")

    _macs = field_validator("gateway_mac")(_unicast_mac)


class NodeGateway(BaseModel):
    """A full node's gateway MAC, as the controller keeps it."""

    node: str
    gateway_mac: str
    changed: bool = Field(description="this report wrote it (else: it was in place)")


class DpuBinding(BaseModel):
    """The binding of a dpu-host node to its DPU's chassis, as the controller keeps it."""

    node: str
    chassis: str
    encap_ip: str
    gateway_mac: str | None = Field(
        default=None, description="the gateway router's MAC the DPU reported (its host PF's)"
    )
    changed: bool = Field(description="this registration wrote the binding (else: it held)")
    recorded_in: str = Field(
        description="where: the Node's k8s.ovn.org/node-chassis-id annotation (kubernetes "
        "mode) or the node's registration in OVN Northbound (standalone)"
    )


class NodeInfo(BaseModel):
    """A registered node and what the controller allocated for it."""

    name: str
    role: NodeRole
    chassis: str
    node_ip: str
    next_hop: str
    gateway_mac: str | None = Field(
        description="the gateway router's MAC; None: not known yet, no gateway router"
    )
    subnet: str = Field(description="the node's pod subnet")
    gateway_ip: str = Field(description="rtos-<node> (.1), the pods' gateway")
    mgmt_ip: str = Field(description="k8s-<node> (.2) in CIDR form")
    mgmt_mac: str
    mgmt_pf_mac: str | None = None
    mgmt_vf_num: int | None = None
    join_ip: str
    cluster_cidr: str
    service_cidr: str
    mtu: int
    ports: int = Field(description="pod ports on the node")
    free_ips: int = Field(description="pod addresses still free in the node subnet")
    dpu_lease: DpuLease | None = Field(
        default=None, description="dpu-host: its DPU's lease; None: full node, or leases off"
    )


class NodeList(BaseModel):
    """`GET /v1/nodes`."""

    items: list[NodeInfo]


class ContainerPort(_Body):
    """A named container port of a pod (what a NetworkPolicy's named ports resolve to)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=PORT_NAME)
    container_port: int = Field(alias="containerPort", ge=1, le=65535)
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class PodMetadata(_Body):
    """A pod's labels and named container ports (what selectors and named ports match)."""

    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=16, description="what service selectors match"
    )
    ports: list[ContainerPort] = Field(
        default_factory=list, max_length=64, description="named container ports (policies)"
    )

    @model_validator(mode="after")
    def _unique_port_names(self) -> PodMetadata:
        names = [p.name for p in self.ports]
        if len(set(names)) != len(names):
            raise ValueError(f"container port names repeat: {names}")
        return self


class PortRequest(PodMetadata):
    """`PUT /v1/ports/{namespace}/{name}`: give a pod its port on `node`."""

    node: NodeName = Field(description="the node the pod runs on (must be the caller's)")
    sandbox: str = Field(pattern=OPAQUE_ID, description="container runtime sandbox id")
    uid: str = Field(pattern=OPAQUE_ID, description="pod uid")
    ifname: str = Field(default=PRIMARY_IFNAME, pattern=IFNAME, description="interface in the pod")
    network: str | None = Field(
        default=None,
        pattern=NETWORK,
        description="CNI network of a secondary attachment; absent: the pod's primary port",
    )
    pci: str | None = Field(default=None, pattern=PCI, description="VF PCI address")
    pf_mac: Mac | None = Field(default=None, description="MAC of the PF the VF belongs to")
    vf_num: int | None = Field(default=None, ge=0, le=4095, description="VF index on that PF")

    _mac = field_validator("pf_mac")(_unicast_mac)

    @model_validator(mode="after")
    def _vf_fields(self) -> PortRequest:
        given = [v is not None for v in (self.pci, self.pf_mac, self.vf_num)]
        if any(given) and not all(given):
            raise ValueError("pci, pf_mac and vf_num go together (all for a VF port, none else)")
        return self

    @property
    def is_vf(self) -> bool:
        """True for an SR-IOV VF port."""
        return self.pf_mac is not None


class Route(BaseModel):
    """A route for the pod (CNI result form); only a primary port has one (the default)."""

    dst: str
    gw: str


class PortInfo(BaseModel):
    """A pod port: what the host needs to configure the interface (CNI result data)."""

    namespace: str
    name: str
    node: str
    uid: str
    sandbox: str
    ifname: str
    network: str | None = Field(default=None, description="None: the pod's primary port")
    pci: str | None = None
    pf_mac: str | None = None
    vf_num: int | None = None
    lsp: str = Field(description="Logical_Switch_Port name")
    mac: str
    ips: list[str] = Field(description="addresses in CIDR form")
    gateways: list[str]
    routes: list[Route]
    mtu: int
    up: bool = Field(description="Logical_Switch_Port.up")
    labels: dict[str, str] = Field(default_factory=dict)


class PortList(BaseModel):
    """`GET /v1/ports`."""

    items: list[PortInfo]


class DeleteResult(BaseModel):
    """Answer of a DELETE (deleting what does not exist succeeds too)."""

    deleted: bool
    detail: str


class PodEventReport(_Body):
    """`POST /v1/ports/{namespace}/{name}/events`: why a node agent cannot attach a pod."""

    node: NodeName = Field(description="the node the pod runs on (must be the caller's)")
    uid: str = Field(pattern=OPAQUE_ID, description="pod uid")
    reason: Literal["NoVirtualFunction", "DPUNotReady"]
    message: str = Field(min_length=1, max_length=1024)


class EventResult(BaseModel):
    """Answer of an event report."""

    recorded: bool = Field(description="written as a Kubernetes Event (Kubernetes mode)")


class ErrorBody(BaseModel):
    """Every error answer: a reason for a person."""

    detail: str


class Health(BaseModel):
    """`/healthz` and `/readyz`."""

    status: str
    nb_connected: bool
    nb_lock: bool
    reconciled: bool
