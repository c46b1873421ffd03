"""NetworkPolicy semantics, written from the Kubernetes documentation and the
networking.k8s.io/v1 API reference (not from dpunet's code): the oracle the compiled
ACLs are checked against. It reads policies as plain dicts, the API's field names.

- A pod is isolated for ingress (egress) when some policy of its namespace selects it
  (`podSelector`, empty = every pod) and has Ingress (Egress) in its policyTypes;
  policyTypes defaults to Ingress, plus Egress when the policy has egress rules.
- An isolated pod accepts (sends) only what the union of those policies' rules allows.
- A rule allows traffic from (to) any of its peers (none listed: any peer) on any of its
  ports (none listed: every port).
- Peers: `podSelector` alone = pods of the policy's namespace; `namespaceSelector` alone =
  every pod of the selected namespaces; both = the selected pods of the selected
  namespaces; `ipBlock` = addresses in `cidr` but in none of `except`.
- Ports: protocol (default TCP), and `port` absent = every port, a number (up to
  `endPort` when given), or a name resolved on the destination pod's container ports.
- Traffic to and from the node a pod runs on is always allowed; replies of allowed
  connections pass (the oracle judges connections, so replies are not asked).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Policy = dict[str, Any]  # {"namespace", "name", "spec"}


@dataclass(frozen=True)
class Endpoint:
    """A pod, or an address outside the pod network (namespace None)."""

    ip: str
    namespace: str | None = None
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    container_ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, number)
    node_ip: str | None = None  # the management address of the pod's node


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """matchLabels and matchExpressions ANDed; an empty selector matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        has = key in labels
        ok = {
            "In": has and labels.get(key) in values,
            "NotIn": not has or labels.get(key) not in values,
            "Exists": has,
            "DoesNotExist": not has,
        }[op]
        if not ok:
            return False
    return True


def policy_types(spec: Mapping[str, Any]) -> set[str]:
    """policyTypes as the API server defaults it."""
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())


def _peer_matches(
    peer: Mapping[str, Any],
    ep: Endpoint,
    policy_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    if "ipBlock" in peer:
        addr = ipaddress.ip_address(ep.ip)
        block = peer["ipBlock"]
        return addr in ipaddress.ip_network(block["cidr"]) and not any(
            addr in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if ep.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not label_selector_matches(
            peer["namespaceSelector"], namespace_labels.get(ep.namespace, {})
        ):
            return False
    elif ep.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or label_selector_matches(peer["podSelector"], ep.labels)


def _port_matches(port: Mapping[str, Any], dst: Endpoint, protocol: str, number: int) -> bool:
    if port.get("protocol", "TCP") != protocol:
        return False
    want = port.get("port")
    if want is None:
        return True
    if isinstance(want, str):
        return any(n == want and p == protocol and c == number for n, p, c in dst.container_ports)
    return want <= number <= port.get("endPort", want)


def _rule_allows(
    rule: Mapping[str, Any],
    peers_key: str,
    peer: Endpoint,
    dst: Endpoint,
    protocol: str,
    number: int,
    policy_namespace: str,
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    peers = rule.get(peers_key) or []
    ports = rule.get("ports") or []
    return (
        not peers or any(_peer_matches(p, peer, policy_namespace, namespace_labels) for p in peers)
    ) and (not ports or any(_port_matches(p, dst, protocol, number) for p in ports))


def _direction_allows(
    direction: str,
    pod: Endpoint,
    peer: Endpoint,
    dst: Endpoint,
    protocol: str,
    number: int,
    policies: list[Policy],
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    applying = [
        p
        for p in policies
        if p["namespace"] == pod.namespace
        and label_selector_matches(p["spec"].get("podSelector") or {}, pod.labels)
        and direction in policy_types(p["spec"])
    ]
    if not applying:
        return True  # not isolated in this direction
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        _rule_allows(rule, peers_key, peer, dst, protocol, number, p["namespace"], namespace_labels)
        for p in applying
        for rule in p["spec"].get(key) or []
    )


def connection_allowed(
    src: Endpoint,
    dst: Endpoint,
    protocol: str,
    number: int,
    policies: list[Policy],
    namespace_labels: Mapping[str, Mapping[str, str]],
) -> bool:
    """Whether a new connection from `src` to `dst` on protocol/port may be opened."""
    egress_ok = (
        src.namespace is None
        or dst.ip == src.node_ip
        or _direction_allows("Egress", src, dst, dst, protocol, number, policies, namespace_labels)
    )
    ingress_ok = (
        dst.namespace is None
        or src.ip == dst.node_ip
        or _direction_allows("Ingress", dst, src, dst, protocol, number, policies, namespace_labels)
    )
    return egress_ok and ingress_ok
