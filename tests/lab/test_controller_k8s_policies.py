"""Kubernetes mode, NetworkPolicy: NetworkPolicy, Namespace and Pod objects in kmock drive
the port groups, address sets and ACLs of a real controller process against a real OVN NB
(temp dir, no northd): pods' labels and named ports come from their Pod objects, namespace
labels from Namespace objects; creating, updating and deleting a policy, relabelling a
namespace or a pod change the rows; a restart rewrites nothing; the standalone policy API
refuses writes (409). The data path in this mode: tests/lab/test_k8s_lab.py. Tests run in
file order and build on each other."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from controller_harness import ControllerProc, OvnCentral, k8s_controller, wait_until
from kube_harness import KubeMock, granted
from test_controller_policies import POLICY_TABLES, group, ours, rows, versions

from dpunet.contract.policy import PolicyType
from dpunet.controller.policy_acls import default_deny_port_group, policy_port_group
from dpunet.deploy.manifests import DeployValues, render

pytestmark = pytest.mark.lab

NS = "dpunet"
AUD = ["dpunet"]
POLICIES = "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies"
FROM_TEAM_B = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "from-b", "namespace": "a"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
                "ports": [{"port": "http"}],
            }
        ],
    },
}


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral(northd=False).start()
    yield central
    central.close()


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeMock]:
    mock = KubeMock()
    mock.node("cp", "192.0.2.10", {"node-role.kubernetes.io/control-plane": ""})
    mock.user("tok-admin", "kubernetes-admin", AUD)
    mock.user(
        "tok-cp",
        "system:serviceaccount:dpunet:dpunet-node",
        AUD,
        **{"authentication.kubernetes.io/node-name": "cp"},
    )
    for name in ("a", "b"):
        mock.namespace(name)
    yield mock
    mock.close()


@pytest.fixture(scope="module")
def ctl(
    ovn: OvnCentral, kube: KubeMock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProc]:
    kubeconfig = kube.kubeconfig(tmp_path_factory.mktemp("k8s-pol") / "kubeconfig")
    proc = k8s_controller(ovn.nb_remotes, kubeconfig).start(wait_ready=False)
    try:
        proc.wait_ready()
        wait_until("cp registered", lambda: "k8s-cp" in lsp_names(ovn))
        yield proc
    finally:
        proc.close()


def lsp_names(ovn: OvnCentral) -> dict[str, str]:
    return {r["name"]: r["_uuid"] for r in rows(ovn, "Logical_Switch_Port")}


def pod(kube: KubeMock, ctl: ControllerProc, ns: str, name: str, labels: dict[str, str],
        ports: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    """A Pod in kmock with its port (as cp's node agent asks for it); its address."""
    kube.pod(ns, name, f"uid-{name}", "cp", vfs=0, labels=labels, ports=ports)
    body = {"node": "cp", "uid": f"uid-{name}", "sandbox": f"sb-{name}"}
    with ctl.client("tok-cp") as cp:
        resp = cp.put(f"/v1/ports/{ns}/{name}", json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["ips"][0].split("/")[0])


def pod_ip(ovn: OvnCentral, lsp: str) -> str:
    (row,) = [r for r in rows(ovn, "Logical_Switch_Port") if r["name"] == lsp]
    (address,) = row["addresses"] if isinstance(row["addresses"], list) else [row["addresses"]]
    return str(address.split()[-1])


def acl_matches(ovn: OvnCentral, group_name: str) -> list[str]:
    acls = {r["_uuid"]: r["match"] for r in rows(ovn, "ACL")}
    return sorted(acls[u] for u in group(ovn, group_name)["acls"])


def selector_addresses(ovn: OvnCentral) -> list[list[str]]:
    return [
        sorted(r["addresses"])
        for r in ours(ovn, "Address_Set")
        if r["external_ids"]["dpunet:kind"] == "netpol-selector"
    ]


def has_group(ovn: OvnCentral, name: str) -> bool:
    return any(r["name"] == name for r in rows(ovn, "Port_Group"))


PG = policy_port_group("a/from-b")


def test_a_network_policy_in_the_api_becomes_ovn_objects(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    pod(kube, ctl, "a", "web", {"app": "web"},
        [{"name": "http", "containerPort": 8080, "protocol": "TCP"}])  # fmt: skip
    pod(kube, ctl, "b", "cli", {"app": "cli"})
    kube.post(POLICIES, FROM_TEAM_B)
    wait_until("the policy's port group", lambda: has_group(ovn, PG), timeout=15)
    web = lsp_names(ovn)["a_web"]
    assert group(ovn, PG)["ports"] == [web]  # the label came from the Pod object
    assert group(ovn, PG)["external_ids"]["dpunet:policy"] == "a/from-b"
    deny = group(ovn, default_deny_port_group("a", PolicyType.INGRESS))
    assert deny["ports"] == [web]
    (match,) = acl_matches(ovn, PG)
    assert f"tcp.dst == 8080 && ip4.dst == {pod_ip(ovn, 'a_web')}" in match  # named port
    assert selector_addresses(ovn) == [[]], "b has no team=b label yet"


def test_a_namespace_relabel_changes_the_peers(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    cli_ip = pod_ip(ovn, "b_cli")
    kube.patch("/api/v1/namespaces/b", {"metadata": {"labels": {"team": "b"}}})
    wait_until("cli in the selector's set", lambda: selector_addresses(ovn) == [[cli_ip]])
    kube.patch("/api/v1/namespaces/b", {"metadata": {"labels": {"team": None}}})
    wait_until("cli out again", lambda: selector_addresses(ovn) == [[]])
    # the name label every namespace carries selects it too
    by_name = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}
    rule = {"from": [by_name], "ports": [{"port": 9090}]}
    kube.patch(f"{POLICIES}/from-b", {"spec": {"ingress": [rule]}})
    wait_until("the updated policy", lambda: "tcp.dst == 9090" in acl_matches(ovn, PG)[0])
    assert selector_addresses(ovn) == [[cli_ip]]


def test_a_pod_relabel_changes_the_selected_pods(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    kube.patch("/api/v1/namespaces/a/pods/web", {"metadata": {"labels": {"app": "other"}}})
    wait_until("web no longer selected", lambda: group(ovn, PG)["ports"] == [])
    kube.patch("/api/v1/namespaces/a/pods/web", {"metadata": {"labels": {"app": "web"}}})
    wait_until("web selected again", lambda: group(ovn, PG)["ports"] == [lsp_names(ovn)["a_web"]])


def test_the_standalone_policy_api_refuses_writes(ctl: ControllerProc) -> None:
    with ctl.client("tok-admin") as admin:
        resp = admin.put("/v1/policies/a/x", json={**FROM_TEAM_B, "metadata": {"name": "x"}})
        assert resp.status_code == 409 and "kubectl" in resp.json()["detail"]
        resp = admin.put("/v1/namespaces/b/labels", json={"labels": {"team": "b"}})
        assert resp.status_code == 409
        assert [p["name"] for p in admin.get("/v1/policies").json()["items"]] == ["from-b"]


def test_restart_rewrites_nothing(ovn: OvnCentral, ctl: ControllerProc) -> None:
    time.sleep(0.5)  # passes the earlier changes woke have run
    before = versions(ovn)
    ctl.kill(signal.SIGTERM)
    ctl.start(wait_ready=False)
    ctl.wait_ready()
    with ctl.client("tok-admin") as admin:
        wait_until(
            "a policy pass of the new controller",
            lambda: (
                'dpunet_controller_policy_syncs_total{result="ok"}' in admin.get("/metrics").text
            ),
        )
    time.sleep(0.5)
    assert versions(ovn) == before


def test_deleting_the_policies_removes_every_row(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    deny_all = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    kube.post(POLICIES, {**FROM_TEAM_B, "metadata": {"name": "deny-all"}, "spec": deny_all})
    wait_until("deny-all", lambda: has_group(ovn, policy_port_group("a/deny-all")))
    ctl.kill(signal.SIGTERM)
    kube.delete(f"{POLICIES}/deny-all")  # while no controller runs
    ctl.start(wait_ready=False)
    ctl.wait_ready()
    wait_until("deny-all removed", lambda: not has_group(ovn, policy_port_group("a/deny-all")))
    kube.delete(f"{POLICIES}/from-b")
    wait_until("every policy row gone", lambda: all(not ours(ovn, t) for t in POLICY_TABLES))
    assert rows(ovn, "ACL") == []


def test_the_rendered_rbac_covers_every_call(kube: KubeMock) -> None:
    """Every request the controller made to kmock in this module is granted by the rendered
    ClusterRole and Role (test_k8s_lab.py also checks that nothing more is granted)."""
    missing = kube.permissions() - granted(render(DeployValues()))
    assert not missing, sorted(missing)
