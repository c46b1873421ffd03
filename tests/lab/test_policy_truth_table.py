"""NetworkPolicy truth table on the data path: every (source, destination, protocol, port)
of six pods in three namespaces (VF pods on host1, switched by the DPU's OVS; veth pods on
cp), the two nodes (through their management ports) and `ext`, checked against the model
of the semantics written from the API reference (tests/policy_oracle.py): the oracle
decides each expectation, the data path must agree.

The policies cover every field: podSelector (matchLabels, matchExpressions In/NotIn/
Exists), namespaceSelector alone and ANDed with a podSelector, ipBlock with except
(ingress and egress, egress to `ext`), named ports resolved per pod (`http` is 8080 on one
pod and 9090 on another; ingress and egress), an endPort range, TCP and UDP, policyTypes
defaulting, default deny both ways. SCTP cannot be probed in the lab (the responder and the
userspace datapath's conntrack have no SCTP here): a rule for SCTP 8080 must leave TCP 8080
closed, and the unit tests (tests/unit/test_policy_acls.py) compare SCTP verdicts.

Phases: no policy, all policies, a namespace relabelled, everything deleted. In each, all
probes run in parallel (one prober process per source, a thread per target, short
timeouts), repeated until every verdict matches the oracle, then all once more: a denied
connection that answers fails at once; an allowed one that does not answer gets two more
tries (a lost datagram), then fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from dpunet.cli.lab import lab as lab_cli
from dpunet.lab import daemons, pods, svc
from dpunet.lab.lab import down
from dpunet.lab.topology import EXT_ADDRESS, LAB_CLUSTER_CIDR, LabPlan, LabSpec
from policy_oracle import Endpoint, Policy, connection_allowed

pytestmark = pytest.mark.lab

LAB = "ptt"
CONVERGE_S = 60.0  # the longest a phase may take to hold (a loaded machine: 30 s was short)
PROBE_TIMEOUT_S = 1.0
PROTO_PORTS = [("TCP", 8080), ("TCP", 9090), ("UDP", 5353), ("UDP", 9090)]
# name -> (node, namespace, labels, named container ports)
PODS: dict[str, tuple[str, str, dict[str, str], list[str]]] = {
    "web": ("host1", "a", {"app": "web", "tier": "front"}, ["http:8080/tcp", "dns:5353/udp"]),
    "db": ("cp", "a", {"app": "db"}, []),
    "api": ("host1", "b", {"app": "api", "tier": "back"}, ["http:9090/tcp"]),
    "cli": ("cp", "b", {"app": "cli", "tier": "back"}, []),
    "x": ("host1", "c", {"app": "x"}, ["http:8080/tcp"]),
    "y": ("cp", "c", {"app": "y"}, []),
}
NAMESPACE_LABELS = {"a": {"team": "a"}, "b": {"team": "b", "env": "prod"}, "c": {"env": "dev"}}
RELABELLED_C = {"team": "c"}
NODES = ("host1", "cp")
converged: dict[str, dict[str, float]] = {}  # phase -> seconds until it held, flows


@dataclass(frozen=True)
class Flow:
    """One connection to try: from a pod, node or `ext`, to a pod or `ext`."""

    source: str
    target: str
    protocol: str
    port: int

    def __str__(self) -> str:
        return f"{self.source}->{self.target} {self.protocol}/{self.port}"


def lab_cmd(*args: str) -> str:
    """`dpunet lab ARGS --name ptt`; its output (the test fails when it fails)."""
    result = CliRunner().invoke(lab_cli, [*args, "--name", LAB])
    assert result.exit_code == 0, f"lab {' '.join(args)}: {result.output}"
    return result.output


def policy(namespace: str, name: str, spec: dict[str, Any]) -> Policy:
    """A policy as the oracle reads it (`namespace`, `name`, `spec`)."""
    return {"namespace": namespace, "name": name, "spec": spec}


def labels(**kv: str) -> dict[str, Any]:
    return {"matchLabels": kv}


def expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    expr: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        expr["values"] = list(values)
    return {"matchExpressions": [expr]}


def policies(x_ip: str) -> list[Policy]:
    """The policy set; `x_ip`: pod c/x's address (an ipBlock's except)."""
    ext_block = {"ipBlock": {"cidr": f"{EXT_ADDRESS}/32"}}
    return [
        # default deny both ways in namespace a
        policy("a", "deny-both", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        # AND of selectors; named ports on web (http = 8080/TCP, dns = 5353/UDP)
        policy(
            "a",
            "web-from-b-back",
            {
                "podSelector": labels(app="web"),
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": labels(team="b"),
                                "podSelector": expression("tier", "In", "back"),
                            }
                        ],
                        "ports": [{"port": "http"}, {"protocol": "UDP", "port": "dns"}],
                    }
                ],
            },
        ),
        # podSelector alone with an endPort range; namespaceSelector alone on UDP
        policy(
            "a",
            "db-in",
            {
                "podSelector": labels(app="db"),
                "ingress": [
                    {"from": [{"podSelector": {}}], "ports": [{"port": 8000, "endPort": 8999}]},
                    {
                        "from": [{"namespaceSelector": labels(env="dev")}],
                        "ports": [{"protocol": "UDP", "port": 9090}],
                    },
                ],
            },
        ),
        # egress (policyTypes defaulted: Ingress and Egress): own namespace, any pod's
        # named port http (resolved on the destination), ext on 8080/TCP and 5353/UDP
        policy(
            "a",
            "out",
            {
                "podSelector": {},
                "egress": [
                    {"to": [{"podSelector": {}}]},
                    {"to": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]},
                    {
                        "to": [ext_block],
                        "ports": [{"port": 8080}, {"protocol": "UDP", "port": 5353}],
                    },
                ],
            },
        ),
        # namespaceSelector (Exists) + named port; ipBlock with except on UDP; SCTP only
        policy(
            "b",
            "api-in",
            {
                "podSelector": labels(app="api"),
                "ingress": [
                    {
                        "from": [{"namespaceSelector": expression("team", "Exists")}],
                        "ports": [{"port": "http"}],
                    },
                    {
                        "from": [{"ipBlock": {"cidr": LAB_CLUSTER_CIDR, "except": [f"{x_ip}/32"]}}],
                        "ports": [{"protocol": "UDP"}],
                    },
                    {"ports": [{"protocol": "SCTP", "port": 8080}]},
                ],
            },
        ),
        # egress everywhere but the underlay (ext); ingress isolated by defaulting
        policy(
            "b",
            "cli-out",
            {
                "podSelector": labels(app="cli"),
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.0.2.0/24"]}}]}
                ],
            },
        ),
        # NotIn; two peers (podSelector alone, namespaceSelector alone); TCP named + UDP
        policy(
            "c",
            "x-in",
            {
                "podSelector": expression("app", "NotIn", "y"),
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": labels(app="y")},
                            {"namespaceSelector": labels(team="a")},
                        ],
                        "ports": [{"port": "http"}, {"protocol": "UDP", "port": 9090}],
                    }
                ],
            },
        ),
        # egress deny for y
        policy("c", "y-no-egress", {"podSelector": labels(app="y"), "policyTypes": ["Egress"]}),
    ]


def manifest(p: Policy) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": p["name"], "namespace": p["namespace"]},
        "spec": p["spec"],
    }


@pytest.fixture(scope="module")
def plan() -> Iterator[LabPlan]:
    down(LAB)
    up = [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB]
    proc = subprocess.run(up, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"lab up failed:\n{proc.stdout}\n{proc.stderr}"
    plan = LabPlan(LabSpec(name=LAB))
    for name, (node, namespace, pod_labels, ports) in PODS.items():
        args = ["pod", "add", name, "--node", node, "--engine", "netns"]
        args += ["--namespace", namespace, "--labels", ",".join(f"{k}={v}" for k, v in
                                                                pod_labels.items())]  # fmt: skip
        for port in ports:
            args += ["--port", port]
        lab_cmd(*args)
    for namespace, ns_labels in NAMESPACE_LABELS.items():
        lab_cmd("namespace", "label", namespace, ",".join(f"{k}={v}" for k, v in ns_labels.items()))
    listeners = [pods.get_pod(plan, name) for name in PODS]
    listeners.append(pods.Pod("ext", "ext", "netns", "", f"/run/netns/{plan.ext.netns}"))
    (first_proto, first_port), *more = [(p.lower(), n) for p, n in PROTO_PORTS]
    svc.start_responders(plan, "ptt", listeners, first_proto, first_port, more=more)
    yield plan
    svc.stop_responders(plan, "ptt")
    print(f"\nconvergence (s): {json.dumps(converged)}")
    down(LAB)


def mgmt_ip(plan: LabPlan, node: str) -> str:
    """The address of `node`'s management port (LSP k8s-<node>: `MAC IP`)."""
    out = daemons.nbctl(plan, "lsp-get-addresses", f"k8s-{node}").split()
    return out[1]


def endpoints(plan: LabPlan) -> dict[str, Endpoint]:
    """Every source and target as the oracle sees it."""
    nodes = {node: mgmt_ip(plan, node) for node in NODES}
    out = {node: Endpoint(ip) for node, ip in nodes.items()}
    out["ext"] = Endpoint(str(EXT_ADDRESS))
    for name, (node, namespace, pod_labels, ports) in PODS.items():
        ip = pods.get_pod(plan, name).ip
        assert ip is not None
        named = tuple((p["name"], p["protocol"], p["containerPort"]) for p in map(pods.parse_port,
                                                                               ports))  # fmt: skip
        out[name] = Endpoint(ip, namespace, name, pod_labels, named, nodes[node])
    return out


def all_flows() -> list[Flow]:
    """Pod -> every other pod and ext, node -> every pod, on every protocol/port."""
    pairs = [(s, t) for s in PODS for t in [*PODS, "ext"] if s != t]
    pairs += [(n, t) for n in NODES for t in PODS]
    return [Flow(s, t, proto, port) for s, t in pairs for proto, port in PROTO_PORTS]


def source_netns(plan: LabPlan, source: str) -> str:
    if source in PODS:
        return pods.get_pod(plan, source).netns
    return plan.node(source).netns


def probe(plan: LabPlan, eps: dict[str, Endpoint], flows: list[Flow]) -> dict[Flow, bool]:
    """Try every flow at once: whether the target's own answer came back."""
    by_source: dict[str, list[Flow]] = {}
    for flow in flows:
        by_source.setdefault(flow.source, []).append(flow)

    def run(source: str) -> dict[Flow, bool]:
        mine = by_source[source]
        targets = [(f.protocol.lower(), eps[f.target].ip, f.port) for f in mine]
        answers = svc.probe_many(source_netns(plan, source), targets, PROBE_TIMEOUT_S)
        return {f: answers[t] == f.target for f, t in zip(mine, targets, strict=True)}

    out: dict[Flow, bool] = {}
    with ThreadPoolExecutor(max_workers=len(by_source)) as pool:
        for result in pool.map(run, by_source):
            out |= result
    return out


def expected(
    eps: dict[str, Endpoint], pols: list[Policy], ns_labels: dict[str, dict[str, str]]
) -> dict[Flow, bool]:
    """The oracle's verdict for every flow."""
    return {
        f: connection_allowed(eps[f.source], eps[f.target], f.protocol, f.port, pols, ns_labels)
        for f in all_flows()
    }


def hold(plan: LabPlan, eps: dict[str, Endpoint], want: dict[Flow, bool], phase: str) -> None:
    """Probe until every flow's outcome is the oracle's, then once more (see the module)."""
    started = time.monotonic()
    pending = dict(want)
    while pending:
        got = probe(plan, eps, list(pending))
        pending = {f: w for f, w in pending.items() if got[f] != w}
        if pending and time.monotonic() - started > CONVERGE_S:
            wrong = sorted(f"{f}: oracle {'allows' if w else 'denies'}" for f, w in pending.items())
            raise AssertionError(f"{phase}: {len(wrong)} flows differ after {CONVERGE_S} s:\n"
                                 + "\n".join(wrong))  # fmt: skip
    allowed = sum(want.values())
    converged[phase] = {
        "s": round(time.monotonic() - started, 1),
        "allowed": allowed,
        "denied": len(want) - allowed,
    }
    got = probe(plan, eps, list(want))
    leaked = sorted(str(f) for f, w in want.items() if got[f] and not w)
    assert leaked == [], f"{phase}: denied by the oracle, yet answered: {leaked}"
    missing = [f for f, w in want.items() if w and not got[f]]
    for _ in range(2):
        if missing:
            again = probe(plan, eps, missing)
            missing = [f for f in missing if not again[f]]
    assert missing == [], f"{phase}: allowed by the oracle, no answer: {list(map(str, missing))}"


def apply(tmp_path: Path, pols: list[Policy]) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump_all([manifest(p) for p in pols]))
    lab_cmd("policy", "apply", "-f", str(path))


# (flow, a dpunet ACL the trace must name): allowed and denied, ingress and egress, to ext
TRACED = [
    (Flow("api", "web", "TCP", 8080), "a/web-from-b-back:Ingress:0"),
    (Flow("db", "web", "TCP", 8080), "a:IngressDefaultDeny:deny"),
    (Flow("web", "ext", "TCP", 8080), "a/out:Egress:2"),
    (Flow("cli", "ext", "TCP", 8080), "b:EgressDefaultDeny:deny"),
    (Flow("x", "api", "UDP", 9090), "b:IngressDefaultDeny:deny"),
    (Flow("web", "api", "TCP", 9090), "b/api-in:Ingress:0"),
]


def verify_policy(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "dpunet.cli.main", "verify", "policy", "--lab", LAB, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def pod_ref(name: str) -> str:
    return f"{PODS[name][1]}/{name}" if name in PODS else str(EXT_ADDRESS)


def verify_agrees(plan: LabPlan, eps: dict[str, Endpoint], want: dict[Flow, bool]) -> None:
    """`dpunet verify policy` (ovn-trace) gives the data path's verdict and names the ACL
    that decided; bad input is one clear line."""
    got = probe(plan, eps, [f for f, _ in TRACED])
    for _ in range(2):  # an allowed connection may lose a packet (see the module)
        retry = [f for f, _ in TRACED if want[f] and not got[f]]
        got |= probe(plan, eps, retry) if retry else {}
    for flow, acl in TRACED:
        port = f"{flow.port}/{flow.protocol.lower()}"
        ends = ["--from", pod_ref(flow.source), "--to", pod_ref(flow.target)]
        proc = verify_policy(*ends, "--port", port, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        trace = json.loads(proc.stdout)
        assert trace["allowed"] == got[flow] == want[flow], (str(flow), trace)
        assert acl in trace["acls"], (str(flow), trace["acls"])
    text = verify_policy("--from", "a/db", "--to", "a/web", "--port", "8080").stdout
    assert "denied" in text and "a:IngressDefaultDeny:deny" in text, text
    print(f"\n{text}")
    for bad, reason in (
        (["--from", "a/nope", "--to", "a/web"], "no pod a/nope"),
        (["--from", "a/db", "--to", "a/web", "--port", "8080/icmp"], "not one of"),
        (["--from", "a/db", "--to", "a/web", "--port", "70000"], "1-65535"),
    ):
        proc = verify_policy(*bad)
        assert proc.returncode == 1 and reason in proc.stderr, (bad, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_every_flow_as_the_oracle_says(plan: LabPlan, tmp_path: Path) -> None:
    eps = endpoints(plan)
    ns_labels = {ns: dict(v) for ns, v in NAMESPACE_LABELS.items()}
    hold(plan, eps, expected(eps, [], ns_labels), "no policy")

    pols = policies(eps["x"].ip)
    want = expected(eps, pols, ns_labels)
    # the table is not trivial: both verdicts, on each protocol and for every source
    assert {w for f, w in want.items() if f.protocol == "UDP"} == {True, False}
    assert {w for f, w in want.items() if f.protocol == "TCP"} == {True, False}
    assert all(any(not w for f, w in want.items() if f.source == s) for s in PODS)
    apply(tmp_path, pols)
    hold(plan, eps, want, "all policies")
    verify_agrees(plan, eps, want)

    lab_cmd("namespace", "label", "c", ",".join(f"{k}={v}" for k, v in RELABELLED_C.items()))
    relabelled = {**ns_labels, "c": RELABELLED_C}
    want_relabelled = expected(eps, pols, relabelled)
    assert want_relabelled != want  # the relabel matters to the oracle
    hold(plan, eps, want_relabelled, "namespace c relabelled")

    for p in pols:
        lab_cmd("policy", "delete", f"{p['namespace']}/{p['name']}")
    hold(plan, eps, expected(eps, [], relabelled), "policies deleted")
