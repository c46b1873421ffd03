"""The `cri` pod engine: the lab acts as kubelet towards a containerd per node.

Each node's containerd starts with its first `cri` pod, in the node's network
namespace, with CNI from the lab's installed `dpunet-cni` and the node's conflist; a pod
is one pod sandbox (RunPodSandbox runs CNI ADD; StopPodSandbox and RemovePodSandbox
run DEL). `lab down` stops every node's containerd (`stop_all`).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import grpc

from dpunet.lab import services
from dpunet.lab.cri import api_pb2 as pb
from dpunet.lab.cri.client import CriError
from dpunet.lab.cri.containerd import Containerd, sandbox_netns
from dpunet.lab.daemons import Daemon
from dpunet.lab.runner import LabError
from dpunet.lab.topology import LabPlan, Node

POD_NAMESPACE = "default"
POD_LABEL = "dpunet.lab/pod"
CONTAINERD_DIR = "containerd"


def node_containerd(plan: LabPlan, node: Node) -> Containerd:
    """The containerd of a lab node (running or not)."""
    return Containerd(
        base=plan.node_dir(node) / CONTAINERD_DIR,
        cni_bin_dir=services.shim_dir(plan),
        cni_conf_dir=services.cni_dir(plan, node),
        cgroup_parent=f"/dpunet-lab-{plan.name}-{node.name}",
        netns=node.netns,
    )


def node_daemons(plan: LabPlan, node: Node) -> list[Daemon]:
    """containerd, for `lab status`, on a node where it was started."""
    containerd = node_containerd(plan, node)
    if not containerd.pidfile.exists():
        return []
    return [Daemon(node.name, "containerd", containerd.pidfile, containerd.logfile)]


def log_directory(containerd: Containerd, metadata: pb.PodSandboxMetadata) -> Path:
    """A pod's log directory, named as kubelet names it (`<namespace>_<name>_<uid>`)."""
    return containerd.base / "pods" / f"{metadata.namespace}_{metadata.name}_{metadata.uid}"


def sandbox_config(
    containerd: Containerd, name: str, namespace: str = POD_NAMESPACE
) -> pb.PodSandboxConfig:
    """What kubelet asks for a pod `name` in `namespace` (new uid, attempt 0); containerd
    passes the namespace to CNI as K8S_POD_NAMESPACE."""
    metadata = pb.PodSandboxMetadata(
        name=name, uid=str(uuid.uuid4()), namespace=namespace, attempt=0
    )
    return pb.PodSandboxConfig(
        metadata=metadata,
        hostname=name,
        log_directory=str(log_directory(containerd, metadata)),
        labels={POD_LABEL: name},
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=containerd.cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD)
            ),
        ),
    )


def run_pod(
    plan: LabPlan, node: Node, name: str, namespace: str = POD_NAMESPACE
) -> tuple[str, str]:
    """Run pod `namespace/name` as a sandbox on `node`; its sandbox id and network namespace
    path. LabError with the runtime's message when it fails (containerd has then undone it)."""
    containerd = node_containerd(plan, node)
    containerd.ensure_running()
    config = sandbox_config(containerd, name, namespace)
    Path(config.log_directory).mkdir(parents=True)
    with containerd.client() as cri:
        try:
            sandbox_id = cri.run_pod_sandbox(config)
        except CriError as exc:
            shutil.rmtree(config.log_directory, ignore_errors=True)
            raise LabError(f"RunPodSandbox on {node.name} failed: {exc.details}") from None
        netns = sandbox_netns(cri, sandbox_id)
    if netns is None:
        remove_pod(plan, node, sandbox_id)
        raise LabError(f"containerd on {node.name} reports no network namespace for {name}")
    return sandbox_id, netns


def remove_pod(plan: LabPlan, node: Node, sandbox_id: str) -> None:
    """Stop (CNI DEL) and remove a pod's sandbox; LabError when the runtime fails."""
    containerd = node_containerd(plan, node)
    containerd.ensure_running()  # after a crash containerd recovers its sandboxes
    with containerd.client() as cri:
        try:
            metadata = cri.pod_sandbox_status(sandbox_id).status.metadata
        except CriError as exc:
            if exc.code is not grpc.StatusCode.NOT_FOUND:
                raise LabError(f"sandbox {sandbox_id[:12]}: {exc.details}") from None
            return  # removed already
        try:
            cri.stop_pod_sandbox(sandbox_id)
            cri.remove_pod_sandbox(sandbox_id)
        except CriError as exc:
            raise LabError(f"removing sandbox {sandbox_id[:12]} failed: {exc.details}") from None
    shutil.rmtree(log_directory(containerd, metadata), ignore_errors=True)


def stop_all(run_dir: Path) -> list[str]:
    """Stop every containerd started under a lab's run dir (`<node>/containerd*`: the
    node's own and any a benchmark added), sandboxes removed first; what was stopped.
    Needs nothing but the run dir, like `lab down`."""
    stopped = []
    for instance in sorted(run_dir.glob(f"*/{CONTAINERD_DIR}*")):
        containerd = Containerd.load(instance)
        if containerd is not None and containerd.stop():
            stopped.append(f"{instance.name} on {instance.parent.name}")
    return stopped
