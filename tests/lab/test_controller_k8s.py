"""The controller in Kubernetes mode: a real process against a real OVN central (temp dir)
and kmock playing the API server with a scripted cluster (nodes, pods with the seed's
resource request, pod deletes, token reviews). Checked: OVN NB state and the API calls
kmock recorded. Tests run in file order and build on each other."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from controller_harness import (
    ADMIN_TOKEN,
    K8S_LEASE,
    ControllerProc,
    OvnCentral,
    k8s_controller,
    wait_until,
)
from kube_harness import CONTROLLER_TOKEN, KubeMock, granted

from dpunet.deploy.manifests import DeployValues, render

pytestmark = pytest.mark.lab

NS = "dpunet"
AUD = ["dpunet"]
HOST_SA = f"system:serviceaccount:{NS}:dpunet-host"
NODE_SA = f"system:serviceaccount:{NS}:dpunet-node"
PF_MAC = "02:00:00:00:01:00"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/dpunet-controller"


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral().start()
    central.sbctl("chassis-add", "dpu1", "geneve", "127.0.0.1")
    yield central
    central.close()


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeMock]:
    mock = KubeMock()
    mock.node("cp", "192.0.2.10", {"node-role.kubernetes.io/control-plane": ""})
    mock.node(
        "host1",
        "192.0.2.101",
        {"k8s.ovn.org/dpu-host": ""},
        **{
            "k8s.ovn.org/node-chassis-id": "dpu1",
            "dpunet.io/mgmt-port": json.dumps({"pf_mac": PF_MAC, "vf_num": 0}),
            "dpunet.io/gateway-next-hop": "192.0.2.254",
        },
    )
    mock.node("dpu1", "192.0.2.201", {"k8s.ovn.org/dpu": ""})
    mock.node("host2", "192.0.2.102", {"k8s.ovn.org/dpu-host": ""})
    mock.user("tok-host1", HOST_SA, AUD, **{"authentication.kubernetes.io/node-name": "host1"})
    mock.user(
        "tok-cp-agent",
        NODE_SA,
        AUD,
        **{
            "authentication.kubernetes.io/pod-name": "dpunet-node-x1",
            "authentication.kubernetes.io/pod-uid": "uid-agent-cp",
        },
    )
    mock.pod(NS, "dpunet-node-x1", "uid-agent-cp", "cp")
    mock.user("tok-admin", "kubernetes-admin", AUD)
    mock.user("tok-other-sa", "system:serviceaccount:default:default", AUD)
    mock.user("tok-wrong-aud", HOST_SA, ["https://kubernetes.default.svc"])
    yield mock
    mock.close()


def start(ovn: OvnCentral, kube: KubeMock, tmp: Path) -> ControllerProc:
    kubeconfig = kube.kubeconfig(tmp / "kubeconfig")
    return k8s_controller(ovn.nb_remotes, kubeconfig, wait_for_up=True).start(wait_ready=False)


@pytest.fixture(scope="module")
def ctl(
    ovn: OvnCentral, kube: KubeMock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControllerProc]:
    proc = start(ovn, kube, tmp_path_factory.mktemp("ctl1"))
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.close()


def switches(ovn: OvnCentral) -> set[str]:
    return set(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch").split())


def lsps(ovn: OvnCentral) -> set[str]:
    return set(ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())


def port_req(node: str, uid: str, vf: int = 1) -> dict[str, Any]:
    return {
        "node": node,
        "uid": uid,
        "sandbox": f"sb-{uid}",
        "pci": f"0000:02:00.{vf + 1}",
        "pf_mac": PF_MAC,
        "vf_num": vf,
    }


def bind_when_created(ovn: OvnCentral, lsp: str) -> threading.Thread:
    """Play dpu1's ovn-controller: bind `lsp` to chassis dpu1 once northd created it."""

    def bind() -> None:
        wait_until(
            f"Port_Binding {lsp}",
            lambda: lsp in ovn.sbctl("--bare", "--columns=logical_port", "list", "Port_Binding"),
        )
        ovn.sbctl("lsp-bind", lsp, "dpu1")

    thread = threading.Thread(target=bind, daemon=True)
    thread.start()
    return thread


def test_nodes_follow_node_objects(ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc) -> None:
    wait_until("cp and host1 registered", lambda: {"cp", "host1"} <= switches(ovn))
    assert not {"dpu1", "host2"} & switches(ovn)  # a DPU; a dpu-host without chassis
    with ctl.client("tok-admin") as admin:
        host1 = admin.get("/v1/nodes/host1").json()
        cp = admin.get("/v1/nodes/cp").json()
    assert (host1["role"], host1["chassis"], host1["node_ip"], host1["next_hop"]) == (
        "dpu-host", "dpu1", "192.0.2.101/24", "192.0.2.254",
    )  # fmt: skip
    assert (host1["mgmt_pf_mac"], host1["mgmt_vf_num"]) == (PF_MAC, 0)
    assert (cp["role"], cp["chassis"], cp["next_hop"]) == ("full", "cp", "192.0.2.1")
    options = ovn.nbctl("get", "Logical_Switch_Port", "k8s-host1", "options")
    assert f'"dpunet-plug:pf-mac"="{PF_MAC}"' in options and "requested-chassis=dpu1" in options

    kube.patch(
        "/api/v1/nodes/host2",
        {"metadata": {"annotations": {"k8s.ovn.org/node-chassis-id": "dpu2"}}},
    )
    wait_until("host2 registered once it has a chassis", lambda: "host2" in switches(ovn))
    kube.delete("/api/v1/nodes/host2")
    wait_until("host2 removed with its Node", lambda: "host2" not in switches(ovn))
    watches = kube.requests("GET", "/api/v1/nodes")
    assert any(r.params.get("watch") == "true" for r in watches)
    assert all(r.headers["Authorization"] == f"Bearer {CONTROLLER_TOKEN}" for r in watches)


def test_only_bound_service_account_tokens(kube: KubeMock, ctl: ControllerProc) -> None:
    def status(token: str, path: str) -> int:
        with ctl.client(token) as client:
            return client.get(path).status_code

    assert status(ADMIN_TOKEN, "/v1/nodes") == 401  # static tokens mean nothing here
    assert status("tok-host1", "/v1/nodes/host1") == 200  # node claim
    assert status("tok-host1", "/v1/nodes/cp") == 403
    assert status("tok-cp-agent", "/v1/nodes/cp") == 200  # via its pod's spec.nodeName
    assert status("tok-cp-agent", "/v1/nodes/host1") == 403
    assert status("tok-other-sa", "/v1/nodes/cp") == 401
    assert status("tok-wrong-aud", "/v1/nodes/host1") == 401
    assert status("tok-admin", "/v1/nodes") == 200
    reviews = kube.requests("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert {r.data["spec"]["token"] for r in reviews} >= {"tok-host1", "tok-cp-agent", ADMIN_TOKEN}
    assert all(r.data["spec"]["audiences"] == AUD for r in reviews)
    assert kube.requests("GET", f"/api/v1/namespaces/{NS}/pods/dpunet-node-x1")


def test_port_admission_and_pod_networks(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    kube.pod("default", "pod1", "uid-p1", "host1")
    kube.pod("default", "pod2", "uid-p2", "cp")
    with ctl.client("tok-host1") as host1:
        assert (
            host1.put("/v1/ports/default/nope", json=port_req("host1", "uid-x")).status_code == 403
        )
        assert (
            host1.put("/v1/ports/default/pod1", json=port_req("host1", "uid-old")).status_code
            == 409
        )
        assert (
            host1.put("/v1/ports/default/pod2", json=port_req("host1", "uid-p2")).status_code == 403
        )
        binder = bind_when_created(ovn, "default_pod1")
        resp = host1.put("/v1/ports/default/pod1", json=port_req("host1", "uid-p1"))
        binder.join(5)
    assert resp.status_code == 200, resp.text
    port = resp.json()
    assert port["up"] is True and "default_pod1" in lsps(ovn)
    assert "nope" not in ovn.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port")

    pod = kube.get("/api/v1/namespaces/default/pods/pod1")
    assert pod is not None
    networks = json.loads(pod["metadata"]["annotations"]["k8s.ovn.org/pod-networks"])
    gateway = port["gateways"][0]
    assert networks == {
        "default": {
            "ip_addresses": port["ips"],
            "mac_address": port["mac"],
            "gateway_ips": [gateway],
            "ip_address": port["ips"][0],
            "gateway_ip": gateway,
            "role": "primary",
        }
    }
    patches = kube.requests("PATCH", "/api/v1/namespaces/default/pods/pod1")
    assert patches and patches[-1].headers["Content-Type"] == "application/merge-patch+json"
    assert patches[-1].data["metadata"]["uid"] == "uid-p1"


def test_deleted_pod_releases_its_port(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    assert "default_pod1" in lsps(ovn)
    kube.delete("/api/v1/namespaces/default/pods/pod1")  # no CNI DEL ever comes
    wait_until("the deleted pod's port released", lambda: "default_pod1" not in lsps(ovn))


def test_dpu_failures_become_pod_events(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc
) -> None:
    kube.pod("default", "pod3", "uid-p3", "host1")

    def reasons() -> list[str]:
        return [
            e["reason"]
            for e in kube.events("default")
            if e["involvedObject"]
            == {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": "default",
                "name": "pod3",
                "uid": "uid-p3",
            }
        ]

    with ctl.client("tok-host1") as host1:
        resp = host1.put("/v1/ports/default/pod3?timeout=1", json=port_req("host1", "uid-p3", 2))
        assert resp.status_code == 504
        wait_until("a DPUNotReady event", lambda: "DPUNotReady" in reasons())
        ovn.sbctl("lsp-bind", "k8s-host1", "dpu1")  # the DPU comes up: management port bound
        wait_until("k8s-host1 up", lambda: ovn.nbctl("lsp-get-up", "k8s-host1").strip() == "up")
        resp = host1.put("/v1/ports/default/pod3?timeout=1", json=port_req("host1", "uid-p3", 2))
        assert resp.status_code == 504
        wait_until("a DPUTimeout event", lambda: "DPUTimeout" in reasons())
    event = next(e for e in kube.events("default") if e["reason"] == "DPUNotReady")
    assert event["type"] == "Warning" and "k8s-host1" in event["message"]
    assert event["source"] == {"component": "dpunet-controller"}


def test_agent_reports_become_pod_events(kube: KubeMock, ctl: ControllerProc) -> None:
    report = {"node": "host1", "uid": "uid-p3", "reason": "NoVirtualFunction", "message": "no VF"}
    with ctl.client("tok-host1") as host1:
        resp = host1.post("/v1/ports/default/pod3/events", json=report)
        assert resp.status_code == 200 and resp.json() == {"recorded": True}
        for pod in ("pod2", "nope"):  # on cp (with another uid), absent: the same answer
            assert host1.post(f"/v1/ports/default/{pod}/events", json=report).status_code == 403
        other = {**report, "node": "cp"}
        assert host1.post("/v1/ports/default/pod3/events", json=other).status_code == 403
    with ctl.client("tok-cp-agent") as cp:
        assert cp.post("/v1/ports/default/pod3/events", json=other).status_code == 403
    [event] = [e for e in kube.events("default") if e["reason"] == "NoVirtualFunction"]
    assert event["involvedObject"]["name"] == "pod3" and event["message"] == "no VF"


def test_standby_takes_over_within_the_lease(
    ovn: OvnCentral, kube: KubeMock, ctl: ControllerProc, tmp_path: Path
) -> None:
    first = (kube.get(LEASE) or {})["spec"]["holderIdentity"]
    standby = start(ovn, kube, tmp_path)
    try:
        time.sleep(2)
        assert not standby.ready()  # a candidate, not elected
        assert (kube.get(LEASE) or {})["spec"]["holderIdentity"] == first
        ctl.kill()  # SIGKILL: no release, the Lease must expire
        last = (kube.get(LEASE) or {})["spec"]  # the dead holder's last renewal
        wait_until(
            "a new holder",
            lambda: (kube.get(LEASE) or {})["spec"]["holderIdentity"] != first,
            # by design the lease duration + a retry period after the last renewal it saw;
            # twice that again for a loaded CI
            timeout=3 * (K8S_LEASE["lease_duration"] + K8S_LEASE["lease_retry_period"]),
        )
        taken = (kube.get(LEASE) or {})["spec"]
        expired = _micro_time(last["renewTime"]) + timedelta(seconds=last["leaseDurationSeconds"])
        assert _micro_time(taken["acquireTime"]) >= expired, "took a Lease that had not expired"
        assert taken["leaseTransitions"] == last["leaseTransitions"] + 1
        standby.wait_ready(timeout=15)  # then NB lock, reload, ready
        with httpx.Client(base_url=standby.url, headers={"Authorization": "Bearer tok-host1"}) as c:
            assert c.get("/v1/nodes/host1").status_code == 200
    finally:
        standby.close()
    released = (kube.get(LEASE) or {})["spec"]
    assert released.get("holderIdentity") is None  # a clean stop gives the Lease up


def _micro_time(text: str) -> datetime:
    """A Lease's MicroTime field."""
    return datetime.fromisoformat(text)


def test_the_rendered_rbac_covers_every_call(kube: KubeMock) -> None:
    """Every request the controller made to kmock in this module is granted by the rendered
    ClusterRole and Role (test_k8s_lab.py also checks that nothing more is granted)."""
    missing = kube.permissions() - granted(render(DeployValues()))
    assert not missing, sorted(missing)
