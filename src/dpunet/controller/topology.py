"""The OVN Northbound objects dpunet owns, as plain desired-state values.

Names follow OVN-Kubernetes (docs/architecture.md section 4). Everything dpunet writes
carries `external_ids:dpunet:owner=dpunet`, a `dpunet:kind` and, when it belongs
to one node, `dpunet:node`; objects without the owner mark are never touched.
A node's registration is recorded on its logical switch (`other_config:subnet`
plus `dpunet:*` external ids), so NB alone is enough to rebuild every allocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from dpunet.contract.api import JOIN_SWITCH, NodeRole
from dpunet.contract.lsp import PodIds, VfPlug, gateway_external_port, lsp_options
from dpunet.controller.config import ControllerConfig
from dpunet.controller.ipam import mac_for_ip, mgmt_interface, router_interface, router_ip

OWNER_KEY = "dpunet:owner"
OWNER = "dpunet"
KIND_KEY = "dpunet:kind"
NODE_KEY = "dpunet:node"

CLUSTER_ROUTER = "ovn_cluster_router"
RTOJ_CLUSTER = f"rtoj-{CLUSTER_ROUTER}"
JTOR_CLUSTER = f"jtor-{CLUSTER_ROUTER}"


class Kind(StrEnum):
    """What an owned object is (`external_ids:dpunet:kind`)."""

    CLUSTER_ROUTER = "cluster-router"
    JOIN_SWITCH = "join-switch"
    NODE_SWITCH = "node-switch"
    EXT_SWITCH = "ext-switch"
    GATEWAY_ROUTER = "gateway-router"
    ROUTER_PORT = "router-port"
    SWITCH_PORT = "switch-port"
    MGMT_PORT = "mgmt-port"
    LOCALNET_PORT = "localnet-port"
    ROUTE = "route"
    NAT = "nat"
    POLICY = "policy"
    POD = "pod"


def rtos(node: str) -> str:
    """Cluster router port facing a node switch."""
    return f"rtos-{node}"


def stor(node: str) -> str:
    """Node switch port facing the cluster router."""
    return f"stor-{node}"


def mgmt_port(node: str) -> str:
    """The node's management port (`ovn-k8s-mp0`)."""
    return f"k8s-{node}"


def gateway_router(node: str) -> str:
    """The node's gateway router."""
    return f"GR_{node}"


def ext_switch(node: str) -> str:
    """The node's external switch (holds the localnet port)."""
    return f"ext_{node}"


def localnet_port(node: str, physnet: str) -> str:
    """The localnet port of `ext_<node>` (two underscores: never a pod's `<ns>_<name>`)."""
    return f"ext_{node}_{physnet}"


def owned(external_ids: Mapping[str, str]) -> bool:
    """True when dpunet owns the object."""
    return external_ids.get(OWNER_KEY) == OWNER


def ids(kind: Kind, node: str | None = None, **extra: str) -> dict[str, str]:
    """Owner external ids of an object."""
    out = {OWNER_KEY: OWNER, KIND_KEY: kind.value}
    if node is not None:
        out[NODE_KEY] = node
    out.update(extra)
    return out


@dataclass(frozen=True)
class NodeRecord:
    """A registered node, as recorded on its logical switch."""

    name: str
    role: NodeRole
    chassis: str
    node_ip: IPv4Interface
    next_hop: IPv4Address
    subnet: IPv4Network
    join_ip: IPv4Address
    gateway_mac: str | None  # None: not known yet, the gateway router is held back
    mgmt_pf_mac: str | None = None
    mgmt_vf_num: int | None = None

    def switch_ids(self) -> dict[str, str]:
        """External ids of the node switch (the registration record)."""
        extra = {
            "dpunet:role": self.role.value,
            "dpunet:chassis": self.chassis,
            "dpunet:node-ip": str(self.node_ip),
            "dpunet:next-hop": str(self.next_hop),
            "dpunet:join-ip": str(self.join_ip),
        }
        if self.gateway_mac is not None:
            extra["dpunet:gateway-mac"] = self.gateway_mac
        if self.mgmt_pf_mac is not None and self.mgmt_vf_num is not None:
            extra["dpunet:mgmt-pf-mac"] = self.mgmt_pf_mac
            extra["dpunet:mgmt-vf-num"] = str(self.mgmt_vf_num)
        return ids(Kind.NODE_SWITCH, self.name, **extra)

    @classmethod
    def from_switch(
        cls, name: str, other_config: Mapping[str, str], external_ids: Mapping[str, str]
    ) -> NodeRecord:
        """Parse a node switch; ValueError (or KeyError) when the record is incomplete."""
        if external_ids.get(NODE_KEY) != name:
            raise ValueError(f"switch {name} records node {external_ids.get(NODE_KEY)!r}")
        pf_mac = external_ids.get("dpunet:mgmt-pf-mac")
        vf = external_ids.get("dpunet:mgmt-vf-num")
        return cls(
            name=name,
            role=NodeRole(external_ids["dpunet:role"]),
            chassis=external_ids["dpunet:chassis"],
            node_ip=IPv4Interface(external_ids["dpunet:node-ip"]),
            next_hop=IPv4Address(external_ids["dpunet:next-hop"]),
            subnet=IPv4Network(other_config["subnet"]),
            join_ip=IPv4Address(external_ids["dpunet:join-ip"]),
            gateway_mac=external_ids.get("dpunet:gateway-mac"),
            mgmt_pf_mac=pf_mac,
            mgmt_vf_num=int(vf) if vf is not None else None,
        )


# --------------------------------------------------------------- desired state
@dataclass(frozen=True)
class Lsp:
    """A Logical_Switch_Port."""

    name: str
    external_ids: Mapping[str, str]
    type: str = ""
    addresses: tuple[str, ...] = ()
    port_security: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Ls:
    """A Logical_Switch and the ports of it that this desired state manages."""

    name: str
    external_ids: Mapping[str, str]
    ports: tuple[Lsp, ...] = ()
    other_config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lrp:
    """A Logical_Router_Port."""

    name: str
    mac: str
    networks: tuple[str, ...]
    external_ids: Mapping[str, str]


@dataclass(frozen=True)
class Route:
    """A Logical_Router_Static_Route (identified by prefix + policy)."""

    ip_prefix: str
    nexthop: str
    external_ids: Mapping[str, str]
    policy: str = "dst-ip"
    output_port: str | None = None


@dataclass(frozen=True)
class Nat:
    """A NAT rule (identified by type + logical_ip)."""

    type: str
    external_ip: str
    logical_ip: str
    external_ids: Mapping[str, str]


@dataclass(frozen=True)
class Policy:
    """A Logical_Router_Policy (identified by priority + match)."""

    priority: int
    match: str
    action: str
    external_ids: Mapping[str, str]
    nexthops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lr:
    """A Logical_Router and the children of it that this desired state manages."""

    name: str
    external_ids: Mapping[str, str]
    ports: tuple[Lrp, ...] = ()
    routes: tuple[Route, ...] = ()
    nats: tuple[Nat, ...] = ()
    policies: tuple[Policy, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Desired:
    """Objects one writer (the cluster, or one node) manages.

    Children of a listed parent that are owned, carry the same `dpunet:node` as
    `scope` (none for the cluster) and are not listed are removed; pod ports are
    never pruned here.
    """

    scope: str | None
    switches: tuple[Ls, ...] = ()
    routers: tuple[Lr, ...] = ()


def _join_interface(cfg: ControllerConfig, ip: IPv4Address) -> str:
    return f"{ip}/{cfg.join_subnet.prefixlen}"


def cluster_join_ip(cfg: ControllerConfig) -> IPv4Address:
    """`rtoj-ovn_cluster_router`: the first address of the join subnet."""
    return cfg.join_subnet.network_address + 1


def _cluster_router(
    ports: tuple[Lrp, ...], routes: tuple[Route, ...] = (), policies: tuple[Policy, ...] = ()
) -> Lr:
    return Lr(
        CLUSTER_ROUTER, ids(Kind.CLUSTER_ROUTER), ports=ports, routes=routes, policies=policies
    )


NODE_IP_POLICY_PRIORITY = 1004


def node_ip_policy(node: NodeRecord) -> Policy:
    """On `ovn_cluster_router`: a pod's packet to its own node's IP, which `GR_<node>`
    shares with the host, is rerouted to the management port, so the host answers it."""
    return Policy(
        NODE_IP_POLICY_PRIORITY,
        f'inport == "{rtos(node.name)}" && ip4.dst == {node.node_ip.ip} /* {node.name} */',
        "reroute",
        ids(Kind.POLICY, node.name),
        nexthops=(str(mgmt_interface(node.subnet).ip),),
    )


def _join_switch(ports: tuple[Lsp, ...]) -> Ls:
    return Ls(JOIN_SWITCH, ids(Kind.JOIN_SWITCH), ports=ports)


def _router_peer(name: str, router_port: str, node: str | None) -> Lsp:
    return Lsp(
        name,
        ids(Kind.SWITCH_PORT, node),
        type="router",
        addresses=("router",),
        options={"router-port": router_port},
    )


def cluster_desired(cfg: ControllerConfig) -> Desired:
    """`ovn_cluster_router` and the `join` switch."""
    join_ip = cluster_join_ip(cfg)
    rtoj = Lrp(
        RTOJ_CLUSTER, mac_for_ip(join_ip), (_join_interface(cfg, join_ip),), ids(Kind.ROUTER_PORT)
    )
    return Desired(
        scope=None,
        switches=(_join_switch((_router_peer(JTOR_CLUSTER, RTOJ_CLUSTER, None),)),),
        routers=(_cluster_router((rtoj,)),),
    )


def mgmt_lsp(cfg: ControllerConfig, node: NodeRecord) -> Lsp:
    """`k8s-<node>` with `.2`; on a dpu-host node plugged as its management VF."""
    iface = mgmt_interface(node.subnet)
    plug = None
    if node.role is NodeRole.DPU_HOST and node.mgmt_pf_mac is not None:
        assert node.mgmt_vf_num is not None
        plug = VfPlug(node.mgmt_pf_mac, node.mgmt_vf_num, cfg.mtu)
    return Lsp(
        mgmt_port(node.name),
        ids(Kind.MGMT_PORT, node.name),
        addresses=(f"{mac_for_ip(iface.ip)} {iface.ip}",),
        options=lsp_options(node.chassis, plug, cfg.plug_mode),
    )


def node_desired(cfg: ControllerConfig, node: NodeRecord) -> Desired:
    """Everything one node needs: its switch, router port, management port and gateway.

    The gateway (`GR_<node>`, its join port, `ext_<node>`, the pods' source route to it)
    waits until the node's gateway MAC is known: the router shares the node's IP, and with
    any other MAC it would answer ARP for that IP in the host's place (docs/architecture.md
    section 4). Until then the node's pods reach each other, other nodes' pods and their
    own node; traffic for the outside has no route yet."""
    n = node.name
    gw = router_interface(node.subnet)
    gr = gateway_router(n)
    rtoj_gr, rtoe_gr = f"rtoj-{gr}", gateway_external_port(n)
    held_back = node.gateway_mac is None
    cluster = _cluster_router(
        ports=(Lrp(rtos(n), mac_for_ip(gw.ip), (str(gw),), ids(Kind.ROUTER_PORT, n)),),
        routes=()
        if held_back
        else (Route(str(node.subnet), str(node.join_ip), ids(Kind.ROUTE, n), policy="src-ip"),),
        policies=(node_ip_policy(node),),
    )
    join = _join_switch(() if held_back else (_router_peer(f"jtor-{gr}", rtoj_gr, n),))
    node_switch = Ls(
        n,
        node.switch_ids(),
        ports=(_router_peer(stor(n), rtos(n), n), mgmt_lsp(cfg, node)),
        other_config={
            "subnet": str(node.subnet),
            "exclude_ips": f"{gw.ip}..{mgmt_interface(node.subnet).ip}",
        },
    )
    if node.gateway_mac is None:
        return Desired(scope=n, switches=(join, node_switch), routers=(cluster,))
    gateway = Lr(
        gr,
        ids(Kind.GATEWAY_ROUTER, n),
        # load-balanced traffic leaves with the router's own address, so replies of
        # NodePort backends on other nodes come back here to be un-DNATed
        options={"chassis": node.chassis, "lb_force_snat_ip": "router_ip"},
        ports=(
            Lrp(
                rtoj_gr,
                mac_for_ip(node.join_ip),
                (_join_interface(cfg, node.join_ip),),
                ids(Kind.ROUTER_PORT, n),
            ),
            Lrp(rtoe_gr, node.gateway_mac, (str(node.node_ip),), ids(Kind.ROUTER_PORT, n)),
        ),
        routes=(
            Route(str(cfg.cluster_cidr), str(cluster_join_ip(cfg)), ids(Kind.ROUTE, n)),
            Route("0.0.0.0/0", str(node.next_hop), ids(Kind.ROUTE, n), output_port=rtoe_gr),
        ),
        nats=(Nat("snat", str(node.node_ip.ip), str(node.subnet), ids(Kind.NAT, n)),),
    )
    ext = Ls(
        ext_switch(n),
        ids(Kind.EXT_SWITCH, n),
        ports=(
            _router_peer(f"etor-{gr}", rtoe_gr, n),
            Lsp(
                localnet_port(n, cfg.physnet),
                ids(Kind.LOCALNET_PORT, n),
                type="localnet",
                addresses=("unknown",),
                options={"network_name": cfg.physnet},
            ),
        ),
    )
    return Desired(scope=n, switches=(join, node_switch, ext), routers=(cluster, gateway))


# --------------------------------------------------------------------- pod ports
@dataclass(frozen=True)
class PodPort(PodIds):
    """One pod port as dpunet records it: its attachment's ids, node and address."""

    node: str = field(kw_only=True)
    ip: IPv4Address = field(kw_only=True)

    @property
    def name(self) -> str:
        """The LSP name."""
        return self.lsp_name

    @property
    def mac(self) -> str:
        """The pod MAC, derived from its address."""
        return mac_for_ip(self.ip)

    @property
    def is_vf(self) -> bool:
        """True for an SR-IOV VF port (dpu-host node)."""
        return self.pf_mac is not None

    def external_ids(self) -> dict[str, str]:
        """The LSP's external ids: owner marks and the attachment's ids."""
        return ids(Kind.POD, self.node, **super().external_ids())

    @classmethod
    def from_lsp(cls, addresses: list[str], external_ids: Mapping[str, str]) -> PodPort:
        """Parse an owned pod LSP; ValueError/KeyError when it is malformed."""
        if len(addresses) != 1:
            raise ValueError(f"expected one address entry, found {addresses}")
        mac, ip = addresses[0].split()
        attachment = PodIds.parse(external_ids)
        port = cls(**vars(attachment), node=external_ids[NODE_KEY], ip=IPv4Address(ip))
        if mac != port.mac:
            raise ValueError(f"MAC {mac} does not match address {ip}")
        return port


def pod_lsp(cfg: ControllerConfig, node: NodeRecord, port: PodPort) -> Lsp:
    """The LSP of a pod exactly as docs/architecture.md section 3 describes it."""
    address = f"{port.mac} {port.ip}"
    plug = None
    if port.pf_mac is not None and port.vf_num is not None:
        plug = VfPlug(port.pf_mac, port.vf_num, cfg.mtu)
    return Lsp(
        port.name,
        port.external_ids(),
        addresses=(address,),
        port_security=(address,),
        options=lsp_options(node.chassis, plug, cfg.plug_mode, iface_id_ver=port.uid),
    )


def pod_gateway(node: NodeRecord) -> IPv4Address:
    """The pods' default gateway on a node."""
    return router_ip(node.subnet)
