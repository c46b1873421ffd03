"""Workloads in the lab: podman containers or bare network namespaces, attached by CNI.

Both engines execute the real `dpunet-cni` shim the way a runtime does (the CNI
environment and the node's network config on stdin) on a network namespace made
for the pod; the `podman` engine then starts a container (runc) in that namespace
with `--network ns:PATH`. This is one code path for podman 4 (Debian 12) and
podman 5 (Debian 13, which has no CNI backend, only netavark). The `cri` engine
(dpunet.lab.cri) hands the pod to the node's containerd as a CRI pod sandbox, and
containerd executes the shim itself. Each pod is recorded in
`<run dir>/pods/<name>.json`.

A pod has a namespace (K8S_POD_NAMESPACE; `default`), labels and named container ports:
the netns and podman engines pass the latter as a runtime passes capability arguments,
in the config's `runtimeConfig` (`dpunet.io/labels`, `dpunet.io/ports`, docs/cni.md);
containerd passes CNI no such arguments, so `cri` pods take a namespace only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dpunet.lab import services
from dpunet.lab.cri import engine as cri
from dpunet.lab.runner import LabError, ip, list_netns, run
from dpunet.lab.topology import LabPlan, Node, Role

ENGINES = ("podman", "netns", "cri")
_POD_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PORT = re.compile(r"^(?P<name>[^:/]+):(?P<number>[0-9]{1,5})(/(?P<protocol>tcp|udp|sctp))?$")
DEFAULT_NAMESPACE = "default"
LABELS_KEY = "dpunet.io/labels"  # runtimeConfig keys the CNI takes (cni.pods)
PORTS_KEY = "dpunet.io/ports"
BUSYBOX = Path("/bin/busybox")
POD_COMMAND = ["/bin/busybox", "sleep", "1000000"]
CNI_TIMEOUT = 180.0  # longer than the shim's own limit for the whole exchange (120 s)


@dataclass
class Pod:
    """A lab workload and what CNI gave it."""

    name: str
    node: str
    engine: str
    container_id: str
    netns: str
    ip: str | None = None
    mac: str | None = None
    pci: str | None = None
    lsp: str | None = None  # the OVN Logical_Switch_Port (`<namespace>_<pod name>`)
    namespace: str = DEFAULT_NAMESPACE
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[dict[str, Any]] = field(default_factory=list)  # [{name, containerPort, protocol}]

    def runtime_config(self) -> dict[str, Any]:
        """The `runtimeConfig` arguments of its CNI ADD (its labels and named ports)."""
        return {LABELS_KEY: self.labels, PORTS_KEY: self.ports}


def parse_port(text: str) -> dict[str, Any]:
    """`NAME:NUMBER[/tcp|udp|sctp]` as a container port; LabError when malformed (the
    name and number are checked by the CNI, as any runtime's)."""
    match = _PORT.match(text.lower())
    if match is None:
        raise LabError(f"port {text!r} is not NAME:NUMBER[/tcp|udp|sctp]")
    protocol = (match["protocol"] or "tcp").upper()
    return {"name": match["name"], "containerPort": int(match["number"]), "protocol": protocol}


def pods_dir(plan: LabPlan) -> Path:
    """Where pod records live."""
    return plan.run_dir / "pods"


def load_pods(plan: LabPlan) -> list[Pod]:
    """Every recorded pod of the lab."""
    d = pods_dir(plan)
    if not d.is_dir():
        return []
    return [Pod(**json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]


def get_pod(plan: LabPlan, name: str) -> Pod:
    """One pod; LabError naming the existing ones."""
    for pod in load_pods(plan):
        if pod.name == name:
            return pod
    known = ", ".join(p.name for p in load_pods(plan)) or "none"
    raise LabError(f"no pod {name!r} in lab {plan.name!r} (pods: {known})")


def _save(plan: LabPlan, pod: Pod) -> None:
    pods_dir(plan).mkdir(exist_ok=True)
    (pods_dir(plan) / f"{pod.name}.json").write_text(json.dumps(asdict(pod), indent=2))


def _cni_node(plan: LabPlan, node_name: str) -> Node:
    node = plan.node(node_name)
    if node.role not in (Role.DPU_HOST, Role.CONTROL_PLANE):
        raise LabError(
            f"pods run on dpu-host nodes and cp, not on {node.role.value} node {node_name}"
        )
    if not (plan.node_dir(node) / "cni.sock").exists():
        raise LabError(f"no dpunet daemon serves CNI on {node_name} (is the lab up?)")
    return node


# ---------------------------------------------------------------------- netns
def plugin_config(plan: LabPlan, node: Node) -> dict[str, Any]:
    """The network config a runtime passes `dpunet-cni` on `node` (the node's conflist
    with `cniVersion` and `name` injected into its one plugin)."""
    conflist = json.loads(
        (services.cni_dir(plan, node) / f"{services.CNI_NETWORK}.conflist").read_text()
    )
    return {
        "cniVersion": conflist["cniVersion"],
        "name": conflist["name"],
        **conflist["plugins"][0],
    }


def invoke_cni(
    plan: LabPlan,
    node: Node,
    command: str,
    container_id: str,
    netns: str,
    pod: str,
    ifname: str = "eth0",
    config: dict[str, Any] | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    runtime_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute the installed `dpunet-cni` as a runtime would (with the node's network
    config unless `config` is given, as multus passes a NAD's, and `runtime_config` as
    its `runtimeConfig`); its parsed answer."""
    conf = config or plugin_config(plan, node)
    if runtime_config:
        conf = {**conf, "runtimeConfig": {**conf.get("runtimeConfig", {}), **runtime_config}}
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": str(services.shim_dir(plan)),
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
    }
    try:
        proc = subprocess.run(
            [str(services.shim_dir(plan) / "dpunet-cni")],
            input=json.dumps(conf),
            env=env, capture_output=True, text=True, timeout=CNI_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"dpunet-cni {command} gave no answer within {CNI_TIMEOUT:.0f} s") from exc
    try:
        answer: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError as exc:
        raise LabError(
            f"dpunet-cni {command} printed no JSON: {proc.stdout!r} {proc.stderr!r}"
        ) from exc
    if proc.returncode != 0:
        detail = f"{answer.get('msg')}: {answer.get('details', '')}"
        raise LabError(f"CNI {command} failed (code {answer.get('code')}): {detail}")
    return answer


# --------------------------------------------------------------------- podman
def _rootfs(plan: LabPlan) -> Path:
    root = plan.run_dir / "rootfs"
    if not (root / "bin" / "busybox").exists():
        (root / "bin").mkdir(parents=True, exist_ok=True)
        for d in ("proc", "sys", "dev", "etc", "tmp"):
            (root / d).mkdir(exist_ok=True)
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
    return root


def _podman(
    plan: LabPlan, node: Node, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = plan.run_dir / "podman"
    conf = base / "containers.conf"
    if not conf.exists():
        base.mkdir(exist_ok=True)
        conf.write_text('[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n')
    argv = [
        "podman", "--storage-driver", "vfs", "--root", str(base / "root"),
        "--runroot", str(base / "runroot"), "--runtime", "/usr/sbin/runc", *args,
    ]  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    try:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError("podman is not installed (run scripts/install-deps.sh)") from exc


def _container_name(plan: LabPlan, name: str) -> str:
    return f"{plan.name}-{name}"


# ------------------------------------------------------------------ add / del
def add_pod(
    plan: LabPlan,
    name: str,
    node_name: str,
    engine: str = "podman",
    *,
    namespace: str = DEFAULT_NAMESPACE,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> Pod:
    """Start workload `namespace/name` on `node_name` and attach it through CNI, with
    `labels` and named container `ports` (`{name, containerPort, protocol}`)."""
    if not _POD_NAME.match(name):
        raise LabError(f"pod name {name!r} must be a DNS label of at most 20 characters")
    if not _NAMESPACE.match(namespace):
        raise LabError(f"namespace {namespace!r} must be a DNS label")
    if engine not in ENGINES:
        raise LabError(f"engine must be one of {', '.join(ENGINES)}")
    if engine == "cri" and (labels or ports):
        raise LabError(
            "the cri engine cannot give a pod labels or ports (containerd passes CNI no "
            "runtimeConfig for them): use the netns or podman engine"
        )
    if any(p.name == name for p in load_pods(plan)):
        raise LabError(f"pod {name!r} exists already (dpunet lab pod del {name})")
    node = _cni_node(plan, node_name)
    pod = Pod(name, node.name, engine, "", "", namespace=namespace,
              labels=dict(labels or {}), ports=list(ports or []))  # fmt: skip
    if engine == "netns":
        _add_netns_pod(plan, pod, node)
    elif engine == "cri":  # containerd's CRI, driven as kubelet drives it
        pod.container_id, pod.netns = cri.run_pod(plan, node, name, namespace)
        _fill_from_sandbox(plan, pod)
    else:
        _add_podman_pod(plan, pod, node)
    _save(plan, pod)
    return pod


def _pod_netns(plan: LabPlan, name: str) -> str:
    """The network namespace the lab makes for pod `name` (both engines)."""
    return f"{plan.name}-pod-{name}"


def _add_netns_pod(plan: LabPlan, pod: Pod, node: Node) -> None:
    """A fresh netns for `pod`, attached by CNI ADD; nothing is left when the ADD fails."""
    netns_name = _pod_netns(plan, pod.name)
    ip("netns", "add", netns_name)
    ip("link", "set", "lo", "up", netns=netns_name)
    pod.netns = f"/run/netns/{netns_name}"
    pod.container_id = secrets.token_hex(32)  # as runtimes make them: 64 hex digits
    try:
        result = invoke_cni(
            plan, node, "ADD", pod.container_id, pod.netns, pod.name,
            namespace=pod.namespace, runtime_config=pod.runtime_config(),
        )  # fmt: skip
    except LabError:
        # As a runtime does: DEL after a failed ADD; should that fail too, the daemon
        # releases what the sandbox holds once it sees the namespace gone.
        with contextlib.suppress(LabError):
            _cni_del(plan, pod)
        ip("netns", "del", netns_name, check=False)
        raise
    _fill_from_result(pod, result)
    _fill_from_sandbox(plan, pod)


def _cni_del(plan: LabPlan, pod: Pod) -> None:
    node = plan.node(pod.node)
    invoke_cni(plan, node, "DEL", pod.container_id, pod.netns, pod.name, namespace=pod.namespace)


def _del_netns_pod(plan: LabPlan, pod: Pod) -> None:
    """CNI DEL, then the namespace goes."""
    _cni_del(plan, pod)
    netns_name = Path(pod.netns).name
    if netns_name in list_netns():
        ip("netns", "del", netns_name)


def _add_podman_pod(plan: LabPlan, pod: Pod, node: Node) -> None:
    """A container started by podman in a namespace that CNI ADD attached first."""
    name = pod.name
    _add_netns_pod(plan, pod, node)
    proc = _podman(
        plan, node, "run", "-d", "--name", _container_name(plan, name), "--hostname", name,
        "--network", f"ns:{pod.netns}", "--ulimit", "nofile=1024:1024",
        "--ulimit", "nproc=1024:1024", "--rootfs", str(_rootfs(plan)), *POD_COMMAND,
    )  # fmt: skip
    if proc.returncode != 0:
        _podman(plan, node, "rm", "-f", "-t", "0", _container_name(plan, name))
        with contextlib.suppress(LabError):
            _del_netns_pod(plan, pod)
        raise LabError(f"podman run failed: {proc.stderr.strip()}")


def _fill_from_result(pod: Pod, result: dict[str, Any]) -> None:
    iface = (result.get("interfaces") or [{}])[0]
    pod.mac = iface.get("mac")
    ips = result.get("ips") or []
    pod.ip = ips[0]["address"].split("/")[0] if ips else None


def _fill_from_sandbox(plan: LabPlan, pod: Pod) -> None:
    """The VF PCI address from the host agent's sandbox record (VF pods only)."""
    record = plan.node_dir(plan.node(pod.node)) / "state" / "sandboxes" / f"{pod.container_id}.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    pod.pci = data.get("device", {}).get("pci")
    pod.lsp = f"{data.get('namespace')}_{data.get('pod')}"
    port = data.get("port", {})
    pod.ip = pod.ip or (port.get("ips") or [""])[0].split("/")[0] or None
    pod.mac = pod.mac or port.get("mac")


def del_pod(plan: LabPlan, name: str) -> None:
    """Stop the workload, detach it (CNI DEL) and remove its namespace."""
    pod = get_pod(plan, name)
    if pod.engine == "podman":
        proc = _podman(
            plan, plan.node(pod.node), "rm", "-f", "-t", "0", _container_name(plan, name)
        )
        if proc.returncode != 0:
            raise LabError(f"podman rm failed: {proc.stderr.strip()}")
    if pod.engine == "cri":
        cri.remove_pod(plan, plan.node(pod.node), pod.container_id)
    else:
        _del_netns_pod(plan, pod)
    (pods_dir(plan) / f"{name}.json").unlink()


def pod_exec(
    plan: LabPlan, name: str, command: list[str], check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command of this machine inside the pod's network namespace."""
    return run(command, netns=get_pod(plan, name).netns, check=check, timeout=60)


def pod_rows(plan: LabPlan) -> list[dict[str, Any]]:
    """`lab pod list`: each pod with its address, VF and representor."""
    rows = []
    for pod in load_pods(plan):
        if pod.pci is None:
            _fill_from_sandbox(plan, pod)
        rows.append({**asdict(pod), "representor": _representor(plan, pod)})
    return rows


def _representor(plan: LabPlan, pod: Pod) -> str | None:
    """The DPU-side port of a VF pod (br-int port whose iface-id is the pod's LSP)."""
    node = plan.node(pod.node)
    if node.role is not Role.DPU_HOST or node.peer is None or pod.lsp is None:
        return None
    dpu = plan.node(node.peer)
    out = run(
        ["ovs-vsctl", "--bare", "--columns=name", "find", "Interface",
         f"external_ids:iface-id={pod.lsp}"],
        netns=dpu.netns, env=plan.node_env(dpu), check=False,
    ).stdout  # fmt: skip
    return out.strip() or None


def remove_all_pods(plan: LabPlan) -> list[str]:
    """Detach and remove every pod of the lab, best effort (used by `lab down`)."""
    removed = []
    for pod in load_pods(plan):
        with contextlib.suppress(LabError, OSError):  # the lab's teardown removes the rest
            del_pod(plan, pod.name)
        netns_name = Path(pod.netns).name
        if netns_name in list_netns():
            ip("netns", "del", netns_name, check=False)
        removed.append(f"pod {pod.name}")
    if (plan.run_dir / "podman").is_dir():  # daemons gone: podman still removes containers
        _podman(plan, plan.cp, "rm", "-f", "-a", "-t", "0")
    return removed
