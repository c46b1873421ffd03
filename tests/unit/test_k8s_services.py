"""Kubernetes Services and EndpointSlices -> service specs (pure; the watch runs in the
kmock test tests/lab/test_controller_k8s_services.py)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from dpunet.contract.services import ServiceSpec, ServiceType, SessionAffinity
from dpunet.controller.k8s.services import backends, spec_of
from dpunet.controller.service_lbs import encode


def service(**spec: Any) -> Service:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}], **spec},
    }
    return Service.from_dict(body)


def endpoint_slice(endpoints: list[dict[str, Any]], ports: Any = None, family: str = "IPv4") -> Any:
    return EndpointSlice.from_dict(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-x", "namespace": "default"},
            "addressType": family,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080}],
            "endpoints": endpoints,
        }
    )


def ep(ip: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


def test_ready_endpoints_else_serving_terminating_ones() -> None:
    ready = endpoint_slice(
        [ep("10.0.0.2", ready=True), ep("10.0.0.1"), ep("10.0.0.3", ready=False)]
    )
    assert backends([ready]) == [IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")]
    draining = endpoint_slice(
        [
            ep("10.0.0.4", ready=False, serving=True, terminating=True),
            ep("10.0.0.5", ready=False, serving=False, terminating=True),
            ep("10.0.0.6", ready=False),
        ]
    )
    assert backends([draining]) == [IPv4Address("10.0.0.4")]
    assert backends([endpoint_slice([ep("fd00::1")], family="IPv6")]) == []


def test_cluster_ip_service_with_a_named_target_port() -> None:
    svc = service(ports=[{"name": "http", "port": 80, "targetPort": "http"}])
    spec = spec_of(svc, [endpoint_slice([ep("10.0.0.1")])])
    assert spec is not None
    assert spec.type is ServiceType.CLUSTER_IP and spec.cluster_ip == IPv4Address("10.96.0.10")
    assert [(p.name, p.port, p.target, p.node_port) for p in spec.ports] == [
        ("http", 80, 8080, None)
    ]
    assert spec.endpoints == [IPv4Address("10.0.0.1")]
    # what is stored in NB reads back as the same spec (a restart compares equal)
    assert ServiceSpec.model_validate_json(encode(spec)) == spec


def test_node_ports_affinity_and_no_slices() -> None:
    svc = service(
        type="LoadBalancer",
        ports=[{"port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 31053}],
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}},
    )
    spec = spec_of(svc, [])
    assert spec is not None and spec.type is ServiceType.NODE_PORT
    assert [(p.port, p.target, p.node_port) for p in spec.ports] == [(53, 5353, 31053)]
    assert spec.session_affinity is SessionAffinity.CLIENT_IP and spec.timeout == 65535
    assert spec.endpoints == []


def test_services_dpunet_leaves_alone() -> None:
    assert spec_of(service(clusterIP="None"), []) is None
    assert spec_of(service(clusterIP="fd00::10"), []) is None
    assert (
        spec_of(service(type="ExternalName", clusterIP=None, externalName="x.example"), []) is None
    )
