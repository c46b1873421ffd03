"""Services: request validation, allocation, admission, backends and the desired load balancers."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dpunet.cli.services_cmds import build_spec, parse_port
from dpunet.contract.services import Protocol, ServiceSpec
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import BadRequest, Conflict, Exhausted
from dpunet.controller.service_lbs import (
    CLUSTER_LB_GROUP,
    HAIRPIN_SNAT_IP,
    PodBackend,
    admit,
    allocate_cluster_ip,
    allocate_node_port,
    backend_ips,
    decode,
    desired_lbs,
    encode,
    lb_name,
    node_lb_name,
)
from dpunet.controller.topology import NodeRecord, NodeRole, owned

CIDR = IPv4Network("198.19.0.0/24")
PORTS = range(30000, 30010)


def node(name: str, ip: str) -> NodeRecord:
    return NodeRecord(
        name=name,
        role=NodeRole.FULL,
        chassis=name,
        node_ip=IPv4Interface(f"{ip}/24"),
        next_hop=IPv4Address("192.0.2.1"),
        subnet=IPv4Network("198.18.0.0/24"),
        join_ip=IPv4Address("198.19.255.2"),
        gateway_mac="0a:58:c0:00:02:14",
    )


NODES = {"cp": node("cp", "192.0.2.20"), "host1": node("host1", "192.0.2.151")}


def spec(**fields: Any) -> ServiceSpec:
    return ServiceSpec.model_validate({"ports": [{"port": 80}], **fields})


# ------------------------------------------------------------------ request model
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"ports": []}, "at least 1"),
        ({"ports": [{"port": 0}]}, "greater than or equal to 1"),
        ({"ports": [{"port": 80}], "endpoints": ["10.0.0.1"], "pods": ["a"]}, "one of"),
        ({"ports": [{"port": 80}, {"port": 81}]}, "needs a name"),
        ({"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}, "names must be"),
        ({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}, "protocol/port"),
        ({"ports": [{"port": 80, "nodePort": 30000}]}, "needs type NodePort"),
        ({"ports": [{"port": 80}], "affinityTimeout": 10}, "needs sessionAffinity"),
        ({"ports": [{"port": 80}], "endpoints": ["10.0.0.1", "10.0.0.1"]}, "must not repeat"),
        ({"ports": [{"port": 80}], "endpoints": ["224.0.0.1"]}, "not a unicast"),
        ({"ports": [{"port": 80}], "selector": {"-bad": "x"}}, "pattern"),
        ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "TCP"),
        ({"ports": [{"port": 80}], "surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_requests_are_refused_with_a_reason(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ServiceSpec.model_validate(body)


def test_affinity_timeout_defaults_like_kubernetes() -> None:
    assert spec().timeout is None
    assert spec(sessionAffinity="ClientIP").timeout == 10800
    assert spec(sessionAffinity="ClientIP", affinityTimeout=30).timeout == 30


def test_stored_spec_round_trips() -> None:
    s = spec(type="NodePort", clusterIP="198.19.0.7", selector={"app": "web"})
    text = encode(s)
    assert decode(text) == s
    assert json.loads(text)["clusterIP"] == "198.19.0.7"  # the API's field names


# ------------------------------------------------------------------ allocation
def test_cluster_ip_allocation_takes_the_lowest_free_host_address() -> None:
    assert allocate_cluster_ip(CIDR, set()) == IPv4Address("198.19.0.1")
    used = {IPv4Address("198.19.0.1"), IPv4Address("198.19.0.3")}
    assert allocate_cluster_ip(CIDR, used) == IPv4Address("198.19.0.2")
    with pytest.raises(Exhausted):
        allocate_cluster_ip(IPv4Network("198.19.0.0/30"), set(IPv4Network("198.19.0.0/30")))


def test_node_port_allocation_and_exhaustion() -> None:
    assert allocate_node_port(PORTS, {30000, 30002}) == 30001
    with pytest.raises(Exhausted, match="30000-30009"):
        allocate_node_port(PORTS, set(PORTS))


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), min_size=1, max_size=30))
def test_admitted_services_never_share_a_cluster_ip_or_node_port(names: list[str]) -> None:
    current: dict[str, ServiceSpec] = {}
    for name in names:  # repeated names are updates and keep their allocations
        before = current.get(f"default/{name}")
        current[f"default/{name}"] = admit(
            CIDR, PORTS, current, f"default/{name}", spec(type="NodePort")
        )
        if before is not None:
            assert current[f"default/{name}"] == before
    ips = [s.cluster_ip for s in current.values()]
    node_ports = [p.node_port for s in current.values() for p in s.ports]
    assert len(set(ips)) == len(ips) and all(ip in CIDR for ip in ips)
    assert len(set(node_ports)) == len(node_ports) and all(p in PORTS for p in node_ports)


def test_admission_errors() -> None:
    web = admit(CIDR, PORTS, {}, "default/web", spec(type="NodePort"))
    current = {"default/web": web}
    with pytest.raises(BadRequest, match="not a host address"):
        admit(CIDR, PORTS, current, "default/x", spec(clusterIP="10.0.0.1"))
    with pytest.raises(Conflict, match="belongs to service default/web"):
        admit(CIDR, PORTS, current, "default/x", spec(clusterIP=str(web.cluster_ip)))
    with pytest.raises(Conflict, match="cannot change"):
        admit(CIDR, PORTS, current, "default/web", spec(clusterIP="198.19.0.99"))
    taken = web.ports[0].node_port
    with pytest.raises(Conflict, match="belongs to service default/web"):
        admit(
            CIDR,
            PORTS,
            current,
            "default/x",
            spec(type="NodePort", ports=[{"port": 80, "nodePort": taken}]),
        )
    with pytest.raises(BadRequest, match="outside 30000-30009"):
        admit(
            CIDR,
            PORTS,
            current,
            "default/x",
            spec(type="NodePort", ports=[{"port": 80, "nodePort": 31000}]),
        )
    with pytest.raises(BadRequest, match="inside the service CIDR"):
        admit(CIDR, PORTS, current, "default/x", spec(endpoints=["198.19.0.200"]))


def test_same_node_port_number_for_tcp_and_udp() -> None:
    both = spec(
        type="NodePort",
        ports=[
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30005},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30005},
        ],
    )
    admitted = admit(CIDR, PORTS, {}, "kube-system/dns", both)
    assert [p.node_port for p in admitted.ports] == [30005, 30005]


def test_an_update_keeps_cluster_ip_and_node_ports() -> None:
    web = admit(CIDR, PORTS, {}, "default/web", spec(type="NodePort"))
    other = admit(CIDR, PORTS, {"default/web": web}, "default/other", spec(type="NodePort"))
    current = {"default/web": web, "default/other": other}
    updated = admit(CIDR, PORTS, current, "default/web", spec(type="NodePort", pods=["a"]))
    assert updated.cluster_ip == web.cluster_ip
    assert updated.ports[0].node_port == web.ports[0].node_port
    assert updated.pods == ["a"]


# ------------------------------------------------------------------ backends
PODS = [
    PodBackend("default", "a", IPv4Address("198.18.0.3"), {"app": "web"}),
    PodBackend("default", "b", IPv4Address("198.18.1.3"), {"app": "web", "tier": "x"}),
    PodBackend("other", "a", IPv4Address("198.18.0.9"), {"app": "web"}),
]


def test_backends_by_pod_name_selector_or_endpoints_stay_in_the_namespace() -> None:
    assert backend_ips("default", spec(pods=["a", "zz"]), PODS) == [IPv4Address("198.18.0.3")]
    assert backend_ips("default", spec(selector={"app": "web"}), PODS) == [
        IPv4Address("198.18.0.3"),
        IPv4Address("198.18.1.3"),
    ]
    assert backend_ips("default", spec(selector={"tier": "x"}), PODS) == [IPv4Address("198.18.1.3")]
    assert backend_ips("default", spec(endpoints=["10.1.0.2", "10.1.0.1"]), PODS) == [
        IPv4Address("10.1.0.1"),
        IPv4Address("10.1.0.2"),
    ]
    assert backend_ips("default", spec(), PODS) == []


# ------------------------------------------------------------------ load balancers
def test_cluster_ip_service_is_one_lb_per_protocol_in_the_group() -> None:
    s = admit(
        CIDR,
        PORTS,
        {},
        "kube-system/dns",
        spec(
            ports=[
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "targetPort": 9253},
            ]
        ),
    )
    lbs = desired_lbs("kube-system/dns", s, encode(s), [IPv4Address("198.18.0.3")], NODES)
    assert [(lb.name, lb.protocol, lb.node) for lb in lbs] == [
        ("Service_kube-system/dns_TCP", "tcp", None),
        ("Service_kube-system/dns_UDP", "udp", None),
    ]
    tcp, udp = lbs
    assert tcp.vips == {
        "198.19.0.1:53": "198.18.0.3:53",
        "198.19.0.1:9153": "198.18.0.3:9253",
    }
    assert udp.vips == {"198.19.0.1:53": "198.18.0.3:53"}
    assert owned(tcp.external_ids) and tcp.external_ids["k8s.ovn.org/owner"] == "kube-system/dns"
    assert decode(tcp.external_ids["dpunet:service-spec"]) == s
    assert tcp.options == {
        "reject": "true",
        "event": "false",
        "hairpin_snat_ip": HAIRPIN_SNAT_IP,
        "neighbor_responder": "none",
    }
    assert CLUSTER_LB_GROUP == "clusterLBGroup"


def test_node_port_service_adds_one_lb_per_gateway_router() -> None:
    s = admit(CIDR, PORTS, {}, "default/web", spec(type="NodePort", sessionAffinity="ClientIP"))
    ips = [IPv4Address("198.18.1.3"), IPv4Address("198.18.0.3")]
    lbs = {lb.name: lb for lb in desired_lbs("default/web", s, encode(s), ips, NODES)}
    assert set(lbs) == {
        lb_name("default/web", Protocol.TCP),
        node_lb_name("default/web", Protocol.TCP, "cp"),
        node_lb_name("default/web", Protocol.TCP, "host1"),
    }
    host1 = lbs["Service_default/web_TCP_node_router_host1"]
    assert host1.node == "host1"
    assert host1.vips == {"192.0.2.151:30000": "198.18.1.3:80,198.18.0.3:80"}
    assert host1.options["affinity_timeout"] == "10800"
    assert "dpunet:service-spec" not in host1.external_ids


def test_no_backends_leave_the_vip_with_reject() -> None:
    s = admit(CIDR, PORTS, {}, "default/empty", spec())
    (lb,) = desired_lbs("default/empty", s, encode(s), [], NODES)
    assert lb.vips == {"198.19.0.1:80": ""} and lb.options["reject"] == "true"


# ------------------------------------------------------------------ CLI parsing
@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("80", {"port": 80}),
        ("http=80:8080", {"port": 80, "name": "http", "targetPort": 8080}),
        ("53/udp", {"port": 53, "protocol": "UDP"}),
        ("80@30080", {"port": 80, "nodePort": 30080}),
        ("s=9/SCTP@30001", {"port": 9, "name": "s", "protocol": "SCTP", "nodePort": 30001}),
    ],
)
def test_cli_port_syntax(text: str, port: dict[str, Any]) -> None:
    assert parse_port(text) == port


def test_cli_spec_is_a_valid_request() -> None:
    body = build_spec(
        ("http=80@30080", "dns=53/udp"), False, None, None, None, "app=web", 60, False
    )
    assert body["type"] == "NodePort" and body["sessionAffinity"] == "ClientIP"
    ServiceSpec.model_validate(body)
    with pytest.raises(ValueError, match="is not"):
        parse_port("eighty")


def test_node_port_range_setting() -> None:
    assert ControllerConfig().node_ports == range(30000, 32768)
    with pytest.raises(ValidationError, match="node_port_range"):
        ControllerConfig(node_port_range="32000-31000")
