"""Services in the lab: backends that answer with their pod name, and the service checks.

`add_service` starts a responder (`python -m dpunet.lab.responder serve`) in each
backend pod's network namespace on the target port and creates the service through
the controller's API (backends selected by pod name). A responder ends by itself when
its pod's namespace goes away. `checks` probes every service of the lab: pods on each
node and the nodes themselves (through their management port) reach the cluster IP,
`ext` reaches the node ports on each gateway router's address, connections spread over
all backends (or stick to one with ClientIP affinity), and a service without backends
refuses connections at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dpunet.contract.client import ClientError
from dpunet.lab import pods
from dpunet.lab.checks import CheckResult
from dpunet.lab.runner import LabError, in_netns, pid_alive, read_pid, run, wait_for
from dpunet.lab.services import admin_client
from dpunet.lab.topology import LabPlan, Node

DEFAULT_NAMESPACE = "default"  # the namespace of the lab's netns pods
PROTOCOLS = ("tcp", "udp")
_RESPONDER = [sys.executable, "-m", "dpunet.lab.responder"]
PROBE_COUNT = 3
SPREAD_COUNT = 24


def responders_dir(plan: LabPlan, service: str) -> Path:
    """Pid, ready and log files of a service's responders."""
    return plan.run_dir / "services" / service


def port_ref(pod: pods.Pod) -> tuple[str, str]:
    """(namespace, pod name) of a lab pod's port (from the host agent's record)."""
    if pod.lsp:
        namespace, _, name = pod.lsp.partition("_")
        return namespace, name
    return DEFAULT_NAMESPACE, pod.name


def _namespace(plan: LabPlan, service: str) -> str:
    """The namespace `add_service` created a service in."""
    record = responders_dir(plan, service) / "service.json"
    try:
        return str(json.loads(record.read_text())["namespace"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_NAMESPACE


# ------------------------------------------------------------------ responders
def start_responders(
    plan: LabPlan,
    service: str,
    backends: list[pods.Pod],
    protocol: str,
    port: int,
    *,
    more: Sequence[tuple[str, int]] = (),
) -> None:
    """One responder per backend pod on `port` (and each (protocol, port) of `more`),
    answering with the pod's name."""
    stop_responders(plan, service)
    d = responders_dir(plan, service)
    d.mkdir(parents=True)
    for pod in backends:
        ready = d / f"{pod.name}.ready"
        argv = [*_RESPONDER, "serve", pod.name]
        for proto, number in [(protocol, port), *more]:
            argv += [f"--{proto}", str(number)]
        argv += ["--watch", pod.netns, "--ready", str(ready)]
        with open(d / f"{pod.name}.log", "ab") as log:
            proc = subprocess.Popen(
                in_netns(pod.netns, argv), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        (d / f"{pod.name}.pid").write_text(f"{proc.pid}\n")
    for pod in backends:
        pidfile = d / f"{pod.name}.pid"

        def up(pod: pods.Pod = pod, pidfile: Path = pidfile) -> bool:
            if not pid_alive(read_pid(pidfile)):
                log = (d / f"{pod.name}.log").read_text(errors="replace")[-800:]
                raise LabError(f"the responder in pod {pod.name} exited: {log.strip()}")
            return (d / f"{pod.name}.ready").exists()

        wait_for(f"the responder in pod {pod.name}", up, timeout=15)


def stop_responders(plan: LabPlan, service: str) -> None:
    """Stop a service's responders and remove their files."""
    d = responders_dir(plan, service)
    if not d.is_dir():
        return
    for pidfile in d.glob("*.pid"):
        pid = read_pid(pidfile)
        if pid_alive(pid) and "dpunet.lab.responder" in _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid or 0, signal.SIGTERM)
    shutil.rmtree(d)


def _cmdline(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# ------------------------------------------------------------------ services
def add_service(
    plan: LabPlan,
    name: str,
    port: int,
    backends: list[str],
    *,
    protocol: str = "tcp",
    target_port: int | None = None,
    node_port: int | str | None = None,
    affinity: bool = False,
) -> dict[str, Any]:
    """Responders in the `backends` pods and service `<name>` over them, in the backends'
    namespace; `node_port`: a port, or `auto` to have one allocated (type NodePort)."""
    if protocol not in PROTOCOLS:
        raise LabError(f"protocol must be one of {', '.join(PROTOCOLS)}")
    backend_pods = [pods.get_pod(plan, b) for b in backends]
    refs = {p.name: port_ref(p) for p in backend_pods}
    namespaces = sorted({namespace for namespace, _ in refs.values()})
    if len(namespaces) > 1:
        where = ", ".join(f"{pod} in {ref[0]}" for pod, ref in refs.items())
        raise LabError(f"a service selects pods of one namespace ({where})")
    namespace = namespaces[0]
    target = target_port or port
    spec_port: dict[str, Any] = {"port": port, "protocol": protocol.upper(), "targetPort": target}
    spec: dict[str, Any] = {"ports": [spec_port], "pods": [ref[1] for ref in refs.values()]}
    if node_port is not None:
        spec["type"] = "NodePort"
        if node_port != "auto":
            spec_port["nodePort"] = int(node_port)
    if affinity:
        spec["sessionAffinity"] = "ClientIP"
    start_responders(plan, name, backend_pods, protocol, target)
    record = {"namespace": namespace, "name": name}
    (responders_dir(plan, name) / "service.json").write_text(json.dumps(record))
    try:
        with admin_client(plan) as client:
            return client.put_service(namespace, name, spec).model_dump(mode="json", by_alias=True)
    except ClientError as exc:
        stop_responders(plan, name)
        raise LabError(f"service {name}: {exc}") from exc


def del_service(plan: LabPlan, name: str) -> str:
    """Remove service `<name>` (made by `add_service`, else in `default`) and its
    responders; the controller's answer."""
    try:
        with admin_client(plan) as client:
            detail = client.delete_service(_namespace(plan, name), name).detail
    except ClientError as exc:
        raise LabError(f"service {name}: {exc}") from exc
    stop_responders(plan, name)
    return detail


def list_services(plan: LabPlan) -> list[dict[str, Any]]:
    """Every service the lab's controller knows."""
    try:
        with admin_client(plan) as client:
            return [s.model_dump(mode="json", by_alias=True) for s in client.list_services()]
    except ClientError as exc:
        raise LabError(f"listing services: {exc}") from exc


# ------------------------------------------------------------------ checks
def probe(
    netns: str,
    protocol: str,
    host: str,
    port: int,
    count: int = PROBE_COUNT,
    timeout: float = 3.0,
) -> dict[str, Any]:
    """`count` requests from inside `netns` (`timeout` seconds each): `answers` (count by
    responder name, or `refused`, `reset`, `timeout`, `error:...`) and `peers` (client
    addresses the responders saw)."""
    argv = [*_RESPONDER, "probe", protocol, host, str(port), "--count", str(count)]
    argv += ["--timeout", str(timeout)]
    proc = run(argv, netns=netns, check=False, timeout=count * (timeout + 1) + 10)
    try:
        result = json.loads(proc.stdout)
        return {"answers": dict(result["answers"]), "peers": list(result["peers"])}
    except (ValueError, KeyError) as exc:
        raise LabError(f"probe in {netns} failed: {proc.stderr.strip()}") from exc


def probe_many(
    netns: str, targets: Sequence[tuple[str, str, int]], timeout: float = 1.0
) -> dict[tuple[str, str, int], str]:
    """One request to each (protocol, host, port) from inside `netns`, all at once: each
    target's answer (the responder's name, or `refused`, `reset`, `timeout`, `error:...`)."""
    names = {f"{proto}:{host}:{port}": (proto, host, port) for proto, host, port in targets}
    argv = [*_RESPONDER, "probe-many", *names, "--timeout", str(timeout)]
    proc = run(argv, netns=netns, check=False, timeout=timeout + 30)
    try:
        result = json.loads(proc.stdout)
        return {names[name]: str(answer) for name, answer in result.items()}
    except (ValueError, KeyError, AttributeError) as exc:
        raise LabError(f"probe in {netns} failed: {proc.stderr.strip()}") from exc


def warm_up(netns: str, protocol: str, host: str, port: int) -> None:
    """One short request whose outcome does not count: with ClientIP affinity, OVN 23.03
    drops the first connection of a client it has no affinity entry for yet."""
    probe(netns, protocol, host, port, count=1, timeout=0.5)


_FAILURES = ("refused", "reset", "timeout", "empty")


def _answered(answers: dict[str, int], expected: set[str] | None) -> bool:
    names = set(answers)
    if expected is not None:
        return names <= expected and bool(names)
    return not any(n in _FAILURES or n.startswith("error:") for n in names)


def _detail(answers: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(answers.items()))


def _clients(plan: LabPlan, backends: set[str]) -> list[pods.Pod]:
    """One pod per node (host1..N, cp), preferring pods that are not backends."""
    out = []
    everyone = [p for p in pods.load_pods(plan) if p.ip]
    for node in [*(pair.host for pair in plan.pairs), plan.cp]:
        mine = sorted((p for p in everyone if p.node == node.name), key=lambda p: p.name)
        mine.sort(key=lambda p: p.name in backends)
        out += mine[:1]
    return out


def checks(plan: LabPlan) -> list[CheckResult]:
    """Service checks for every service of the lab (none without services)."""
    try:
        items = list_services(plan)
    except LabError as exc:
        return [CheckResult("services", "lab", "dpunet controller", False, str(exc))]
    results: list[CheckResult] = []
    for svc in items:
        results += _service_checks(plan, svc)
    return results


def _service_checks(plan: LabPlan, svc: dict[str, Any]) -> list[CheckResult]:
    name = f"{svc['namespace']}/{svc['name']}"
    port = svc["ports"][0]
    protocol = str(port["protocol"]).lower()
    if protocol not in PROTOCOLS:
        return [CheckResult(f"service {name}", "-", "-", True, f"{protocol}: not probed")]
    expected = None
    if svc.get("pods") is not None:
        wanted = {(svc["namespace"], p) for p in svc["pods"]}
        expected = {p.name for p in pods.load_pods(plan) if port_ref(p) in wanted}
    empty = not svc["backends"]
    sticky = svc["sessionAffinity"] == "ClientIP"
    vip = f"{svc['clusterIP']}:{port['port']}/{protocol}"
    results = []

    def check(what: str, source: str, netns: str, host: str, target_port: int) -> None:
        if sticky:
            warm_up(netns, protocol, host, target_port)
        answers = probe(netns, protocol, host, target_port)["answers"]
        if empty:
            ok = set(answers) == {"refused"}
            what += " (no backends: refused)"
        else:
            ok = _answered(answers, expected)
        results.append(
            CheckResult(
                f"service {name}: {what}", source, f"{host}:{target_port}", ok, _detail(answers)
            )
        )

    clients = _clients(plan, expected or set())
    for pod in clients:
        check("pod->clusterIP", f"{pod.name}@{pod.node}", pod.netns, svc["clusterIP"], port["port"])
    hosts: list[Node] = [*(pair.host for pair in plan.pairs), plan.cp]
    for node in hosts:
        check(
            "node->clusterIP (mgmt port)",
            f"{node.name} ovn-k8s-mp0",
            node.netns,
            svc["clusterIP"],
            port["port"],
        )
    if port.get("nodePort"):
        for node in hosts:
            check(
                f"ext->nodePort ({node.name} gateway)",
                "ext",
                plan.ext.netns,
                str(plan.gateway_ip(node)),
                port["nodePort"],
            )
    if clients and expected and len(expected) > 1 and not empty:
        src = clients[0]
        if sticky:
            warm_up(src.netns, protocol, svc["clusterIP"], port["port"])
        answers = probe(src.netns, protocol, svc["clusterIP"], port["port"], SPREAD_COUNT)[
            "answers"
        ]
        if sticky:
            what, ok = "affinity (one backend)", len(answers) == 1 and set(answers) <= expected
        else:
            what, ok = "spread (every backend)", set(answers) == expected
        results.append(CheckResult(f"service {name}: {what}", src.name, vip, ok, _detail(answers)))
    return results
