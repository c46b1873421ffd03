"""Kubernetes mode, services: Services and EndpointSlices in kmock drive the OVN load
balancers of a real controller process against a real OVN NB (temp dir, no northd).
Tests run in file order and build on each other."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from controller_harness import ControllerProc, OvnCentral, k8s_controller, wait_until
from kube_harness import KubeMock, granted

from dpunet.deploy.manifests import DeployValues, render

pytestmark = pytest.mark.lab

NS = "dpunet"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SERVICES = "/api/v1/namespaces/default/services"
NB_TABLES = ("Load_Balancer", "Load_Balancer_Group", "Logical_Switch", "Logical_Router")


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral(northd=False).start()
    yield central
    central.close()


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeMock]:
    mock = KubeMock()
    mock.node(
        "cp",
        "192.0.2.10",
        {"node-role.kubernetes.io/control-plane": ""},
        **{"dpunet.io/gateway-mac": "02:00:00:00:0c:01"},  # no MAC: no gateway router
    )
    mock.node(
        "host1",
        "192.0.2.101",
        {"k8s.ovn.org/dpu-host": ""},
        **{"k8s.ovn.org/node-chassis-id": "dpu1", "dpunet.io/gateway-mac": "02:00:00:00:01:01"},
    )
    mock.user("tok-admin", "kubernetes-admin", ["dpunet"])
    mock.pod(NS, "dpunet-node-x1", "uid-agent-cp", "cp")
    # the API server's own service (kmock lists a kind only once it holds one object)
    https = [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]
    post(mock, SERVICES, k8s_service("kubernetes", "10.96.0.1", ports=https))
    slice_ports = [{"name": "https", "port": 6443, "protocol": "TCP"}]
    post(mock, SLICES, k8s_slice("kubernetes", "x", slice_ports, [ep("192.0.2.10")]))
    yield mock
    mock.close()


@pytest.fixture(scope="module")
def ctl(
    ovn: OvnCentral, kube: KubeMock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProc]:
    kubeconfig = kube.kubeconfig(tmp_path_factory.mktemp("k8s-svc") / "kubeconfig")
    proc = k8s_controller(ovn.nb_remotes, kubeconfig).start(wait_ready=False)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def post(kube: KubeMock, path: str, body: dict[str, Any]) -> None:
    resp = kube.http.post(path, json=body)
    assert resp.status_code < 300, resp.text


def k8s_service(name: str, cluster_ip: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-svc-{name}"},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], **spec},
    }


def k8s_slice(
    service: str, suffix: str, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{suffix}",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


def ep(ip: str, ready: bool = True, serving: bool | None = None, terminating: bool = False) -> Any:
    conditions: dict[str, Any] = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conditions["serving"] = serving
    return {"addresses": [ip], "conditions": conditions}


def vips(ovn: OvnCentral, name: str) -> dict[str, str] | None:
    out = ovn.nbctl("--format=json", "--columns=name,vips", "list", "Load_Balancer")
    for row_name, cell in json.loads(out)["data"]:
        if row_name == name:
            return dict(cell[1])
    return None


def nb_versions(ovn: OvnCentral) -> dict[str, str]:
    ops = [
        {"op": "select", "table": t, "where": [], "columns": ["_uuid", "_version"]}
        for t in NB_TABLES
    ]
    out = subprocess.run(
        ["ovsdb-client", "transact", ovn.nb_remotes[0], json.dumps(["OVN_Northbound", *ops])],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    return {
        f"{table} {row['_uuid'][1]}": row["_version"][1]
        for table, result in zip(NB_TABLES, json.loads(out), strict=True)
        for row in result["rows"]
    }


HTTP = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]


def test_service_and_slice_make_a_load_balancer(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    wait_until("nodes registered", lambda: "GR_host1" in ovn.nbctl("lr-list"))
    wait_until(
        "the kubernetes service",
        lambda: vips(ovn, "Service_default/kubernetes_TCP") == {"10.96.0.1:443": "192.0.2.10:6443"},
    )
    post(kube, SERVICES, k8s_service("web", "10.96.0.10", ports=HTTP))
    wait_until(
        "a VIP without backends",
        lambda: vips(ovn, "Service_default/web_TCP") == {"10.96.0.10:80": ""},
    )
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    post(kube, SLICES, k8s_slice("web", "a", ports, [ep("198.18.1.5"), ep("198.18.1.6", False)]))
    wait_until(
        "the ready endpoint, on the slice's resolved port",
        lambda: vips(ovn, "Service_default/web_TCP") == {"10.96.0.10:80": "198.18.1.5:8080"},
    )
    kube.patch(f"{SLICES}/web-a", {"endpoints": [ep("198.18.1.5"), ep("198.18.1.6")]})
    wait_until(
        "both endpoints ready",
        lambda: (
            vips(ovn, "Service_default/web_TCP")
            == {"10.96.0.10:80": "198.18.1.5:8080,198.18.1.6:8080"}
        ),
    )
    post(kube, SLICES, k8s_slice("web", "b", ports, [ep("198.18.0.7")]))
    wait_until(
        "a second slice",
        lambda: (
            "198.18.0.7:8080"
            in (vips(ovn, "Service_default/web_TCP") or {}).get("10.96.0.10:80", "")
        ),
    )
    with ctl.client("tok-admin") as admin:
        svc = admin.get("/v1/services/default/web").json()
        assert svc["backends"] == ["198.18.0.7", "198.18.1.5", "198.18.1.6"]
        refused = admin.put("/v1/services/default/web", json={"ports": [{"port": 80}]})
        assert refused.status_code == 409 and "Kubernetes" in refused.text


def test_terminating_endpoints_serve_only_when_none_is_ready(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    kube.delete(f"{SLICES}/web-b")
    kube.patch(
        f"{SLICES}/web-a",
        {
            "endpoints": [
                ep("198.18.1.5", False, serving=True, terminating=True),
                ep("198.18.1.6", False, serving=False, terminating=True),
            ]
        },
    )
    wait_until(
        "only the serving terminating endpoint",
        lambda: vips(ovn, "Service_default/web_TCP") == {"10.96.0.10:80": "198.18.1.5:8080"},
    )
    kube.patch(
        f"{SLICES}/web-a",
        {"endpoints": [ep("198.18.1.5", False, serving=True, terminating=True), ep("198.18.1.9")]},
    )
    wait_until(
        "the ready one wins",
        lambda: vips(ovn, "Service_default/web_TCP") == {"10.96.0.10:80": "198.18.1.9:8080"},
    )


def test_node_port_and_affinity_from_the_service(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    body = k8s_service(
        "np",
        "10.96.0.20",
        type="NodePort",
        ports=[
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 30053}
        ],
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}},
    )
    post(kube, SERVICES, body)
    post(
        kube,
        SLICES,
        k8s_slice(
            "np", "a", [{"name": "dns", "port": 5353, "protocol": "UDP"}], [ep("198.18.0.9")]
        ),
    )
    wait_until(
        "NodePort LBs on both gateway routers",
        lambda: (
            vips(ovn, "Service_default/np_UDP_node_router_host1")
            == {"192.0.2.101:30053": "198.18.0.9:5353"}
            and vips(ovn, "Service_default/np_UDP_node_router_cp") is not None
        ),
    )
    assert vips(ovn, "Service_default/np_UDP") == {"10.96.0.20:53": "198.18.0.9:5353"}
    options = ovn.nbctl("get", "Load_Balancer", "Service_default/np_UDP", "options")
    assert 'affinity_timeout="65535"' in options  # Kubernetes allows 86400, OVN 65535


def test_headless_and_external_name_services_are_ignored(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    post(kube, SERVICES, k8s_service("headless", "None", ports=HTTP))
    post(
        kube,
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        },
    )
    post(kube, SERVICES, k8s_service("marker", "10.96.0.30", ports=HTTP))
    wait_until("the marker service", lambda: vips(ovn, "Service_default/marker_TCP") is not None)
    names = ovn.nbctl("--bare", "--columns=name", "list", "Load_Balancer")
    assert "headless" not in names and "ext_" not in names


def test_restart_rewrites_nothing_and_catches_up_on_deletes(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    time.sleep(0.5)  # passes triggered by the tests before have run
    before = nb_versions(ovn)
    ctl.kill(signal.SIGTERM)
    ctl.start(wait_ready=False)
    ctl.wait_ready()
    with ctl.client("tok-admin") as admin:
        wait_until(
            "a service pass of the new controller",
            lambda: (
                'dpunet_controller_service_syncs_total{result="ok"}' in admin.get("/metrics").text
            ),
        )
    assert nb_versions(ovn) == before
    ctl.kill(signal.SIGTERM)
    kube.delete(f"{SERVICES}/marker")  # while no controller runs
    ctl.start(wait_ready=False)
    ctl.wait_ready()
    wait_until("marker removed", lambda: vips(ovn, "Service_default/marker_TCP") is None)
    assert vips(ovn, "Service_default/web_TCP") is not None


def test_deleted_service_loses_its_load_balancers(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    kube.delete(f"{SERVICES}/np")
    wait_until(
        "np's rows gone",
        lambda: (
            not [
                n
                for n in ovn.nbctl("--bare", "--columns=name", "list", "Load_Balancer").split()
                if n.startswith("Service_default/np")
            ]
        ),
    )


def test_the_rendered_rbac_covers_every_call(kube: KubeMock) -> None:
    """Every request the controller made to kmock in this module is granted by the rendered
    ClusterRole and Role (test_k8s_lab.py also checks that nothing more is granted)."""
    missing = kube.permissions() - granted(render(DeployValues()))
    assert not missing, sorted(missing)
