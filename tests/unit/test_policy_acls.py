"""NetworkPolicy compiled to OVN objects, checked against the oracle written from the API
reference (policy_oracle.py) by evaluating the compiled ACLs (ovn_acl_eval.py) for every
(source, destination, protocol, port) of a small cluster."""

from __future__ import annotations

import itertools
import json
from ipaddress import IPv4Address
from typing import Any

import pytest
from ovn_acl_eval import EvalAcl, Packet, allowed, matches
from pydantic import ValidationError

from dpunet.contract.policy import (
    LabelSelector,
    NetworkPolicy,
    NetworkPolicySpec,
    PolicyType,
    Protocol,
)
from dpunet.controller.policy_acls import (
    ALLOW_PRIORITY,
    DENY_PRIORITY,
    PolicyObjects,
    PolicyPod,
    default_deny_port_group,
    desired,
    ovn_hash,
    policy_port_group,
    selects,
)
from policy_oracle import Endpoint, connection_allowed, label_selector_matches

NAMESPACES = {"a": {"team": "a", "env": "prod"}, "b": {"team": "b", "env": "prod"}, "c": {}}
MGMT = {"host1": "198.18.1.2", "cp": "198.18.0.2"}
EXTERNAL = ["192.0.2.1", "192.0.2.9", "203.0.113.7"]
# (namespace, name, ip, node, labels, container ports)
PODS: list[tuple[str, str, str, str, dict[str, str], tuple[tuple[str, str, int], ...]]] = [
    ("a", "web", "198.18.1.10", "host1", {"app": "web", "tier": "front"},
     (("http", "TCP", 8080), ("dns", "UDP", 53))),
    ("a", "db", "198.18.0.11", "cp", {"app": "db"}, (("sql", "TCP", 5432),)),
    ("a", "tool", "198.18.1.12", "host1", {}, ()),
    ("b", "web", "198.18.0.13", "cp", {"app": "web"}, (("http", "TCP", 9090),)),
    ("b", "cli", "198.18.1.14", "host1", {"app": "cli", "tier": "back"}, ()),
    ("c", "x", "198.18.0.15", "cp", {"app": "web"}, (("http", "TCP", 8080),)),
]  # fmt: skip
PORTS = [("TCP", 80), ("TCP", 5432), ("TCP", 8080), ("TCP", 9090), ("TCP", 7005),
         ("UDP", 53), ("UDP", 80), ("SCTP", 80)]  # fmt: skip

POLICIES: list[dict[str, Any]] = [
    # default deny ingress in a
    {"namespace": "a", "name": "deny-in", "spec": {"podSelector": {}}},
    # named port http from pods of a with tier=front
    {"namespace": "a", "name": "web-http", "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "front"}}}],
                     "ports": [{"port": "http"}, {"protocol": "UDP", "port": "dns"}]}]}},
    # namespaceSelector AND podSelector, port range
    {"namespace": "a", "name": "db-from-b", "spec": {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                              "values": ["db", "cache"]}]},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                               "podSelector": {"matchExpressions": [
                                   {"key": "tier", "operator": "Exists"}]}}],
                     "ports": [{"port": 5000, "endPort": 5500}]}]}},
    # namespaceSelector alone, everything
    {"namespace": "b", "name": "from-prod", "spec": {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn",
                                              "values": ["cli"]}]},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}},
    # egress: only to ipBlock with except, DNS, and pods of namespace a
    {"namespace": "b", "name": "cli-out", "spec": {
        "podSelector": {"matchLabels": {"app": "cli"}},
        "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}]},
                   {"ports": [{"protocol": "UDP", "port": 53}]},
                   {"to": [{"namespaceSelector": {"matchExpressions": [
                       {"key": "team", "operator": "DoesNotExist"}]}}],
                    "ports": [{"port": "http"}]}]}},
    # default deny both ways in c, ingress from anywhere in 198.18.0.0/16 on SCTP
    {"namespace": "c", "name": "locked", "spec": {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "198.18.0.0/16"}}],
                     "ports": [{"protocol": "SCTP"}]}]}},
]  # fmt: skip


def _endpoints() -> list[Endpoint]:
    pods = [
        Endpoint(ip, ns, name, labels, ports, MGMT[node])
        for ns, name, ip, node, labels, ports in PODS
    ]
    return pods + [Endpoint(ip) for ip in [*EXTERNAL, *MGMT.values()]]


def _compile(policies: list[dict[str, Any]]) -> PolicyObjects:
    pods = [
        PolicyPod(ns, name, f"{ns}_{name}", IPv4Address(ip), node, labels,
                  tuple((n, Protocol(p), c) for n, p, c in ports))
        for ns, name, ip, node, labels, ports in PODS
    ]  # fmt: skip
    specs = {
        f"{p['namespace']}/{p['name']}": (
            NetworkPolicySpec.model_validate(p["spec"]),
            json.dumps(p["spec"]),
        )
        for p in policies
    }
    nodes = {n: IPv4Address(ip) for n, ip in MGMT.items()}
    return desired(pods, NAMESPACES, specs, nodes)


def _lsp(ep: Endpoint) -> str:
    if ep.namespace is not None:
        return f"{ep.namespace}_{ep.name}"
    node = next((n for n, ip in MGMT.items() if ip == ep.ip), None)
    return f"k8s-{node}" if node else "stor-outside"


def _evaluate(objects: PolicyObjects, src: Endpoint, dst: Endpoint, proto: str, port: int) -> bool:
    groups = {g.name: g.ports for g in objects.port_groups.values()}
    sets = {s.name: s.addresses for s in objects.address_sets.values()}
    acls = [
        EvalAcl(g.ports, a.direction, a.priority, a.match, a.action)
        for g in objects.port_groups.values()
        for a in g.acls
    ]
    for node, node_acls in objects.node_acls.items():
        on_switch = frozenset(
            [f"{ns}_{name}" for ns, name, _, n, _, _ in PODS if n == node] + [f"k8s-{node}"]
        )
        acls += [EvalAcl(on_switch, a.direction, a.priority, a.match, a.action) for a in node_acls]
    pkt = Packet(_lsp(src), _lsp(dst), src.ip, dst.ip, proto.lower(), port)
    return allowed(pkt, acls, groups, sets)


def _disagreements(policies: list[dict[str, Any]]) -> list[str]:
    objects = _compile(policies)
    out = []
    endpoints = _endpoints()
    for src, dst in itertools.permutations(endpoints, 2):
        if src.namespace is None and dst.namespace is None:
            continue
        for proto, port in PORTS:
            want = connection_allowed(src, dst, proto, port, policies, NAMESPACES)
            got = _evaluate(objects, src, dst, proto, port)
            if want != got:
                out.append(f"{src.name or src.ip} -> {dst.name or dst.ip} {proto}/{port}: "
                           f"oracle {want}, ACLs {got}")  # fmt: skip
    return out


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p["name"])
def test_each_policy_alone_matches_the_oracle(policy: dict[str, Any]) -> None:
    assert _disagreements([policy]) == []


def test_all_policies_together_match_the_oracle() -> None:
    assert _disagreements(POLICIES) == []


def test_the_oracle_isolates_something_in_the_truth_table() -> None:
    """The table exercises both verdicts (a test that can fail)."""
    verdicts = {
        connection_allowed(s, d, p, n, POLICIES, NAMESPACES)
        for s, d in itertools.permutations(_endpoints(), 2)
        for p, n in PORTS
    }
    assert verdicts == {True, False}


def test_no_policy_no_objects() -> None:
    objects = _compile([])
    assert (objects.port_groups, objects.address_sets, objects.node_acls) == ({}, {}, {})


def test_a_broken_compilation_is_caught() -> None:
    """The harness notices a compiler that allows too much (here: no deny ACLs)."""
    objects = _compile(POLICIES)
    for name, group in list(objects.port_groups.items()):
        objects.port_groups[name] = type(group)(
            group.name, group.ports, tuple(a for a in group.acls if a.action != "drop"),
            group.external_ids,
        )  # fmt: skip
    web, tool = _endpoints()[0], _endpoints()[2]
    assert not connection_allowed(tool, web, "TCP", 80, POLICIES, NAMESPACES)
    assert _evaluate(objects, tool, web, "TCP", 80)


def test_objects_follow_ovn_kubernetes_names_and_priorities() -> None:
    objects = _compile(POLICIES)
    deny = objects.port_groups[default_deny_port_group("a", PolicyType.INGRESS)]
    assert deny.ports == {"a_web", "a_db", "a_tool"}
    assert {(a.priority, a.action, a.match) for a in deny.acls} == {
        (DENY_PRIORITY, "drop", f"outport == @{deny.name}"),
        (ALLOW_PRIORITY, "allow", f"outport == @{deny.name} && (arp || nd)"),
    }
    assert default_deny_port_group("c", PolicyType.EGRESS) == ovn_hash("c_egressDefaultDeny")
    group = objects.port_groups[policy_port_group("a/web-http")]
    assert group.ports == {"a_web"}
    (acl,) = group.acls
    assert acl.action == "allow-related" and acl.direction == "to-lport"
    assert "tcp.dst == 8080 && ip4.dst == 198.18.1.10" in acl.match
    egress = objects.port_groups[policy_port_group("b/cli-out")].acls
    assert all(a.options == {"apply-after-lb": "true"} for a in egress)
    assert "ip4.dst != 192.0.2.8/29" in egress[0].match
    assert set(objects.node_acls) == {"host1", "cp"}


def test_a_selector_shared_by_rules_is_one_address_set() -> None:
    shared = {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
    policies = [
        {"namespace": "a", "name": n, "spec": {"podSelector": {}, "ingress": [shared]}}
        for n in ("p1", "p2")
    ]
    objects = _compile(policies)
    assert [s.addresses for s in objects.address_sets.values()] == [{"198.18.1.10"}]


def test_named_port_no_pod_has_allows_nothing() -> None:
    spec = {"podSelector": {}, "ingress": [{"ports": [{"port": "nope"}]}]}
    objects = _compile([{"namespace": "a", "name": "p", "spec": spec}])
    assert objects.port_groups[policy_port_group("a/p")].acls == ()


@pytest.mark.parametrize(
    "selector,labels",
    [
        ({}, {}),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"}),
        ({"matchLabels": {"a": "1"},
          "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}),
    ],
)  # fmt: skip
def test_selectors_match_as_the_reference_says(
    selector: dict[str, Any], labels: dict[str, str]
) -> None:
    assert selects(LabelSelector.model_validate(selector), labels) == label_selector_matches(
        selector, labels
    )


@pytest.mark.parametrize(
    "spec,reason",
    [
        ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "a peer needs"),
        ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                                                    "podSelector": {}}]}]}, "cannot be combined"),
        ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
            "cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}, "strictly inside"),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
         "numeric port"),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "below"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "needs values"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                                "values": ["x"]}]}}, "takes no values"),
        ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "TCP"),
        ({"podSelector": {}, "policyTypes": ["Sideways"]}, "Ingress"),
        ({"podSelector": {}, "ingres": []}, "Extra inputs"),
        ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": False}}]}]}, "a CIDR is a"),
        ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": 0}}]}]}, "a CIDR is a"),
    ],
)  # fmt: skip
def test_invalid_policies_are_refused_with_a_reason(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        NetworkPolicySpec.model_validate(spec)


def test_policy_types_default_as_the_api_says() -> None:
    def types(spec: dict[str, Any]) -> set[str]:
        return {t.value for t in NetworkPolicySpec.model_validate(spec).types()}

    assert types({"podSelector": {}}) == {"Ingress"}
    assert types({"podSelector": {}, "egress": [{}]}) == {"Ingress", "Egress"}
    assert types({"podSelector": {}, "policyTypes": ["Egress"]}) == {"Egress"}


def test_a_manifest_parses_with_its_metadata() -> None:
    doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "p", "namespace": "a", "labels": {"x": "y"}},
           "spec": {"podSelector": {}}}  # fmt: skip
    policy = NetworkPolicy.model_validate(doc)
    assert (policy.metadata.name, policy.metadata.namespace) == ("p", "a")


def test_evaluator_reads_sets_and_negation() -> None:
    pkt = Packet("x", "y", "10.0.0.1", "10.0.0.2", "tcp", 80)
    assert matches("ip4.src == {10.0.0.0/24, 1.2.3.4} && tcp && tcp.dst == 80", pkt, {}, {})
    assert not matches("(ip4.src == 10.0.0.0/8 && ip4.src != {10.0.0.0/30})", pkt, {}, {})
    assert matches("ip4.src == $s || udp", pkt, {}, {"s": frozenset({"10.0.0.1"})})
