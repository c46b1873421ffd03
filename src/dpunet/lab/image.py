"""dpunet's daemons from the dpunet image (`dpunet lab up --from-image`).

Each daemon runs as the container its rendered Deployment/DaemonSet describes
(`dpunet.deploy.manifests.render` with the lab's values): the image, `args`, `env`,
`privileged`, `hostPID`, the host network (the lab node's namespace) and every
`volumeMount` at its `mountPath`. The lab supplies each volume's source: a hostPath from
the node's own directories (`/sys` is the node's emulated sysfs, `/var/run/openvswitch` its
OVS run directory, `/run/dpunet` its node directory, `/var/lib/dpunet` its state), a
ConfigMap key or Secret from a file the lab writes. The containers are started with
podman (runc, the system's image store) and labelled with the lab's name.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from dpunet import __version__
from dpunet.deploy import manifests
from dpunet.lab.runner import LabError
from dpunet.lab.topology import CP_ADDRESS, HOST_PF_NAME, LabPlan, Node

DEFAULT_IMAGE = f"localhost/dpunet:{__version__}"
LAB_LABEL = "io.dpunet.lab"
PODMAN = ["podman", "--cgroup-manager", "cgroupfs", "--runtime", "/usr/sbin/runc"]
# raising the default limits is not permitted on these machines
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]

# lab service -> (its workload in the rendered manifests, its container there)
WORKLOADS = {
    "dpunet-controller": ("dpunet-controller", "controller"),
    "dpunet-host": ("dpunet-host", "dpunet-host"),
    "dpunet-dpu": ("dpunet-dpu", "dpunet-dpu"),
    "dpunet-node": ("dpunet-node", "dpunet-node"),
}
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def lab_values(image: str) -> manifests.DeployValues:
    """The values the lab renders its manifests with: its image, its control plane."""
    return manifests.DeployValues(
        image=image,
        api_server=f"https://{CP_ADDRESS}:6443",
        ovn_central=CP_ADDRESS,
        pf=HOST_PF_NAME,
    )


def workload(image: str, service: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, container) of a lab service in the manifests rendered for `image`."""
    name, container_name = WORKLOADS[service]
    for manifest in manifests.render(lab_values(image)):
        if manifest["kind"] in ("Deployment", "DaemonSet") and manifest["metadata"]["name"] == name:
            pod = manifest["spec"]["template"]["spec"]
            container = next(c for c in pod["containers"] if c["name"] == container_name)
            return pod, container
    raise LabError(f"the rendered manifests have no workload {name}")


def config_key(image: str, service: str) -> str:
    """The `dpunet-config` ConfigMap key the service's container mounts as its config."""
    _, container = workload(image, service)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    return str(mount["subPath"])


def container_name(plan: LabPlan, node: Node, service: str) -> str:
    """The podman container of a lab service."""
    return f"{plan.name}-{node.name}-{service}"


def _expand(text: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env[m.group(1)], text)


def container_argv(
    plan: LabPlan,
    node: Node,
    service: str,
    image: str,
    sources: dict[str, Path],
    extra_mounts: tuple[Path, ...] = (),
) -> list[str]:
    """`podman run` of the service's container as its manifest describes it; `sources`
    gives each volume's directory (or file) on this machine, `volume_source` the others;
    `extra_mounts` are the lab's own paths, mounted where they are."""
    pod, container = workload(image, service)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if not pod.get("hostNetwork"):
        raise LabError(f"{service} is not on the host network in its manifest")
    env: dict[str, str] = {}
    for item in container.get("env", []):
        field = item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "spec.nodeName":
            env[item["name"]] = node.name
        elif "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            raise LabError(f"{service}: the lab cannot supply env {item['name']}")
    argv = [
        *PODMAN, "run", "--rm", "--name", container_name(plan, node, service),
        "--label", f"{LAB_LABEL}={plan.name}", "--network", f"ns:/run/netns/{node.netns}",
        *ULIMITS,
    ]  # fmt: skip
    if container.get("securityContext", {}).get("privileged"):
        argv.append("--privileged")
    if pod.get("hostPID"):
        argv += ["--pid", "host"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    for mount in container.get("volumeMounts", []):
        if mount["name"] in sources:
            source = sources[mount["name"]]
        elif mount["name"] in volumes:
            source = volume_source(plan, node, volumes[mount["name"]])
        else:
            raise LabError(f"{service}: its manifest has no volume {mount['name']}")
        if "subPath" in mount:
            source = source / mount["subPath"]
        elif "subPathExpr" in mount:
            source = source / _expand(mount["subPathExpr"], env)
        options = ["ro" if mount.get("readOnly") else "rw"]
        if mount.get("mountPropagation") == "HostToContainer":
            options.append("rslave")
        argv += ["--volume", f"{source}:{mount['mountPath']}:{','.join(options)}"]
    for path in extra_mounts:
        argv += ["--volume", f"{path}:{path}:rw"]
    if "command" in container:
        argv += ["--entrypoint", container["command"][0]]
    argv.append(image)
    argv += [*container.get("command", [])[1:], *container.get("args", [])]
    return argv


def volume_source(plan: LabPlan, node: Node, volume: dict[str, Any]) -> Path:
    """A volume the lab has nothing of its own for: a hostPath is that path under the node's
    `host/` directory, any other kind an empty directory under its `volumes/` (made now)."""
    if "hostPath" in volume:
        path = plan.node_dir(node) / "host" / volume["hostPath"]["path"].lstrip("/")
    else:
        path = plan.node_dir(node) / "volumes" / volume["name"]
    path.mkdir(parents=True, exist_ok=True)
    return path


def secret_dir(directory: Path, files: dict[str, Path]) -> Path:
    """A Secret volume's directory: each key a copy of a file, readable by its owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, source in files.items():
        target = directory / key
        shutil.copyfile(source, target)
        target.chmod(manifests.SECRET_MODE)
    return directory


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A podman command on the system's store (the one `make image` builds into)."""
    try:
        return subprocess.run(
            [*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise LabError("podman is not installed (run scripts/install-deps.sh)") from exc


def require_image(image: str) -> None:
    """LabError, with the fix, when the image is not in podman's store."""
    if podman("image", "exists", image).returncode != 0:
        raise LabError(f"image {image} is not in podman's store: build it with `make image`")


def container_pid(name: str) -> int | None:
    """The host pid of a running container's first process (None if it is not running)."""
    proc = podman("inspect", "--format", "{{.State.Pid}}", name)
    text = proc.stdout.strip()
    return int(text) if proc.returncode == 0 and text.isdigit() and int(text) > 0 else None


def remove_container(name: str) -> None:
    """Remove a container of that name, running or not (a previous start's)."""
    podman("rm", "--force", "--ignore", "--time", "0", name)


def remove_lab_containers(lab: str) -> list[str]:
    """Remove every container of lab `lab` (used by `lab down`); their names."""
    proc = podman("ps", "--all", "--filter", f"label={LAB_LABEL}={lab}", "--format", "{{.Names}}")
    names = proc.stdout.split() if proc.returncode == 0 else []
    for name in names:
        remove_container(name)
    return [f"container {name}" for name in names]
