"""NetworkPolicy on the data path: real TCP connections between pods on a VF (host1, switched
by its DPU's OVS) and veth pods on cp, in two namespaces, driven by the lab commands
(`lab pod add --namespace --labels --port`, `lab namespace label`, `lab policy apply|delete`).

Every expectation is polled until it holds (OVN applies ACLs asynchronously) with short
per-connection timeouts; an expectation that never holds fails the test with the last
outcome, so a policy whose ACLs are not written (or wrong) fails here. An allowed
connection counts only when the responder's answer came back (request and reply).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dpunet.cli.lab import lab as lab_cli
from dpunet.lab import daemons, pods, svc
from dpunet.lab.lab import down
from dpunet.lab.runner import LabError
from dpunet.lab.topology import EXT_ADDRESS, LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "pol"
HTTP, OTHER = 8080, 9090
CONVERGE_S = 20.0  # the longest an expectation may take to hold
PROBE_TIMEOUT_S = 0.7
# name -> (node, engine, namespace, labels): web/db in `a`, client/other/srv in `b`
PODS = {
    "web": ("host1", "netns", "a", "app=web"),
    "spy": ("host1", "netns", "a", "app=spy"),
    "db": ("cp", "netns", "a", "app=db"),
    "client": ("cp", "podman", "b", "app=client"),
    "other": ("host1", "netns", "b", "app=other"),
    "srv": ("cp", "netns", "b", "app=srv"),
}
converged: dict[str, float] = {}  # what was awaited -> seconds until it held


def lab_cmd(*args: str) -> str:
    """`dpunet lab ARGS --name pol`; its output (the test fails when it fails)."""
    result = CliRunner().invoke(lab_cli, [*args, "--name", LAB])
    assert result.exit_code == 0, f"lab {' '.join(args)}: {result.output}"
    return result.output


@pytest.fixture(scope="module")
def plan() -> Iterator[LabPlan]:
    down(LAB)
    up = [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB]
    proc = subprocess.run(up, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"lab up failed:\n{proc.stdout}\n{proc.stderr}"
    plan = LabPlan(LabSpec(name=LAB))
    for name, (node, engine, namespace, labels) in PODS.items():
        lab_cmd("pod", "add", name, "--node", node, "--engine", engine, "--namespace", namespace,
                "--labels", labels, "--port", f"http:{HTTP}/tcp")  # fmt: skip
    servers = [pods.get_pod(plan, name) for name in PODS]
    ext = pods.Pod("ext", "ext", "netns", "", f"/run/netns/{plan.ext.netns}")
    svc.start_responders(plan, "pol-http", [*servers, ext], "tcp", HTTP)
    svc.start_responders(plan, "pol-other", servers, "tcp", OTHER)
    yield plan
    for group in ("pol-http", "pol-other"):
        svc.stop_responders(plan, group)
    print(f"\nconvergence (s): {json.dumps(converged, indent=1)}")
    down(LAB)


def outcome(plan: LabPlan, source: str, target: str, port: int) -> str:
    """One TCP connection from pod (or node, or `ext`) `source` to pod `target`: the
    answering responder's name, or `timeout`/`refused`/... ."""
    netns = source_netns(plan, source)
    host = str(EXT_ADDRESS) if target == "ext" else str(pods.get_pod(plan, target).ip)
    answers = svc.probe(netns, "tcp", host, port, count=1, timeout=PROBE_TIMEOUT_S)["answers"]
    return next(iter(answers))


def source_netns(plan: LabPlan, source: str) -> str:
    if source in PODS:
        return pods.get_pod(plan, source).netns
    return plan.node(source).netns  # a node (through its management port) or ext


def expect(plan: LabPlan, flows: dict[tuple[str, str, int], bool], what: str) -> None:
    """Poll until every (source, target, port) connects (True: the target's answer came
    back) or does not (False: no answer), then check them all once more."""
    started = time.monotonic()
    pending = dict(flows)
    last: dict[tuple[str, str, int], str] = {}
    while pending:
        for flow, allowed in list(pending.items()):
            last[flow] = got = outcome(plan, *flow)
            if (got == flow[1]) == allowed:
                del pending[flow]
        if pending and time.monotonic() - started > CONVERGE_S:
            detail = {f"{s}->{t}:{p}": last[(s, t, p)] for s, t, p in pending}
            raise AssertionError(f"{what}: not as expected after {CONVERGE_S} s: {detail}")
    converged[what] = round(time.monotonic() - started, 2)
    for flow, allowed in flows.items():
        got = outcome(plan, *flow)
        assert (got == flow[1]) == allowed, f"{what}: {flow} flipped back to {got}"


def apply(tmp_path: Path, *docs: dict[str, object]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    lab_cmd("policy", "apply", "-f", str(path))


def policy(namespace: str, name: str, spec: dict[str, object]) -> dict[str, object]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def app(name: str) -> dict[str, object]:
    return {"matchLabels": {"app": name}}


DENY_A = policy("a", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})
WEB_HTTP = policy("a", "web-http", {
    "podSelector": app("web"),
    "ingress": [{"from": [{"podSelector": app("db")}], "ports": [{"port": "http"}]}],
})  # fmt: skip
FROM_B = policy("a", "from-team-b", {
    "podSelector": app("web"),
    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                           "podSelector": app("client")}],
                 "ports": [{"port": HTTP}]}],
})  # fmt: skip
NOT_EXT = policy("b", "not-ext", {
    "podSelector": app("other"),
    "policyTypes": ["Egress"],
    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [f"{EXT_ADDRESS}/32"]}}]}],
})  # fmt: skip
DENY_CLIENT_EGRESS = policy("b", "client-no-egress", {
    "podSelector": app("client"), "policyTypes": ["Egress"],
})  # fmt: skip


def test_lab_pods_carry_namespace_labels_and_named_ports(plan: LabPlan) -> None:
    web = pods.get_pod(plan, "web")
    assert web.lsp == "a_web" and web.pci is not None  # a VF pod in namespace a
    assert pods.get_pod(plan, "client").lsp == "b_client"
    lsp = daemons.nbctl(plan, "get", "Logical_Switch_Port", "a_web", "external_ids")
    assert '"dpunet:label:app"=web' in lsp and f'"dpunet:port:http"="{HTTP}/TCP"' in lsp, lsp


def test_bad_labels_are_refused_by_the_cni_with_a_reason(plan: LabPlan) -> None:
    with pytest.raises(LabError, match=r"code 7.*labels"):
        pods.add_pod(plan, "bad", "cp", "netns", labels={"app": "not ok!"})
    assert all(p.name != "bad" for p in pods.load_pods(plan))


def test_policies_on_the_data_path(plan: LabPlan, tmp_path: Path) -> None:
    everything = {
        ("client", "web", HTTP): True, ("client", "db", HTTP): True, ("db", "web", OTHER): True,
        ("spy", "web", HTTP): True, ("other", "srv", HTTP): True, ("other", "ext", HTTP): True,
        ("client", "srv", HTTP): True,
    }  # fmt: skip
    expect(plan, everything, "no policy")

    apply(tmp_path, DENY_A)
    expect(plan, {
        ("client", "web", HTTP): False,  # b -> a, VF pod
        ("client", "db", HTTP): False,  # b -> a, veth pod on the same node
        ("spy", "web", HTTP): False,  # inside a
        ("other", "srv", HTTP): True,  # b is not isolated
        ("host1", "web", HTTP): True,  # kubelet probes: node -> pod through ovn-k8s-mp0
        ("cp", "db", HTTP): True,
    }, "default-deny ingress in a")  # fmt: skip

    apply(tmp_path, WEB_HTTP)
    expect(plan, {
        ("db", "web", HTTP): True,  # the named port `http`, from the selected peer
        ("db", "web", OTHER): False,  # another port
        ("spy", "web", HTTP): False,  # an unselected peer
        ("client", "web", HTTP): False,  # podSelector alone: the policy's namespace only
    }, "allow db -> web:http")  # fmt: skip

    apply(tmp_path, FROM_B)
    expect(plan, {("client", "web", HTTP): False}, "namespaceSelector before the label")
    lab_cmd("namespace", "label", "b", "team=b")
    expect(plan, {
        ("client", "web", HTTP): True,
        ("other", "web", HTTP): False,  # namespace AND pod selector
        ("client", "web", OTHER): False,
    }, "namespaceSelector after the label")  # fmt: skip

    apply(tmp_path, NOT_EXT)
    expect(plan, {
        ("other", "ext", HTTP): False,  # the except
        ("other", "srv", HTTP): True,  # inside the cidr
        ("client", "ext", HTTP): True,  # not selected
    }, "egress ipBlock with except")  # fmt: skip

    apply(tmp_path, DENY_CLIENT_EGRESS)
    expect(plan, {
        ("client", "srv", HTTP): False,
        ("client", "ext", HTTP): False,
        ("client", "web", HTTP): False,  # allowed in, but client may not send
        ("srv", "client", HTTP): True,  # client's ingress is not isolated
    }, "egress deny")  # fmt: skip

    listed = lab_cmd("policy", "list", "-o", "json")
    keys = {f"{p['namespace']}/{p['name']}" for p in json.loads(listed)}
    assert keys == {"a/deny-all", "a/web-http", "a/from-team-b", "b/not-ext",
                    "b/client-no-egress"}  # fmt: skip
    for key in sorted(keys):
        lab_cmd("policy", "delete", key)
    expect(plan, {**everything, ("client", "web", OTHER): True}, "policies deleted")
