"""NetworkPolicy compiled to OVN objects, in OVN-Kubernetes' style (pure: no OVSDB here).

For the pods, namespaces and policies of a cluster, `desired` gives every Port_Group,
Address_Set and ACL dpunet wants in Northbound:

- a port group per policy (the pods its `podSelector` selects), holding one
  `allow-related` ACL per rule at priority 1001 (`DefaultAllowPriority`): ingress rules
  `to-lport` matching `outport == @<pg>`, egress rules `from-lport` matching
  `inport == @<pg>` with `options:apply-after-lb=true` (a Service's backend is what the
  rule sees);
- a default-deny port group per namespace and direction (`<ns>_ingressDefaultDeny`,
  `<ns>_egressDefaultDeny`: the pods isolated in that direction), with a `drop` ACL at
  1000 (`DefaultDenyPriority`) and an `allow` for ARP at 1001;
- an address set per peer selector (namespace scope + pod selector), shared by every rule
  that names the same one;
- per node switch, while any policy exists: `allow-related` from and to the node's
  management address and from the Service hairpin address, so kubelet probes and a pod
  reaching itself through a Service pass whatever the policies say.

Port group and address set names are OVN-Kubernetes' `HashForOVN` form (`a` + the decimal
64-bit FNV-1a of a readable id); the readable id is in `external_ids`. Replies of an allowed
connection pass because the allows are `allow-related` (OVN commits them to conntrack).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from dpunet.contract.policy import (
    ACL_KEY,
    POLICY_KEY,
    IPBlock,
    LabelSelector,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicySpec,
    Operator,
    PolicyType,
    Protocol,
)
from dpunet.controller.topology import KIND_KEY, NODE_KEY, OWNER, OWNER_KEY

DENY_PRIORITY = 1000  # OVN-Kubernetes' DefaultDenyPriority
ALLOW_PRIORITY = 1001  # OVN-Kubernetes' DefaultAllowPriority
HAIRPIN_IP = "169.254.169.5"  # a Service's hairpin SNAT address (service_lbs.HAIRPIN_SNAT_IP)
ARP_MATCH = "(arp || nd)"
AFTER_LB = {"apply-after-lb": "true"}

SPEC_KEY = "dpunet:policy-spec"  # the policy's spec (JSON) on its port group
SELECTOR_KEY = "dpunet:selector"  # an address set's peer selector (JSON)
OVNK_NAME = "k8s.ovn.org/name"
OVNK_OWNER_TYPE = "k8s.ovn.org/owner-type"


class Kind:
    """`dpunet:kind` of the policy objects."""

    POLICY = "netpol"  # a policy's port group and its ACLs
    DEFAULT_DENY = "netpol-default-deny"  # a namespace's default-deny port group and ACLs
    SELECTOR = "netpol-selector"  # a peer selector's address set
    NODE = "netpol-node"  # a node switch's allow ACLs

    ALL = frozenset({POLICY, DEFAULT_DENY, SELECTOR, NODE})


def ovn_hash(text: str) -> str:
    """OVN-Kubernetes' HashForOVN: `a` + the decimal FNV-1a 64 of `text` (a valid port
    group / address set name)."""
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"a{h}"


@dataclass(frozen=True)
class PolicyPod:
    """A pod's primary port as policies see it."""

    namespace: str
    name: str
    lsp: str
    ip: IPv4Address
    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, Protocol, int], ...] = ()  # (name, protocol, number)

    def named_port(self, name: str, protocol: Protocol) -> int | None:
        """The number of the container port called `name` with `protocol`."""
        return next((n for p, proto, n in self.ports if p == name and proto == protocol), None)


@dataclass(frozen=True)
class Acl:
    """One ACL; `key` is its identity among dpunet's."""

    key: str
    direction: str  # "to-lport" | "from-lport"
    priority: int
    match: str
    action: str
    external_ids: Mapping[str, str]
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PortGroup:
    """A port group: its member LSPs and its ACLs."""

    name: str
    ports: frozenset[str]
    acls: tuple[Acl, ...]
    external_ids: Mapping[str, str]


@dataclass(frozen=True)
class AddressSet:
    """An address set of pod addresses."""

    name: str
    addresses: frozenset[str]
    external_ids: Mapping[str, str]


@dataclass
class PolicyObjects:
    """Everything the policies call for."""

    port_groups: dict[str, PortGroup] = field(default_factory=dict)
    address_sets: dict[str, AddressSet] = field(default_factory=dict)
    node_acls: dict[str, tuple[Acl, ...]] = field(default_factory=dict)  # by node switch


def policy_key(namespace: str, name: str) -> str:
    """`<ns>/<name>`."""
    return f"{namespace}/{name}"


def policy_port_group(key: str) -> str:
    """The port group of policy `key`."""
    return ovn_hash(f"dpunet-netpol:{key}")


def default_deny_port_group(namespace: str, direction: PolicyType) -> str:
    """The default-deny port group of a namespace and direction."""
    return ovn_hash(f"{namespace}_{direction.value.lower()}DefaultDeny")


# ------------------------------------------------------------------ selectors
def selects(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy every matchLabels pair and every matchExpression."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator is Operator.IN and not (present and labels[req.key] in req.values):
            return False
        if req.operator is Operator.NOT_IN and present and labels[req.key] in req.values:
            return False
        if req.operator is Operator.EXISTS and not present:
            return False
        if req.operator is Operator.DOES_NOT_EXIST and present:
            return False
    return True


def _selector_json(selector: LabelSelector | None) -> object:
    if selector is None:
        return None
    return selector.model_dump(mode="json", by_alias=True)


def peer_scope(namespace: str, peer: NetworkPolicyPeer) -> str:
    """The canonical id of a selector peer of a policy in `namespace`: its namespace scope
    (the policy's namespace, or a namespace selector) and its pod selector."""
    scope: dict[str, object] = (
        {"namespace": namespace}
        if peer.namespace_selector is None
        else {"namespaceSelector": _selector_json(peer.namespace_selector)}
    )
    scope["podSelector"] = _selector_json(peer.pod_selector)
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def peer_pods(
    namespace: str,
    peer: NetworkPolicyPeer,
    pods: Iterable[PolicyPod],
    namespaces: Mapping[str, Mapping[str, str]],
) -> list[PolicyPod]:
    """The pods a selector peer of a policy in `namespace` selects."""
    out = []
    for pod in pods:
        if peer.namespace_selector is None:
            if pod.namespace != namespace:
                continue
        elif not selects(peer.namespace_selector, namespaces.get(pod.namespace, {})):
            continue
        if peer.pod_selector is None or selects(peer.pod_selector, pod.labels):
            out.append(pod)
    return out


# --------------------------------------------------------------------- matches
def _addresses(items: Iterable[str]) -> str:
    listed = sorted(items)
    return listed[0] if len(listed) == 1 else "{" + ", ".join(listed) + "}"


def _block(field_: str, block: IPBlock) -> str:
    if not block.except_:
        return f"{field_} == {block.cidr}"
    excluded = _addresses(str(n) for n in block.except_)
    return f"({field_} == {block.cidr} && {field_} != {excluded})"


def _port_terms(
    ports: list[NetworkPolicyPort], targets: list[PolicyPod], dst_field: str
) -> list[str]:
    """One term per policy port (named ports: one per number the targets resolve the
    name to, restricted to those targets' addresses); [] when nothing can match."""
    terms = []
    for port in ports:
        proto = port.protocol.value.lower()
        if port.port is None:
            terms.append(proto)
        elif isinstance(port.port, str):
            by_number: dict[int, list[str]] = {}
            for pod in targets:
                number = pod.named_port(port.port, port.protocol)
                if number is not None:
                    by_number.setdefault(number, []).append(str(pod.ip))
            for number, ips in sorted(by_number.items()):
                terms.append(
                    f"({proto} && {proto}.dst == {number} && {dst_field} == {_addresses(ips)})"
                )
        elif port.end_port is not None and port.end_port != port.port:
            terms.append(
                f"({proto} && {proto}.dst >= {port.port} && {proto}.dst <= {port.end_port})"
            )
        else:
            terms.append(f"({proto} && {proto}.dst == {port.port})")
    return terms


def _either(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"


@dataclass
class _Compiler:
    pods: list[PolicyPod]
    namespaces: Mapping[str, Mapping[str, str]]
    out: PolicyObjects = field(default_factory=PolicyObjects)

    def peer_set(self, namespace: str, peer: NetworkPolicyPeer) -> str:
        """The address set of a selector peer (made once per distinct selector)."""
        scope = peer_scope(namespace, peer)
        name = ovn_hash(f"dpunet-selector:{scope}")
        if name not in self.out.address_sets:
            members = peer_pods(namespace, peer, self.pods, self.namespaces)
            self.out.address_sets[name] = AddressSet(
                name,
                frozenset(str(p.ip) for p in members),
                {
                    OWNER_KEY: OWNER,
                    KIND_KEY: Kind.SELECTOR,
                    SELECTOR_KEY: scope,
                    OVNK_OWNER_TYPE: "PodSelector",
                },
            )
        return name

    def peers_term(self, namespace: str, peers: list[NetworkPolicyPeer], field_: str) -> str:
        sets = sorted({"$" + self.peer_set(namespace, p) for p in peers if p.ip_block is None})
        terms = [f"{field_} == {_addresses(sets)}"] if sets else []
        terms += [_block(field_, p.ip_block) for p in peers if p.ip_block is not None]
        return _either(terms)

    def policy(
        self, key: str, spec: NetworkPolicySpec, stored: str, selected: list[PolicyPod]
    ) -> PortGroup:
        namespace = key.partition("/")[0]
        name = policy_port_group(key)
        ids = {OWNER_KEY: OWNER, KIND_KEY: Kind.POLICY, POLICY_KEY: key}
        types = spec.types()
        acls = []
        rules: list[tuple[PolicyType, int, list[NetworkPolicyPeer], list[NetworkPolicyPort]]] = []
        if PolicyType.INGRESS in types:
            rules += [(PolicyType.INGRESS, i, r.from_, r.ports) for i, r in enumerate(spec.ingress)]
        if PolicyType.EGRESS in types:
            rules += [(PolicyType.EGRESS, i, r.to, r.ports) for i, r in enumerate(spec.egress)]
        for direction, index, peers, ports in rules:
            ingress = direction is PolicyType.INGRESS
            parts = [f"{'outport' if ingress else 'inport'} == @{name}"]
            field_ = "ip4.src" if ingress else "ip4.dst"
            if peers:
                parts.append(self.peers_term(namespace, peers, field_))
            if ports:
                targets = selected if ingress else self.pods
                terms = _port_terms(ports, targets, "ip4.dst")
                if not terms:
                    continue  # only named ports no pod has: the rule allows nothing
                parts.append(_either(terms))
            acls.append(
                Acl(
                    key=f"{key}:{direction.value}:{index}",
                    direction="to-lport" if ingress else "from-lport",
                    priority=ALLOW_PRIORITY,
                    match=" && ".join(parts),
                    action="allow-related",
                    external_ids=ids | {ACL_KEY: f"{key}:{direction.value}:{index}"},
                    options={} if ingress else AFTER_LB,
                )
            )
        return PortGroup(
            name,
            frozenset(p.lsp for p in selected),
            tuple(acls),
            ids
            | {
                SPEC_KEY: stored,
                OVNK_NAME: key.replace("/", ":"),
                OVNK_OWNER_TYPE: "NetworkPolicy",
            },
        )


def default_deny(namespace: str, direction: PolicyType, members: Iterable[str]) -> PortGroup:
    """A namespace's default-deny port group for `direction` with its drop and ARP ACLs."""
    name = default_deny_port_group(namespace, direction)
    ingress = direction is PolicyType.INGRESS
    port = f"{'outport' if ingress else 'inport'} == @{name}"
    ident = f"{namespace}:{direction.value}DefaultDeny"
    ids = {OWNER_KEY: OWNER, KIND_KEY: Kind.DEFAULT_DENY, OVNK_NAME: ident}
    options = {} if ingress else AFTER_LB
    where = "to-lport" if ingress else "from-lport"
    return PortGroup(
        name,
        frozenset(members),
        (
            Acl(
                f"{ident}:deny",
                where,
                DENY_PRIORITY,
                port,
                "drop",
                ids | {ACL_KEY: f"{ident}:deny"},
                options,
            ),
            Acl(
                f"{ident}:arp",
                where,
                ALLOW_PRIORITY,
                f"{port} && {ARP_MATCH}",
                "allow",
                ids | {ACL_KEY: f"{ident}:arp"},
                options,
            ),
        ),
        ids | {OVNK_OWNER_TYPE: "Namespace"},
    )


def node_acls(node: str, mgmt_ip: IPv4Address) -> tuple[Acl, ...]:
    """A node switch's allows: its management address both ways, the hairpin address in."""
    ids = {OWNER_KEY: OWNER, KIND_KEY: Kind.NODE, NODE_KEY: node}
    return tuple(
        Acl(key, where, ALLOW_PRIORITY, match, "allow-related", ids | {ACL_KEY: key}, options)
        for key, where, match, options in (
            (f"node:{node}:from-node", "to-lport", f"ip4.src == {mgmt_ip}", {}),
            (f"node:{node}:to-node", "from-lport", f"ip4.dst == {mgmt_ip}", AFTER_LB),
            (f"node:{node}:hairpin", "to-lport", f"ip4.src == {HAIRPIN_IP}", {}),
        )
    )


def desired(
    pods: Iterable[PolicyPod],
    namespaces: Mapping[str, Mapping[str, str]],
    policies: Mapping[str, tuple[NetworkPolicySpec, str]],
    nodes: Mapping[str, IPv4Address],
) -> PolicyObjects:
    """Every object the policies (key -> (spec, stored spec text)) call for, given the
    pods' primary ports, the namespaces' labels and the nodes' management addresses."""
    compiler = _Compiler(list(pods), namespaces)
    isolated: dict[tuple[str, PolicyType], set[str]] = {}
    for key, (spec, stored) in sorted(policies.items()):
        namespace = key.partition("/")[0]
        selected = [
            p
            for p in compiler.pods
            if p.namespace == namespace and selects(spec.pod_selector, p.labels)
        ]
        group = compiler.policy(key, spec, stored, selected)
        compiler.out.port_groups[group.name] = group
        for direction in spec.types():
            isolated.setdefault((namespace, direction), set()).update(group.ports)
    for (namespace, direction), members in sorted(isolated.items()):
        group = default_deny(namespace, direction, members)
        compiler.out.port_groups[group.name] = group
    if policies:
        compiler.out.node_acls = {node: node_acls(node, ip) for node, ip in sorted(nodes.items())}
    return compiler.out
