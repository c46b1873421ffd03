"""dpunet's own daemons in the lab: controller, DPU agents, host agents, node agent.

Each runs as `python -m dpunet.cli.main ...` inside its node's namespace with a
generated config, token and log file under the node's run directory, the way an
operator would start them on real machines; in a lab made `--from-image`, each runs as
its manifest's container instead (lab.image), its config and token where the manifest
mounts them. The lab registers its nodes with the controller (Kubernetes would do that
through Node objects).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from dpunet.cni import shim as cni_shim
from dpunet.cni.install import install_shim
from dpunet.cni.wire import DEFAULT_STATE_DIR
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.deploy import manifests
from dpunet.lab import image
from dpunet.lab.daemons import Daemon, nbctl, vsctl
from dpunet.lab.runner import LabError, in_netns, ip, pid_alive, read_pid, wait_for
from dpunet.lab.topology import (
    CP_ADDRESS,
    CP_BRIDGE,
    EXT_ADDRESS,
    LAB_CLUSTER_CIDR,
    LAB_JOIN_SUBNET,
    LAB_SERVICE_CIDR,
    POD_MTU,
    LabPlan,
    Node,
    Role,
)

CONTROLLER_PORT = 9477
CNI_NETWORK = "dpunet"
MGMT_PORT = "ovn-k8s-mp0"  # the DPU agent's default name of the management representor
DPU_LEASE_DURATION = 10.0  # the lab controller's dpu_lease_duration (s)
DPU_LEASE_INTERVAL = 2.0  # how often the lab's DPU agents renew (s)
_SHIM_INSTALL = threading.Lock()
# a daemon's start, with every pair's chain of `lab up` side by side on a loaded 2-core machine
READY_TIMEOUT = 60.0


def node_services(plan: LabPlan, node: Node) -> list[Daemon]:
    """The dpunet daemons a node runs (none in a bare lab)."""
    if plan.spec.bare:
        return []
    names = {
        Role.CONTROL_PLANE: ["dpunet-controller", "dpunet-node"],
        Role.DPU: ["dpunet-dpu"],
        Role.DPU_HOST: ["dpunet-host"],
    }.get(node.role, [])
    d = plan.node_dir(node)
    return [Daemon(node.name, n, d / f"{n}.pid", d / f"{n}.log") for n in names]


def _service(plan: LabPlan, node: Node, name: str) -> Daemon:
    return next(s for s in node_services(plan, node) if s.name == name)


def spawn(plan: LabPlan, node: Node, service: Daemon, args: list[str]) -> None:
    """Start `dpunet ARGS` detached inside the node (in a lab from an image: the service's
    container, with its manifest's arguments); its pid goes to the service's pidfile and
    its arguments next to it (for `restart`)."""
    service.pidfile.with_suffix(".args").write_text(json.dumps(args))
    if plan.spec.image is not None:
        _spawn_container(plan, node, service, plan.spec.image)
        return
    argv = in_netns(
        node.netns, [sys.executable, "-m", "dpunet.cli.main", *args], plan.node_env(node)
    )
    with open(service.logfile, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    service.pidfile.write_text(f"{proc.pid}\n")  # ip netns exec / env exec, so the pid stays


def _spawn_container(plan: LabPlan, node: Node, service: Daemon, image_name: str) -> None:
    """The service's container, attached (its output in the service's log, removed when
    its process ends); the pidfile gets the host pid of the container's process."""
    name = image.container_name(plan, node, service.name)
    image.remove_container(name)  # a previous start's, should its podman not have removed it
    sources, extra = _volume_sources(plan, node, service.name)
    argv = image.container_argv(plan, node, service.name, image_name, sources, extra)
    with open(service.logfile, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def started() -> bool:
        if proc.poll() is not None:
            tail = service.logfile.read_text(errors="replace")[-1500:]
            raise LabError(f"the {name} container did not start: {tail.strip()}")
        return image.container_pid(name) is not None

    wait_for(f"container {name}", started, timeout=60)
    service.pidfile.write_text(f"{image.container_pid(name)}\n")


def _volume_sources(
    plan: LabPlan, node: Node, name: str
) -> tuple[dict[str, Path], tuple[Path, ...]]:
    """Where the lab keeps each volume of the service's container (the files were written
    with its config), and the lab's own paths the container also needs: its run directory
    (the controller's admin socket, NB's and SB's unix sockets, files a lab config names)."""
    d = plan.node_dir(node)
    volumes = d / "volumes"
    config = volumes / "config"
    if name == "dpunet-controller":
        sources = {
            "config": config,
            "tokens": plan.run_dir / "tokens",
            "dpu-tokens": volumes / "dpu-tokens",
            "tls": volumes / "tls",
        }
        return sources, (plan.run_dir,)
    sysfs = plan.sysfs_root(node)
    if name == "dpunet-dpu":
        assert sysfs is not None
        sources = {
            "config": config,
            "dpu-token": volumes / "dpu-token",
            "ovs-run": plan.ovs_dir(node),
            "sys": sysfs,
            "tls": volumes / "tls",
        }
        return sources, (plan.run_dir,)
    sources = {
        "config": config,
        "dpunet-token": volumes / "dpunet-token",
        "tls": volumes / "tls",
        "run-dpunet": d,
        "state": d / "state",
        "netns": Path("/run/netns"),
    }
    if name == "dpunet-host":
        assert sysfs is not None
        sources |= {
            "pools": volumes / "pools",
            "kubelet": d / "kubelet",
            "devinfo": d / "devinfo",
            "sys": sysfs,
        }
    else:
        sources["ovs-run"] = plan.ovs_dir(node)
    return sources, (plan.run_dir,)


def config_path(plan: LabPlan, node: Node, name: str) -> Path:
    """Where service `name`'s config file is: next to its log, or (from an image) the
    ConfigMap key its container mounts."""
    if plan.spec.image is None:
        return plan.node_dir(node) / f"{name}.yaml"
    return plan.node_dir(node) / "volumes" / "config" / image.config_key(plan.spec.image, name)


def _write_config(plan: LabPlan, node: Node, name: str, body: dict[str, Any]) -> Path:
    """The service's config file (`config_path`), from an image with the other files of
    its volumes."""
    path = config_path(plan, node, name)
    if plan.spec.image is not None:
        _write_volumes(plan, node, name, plan.node_dir(node) / "volumes")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body))
    return path


def _write_volumes(plan: LabPlan, node: Node, name: str, volumes: Path) -> None:
    """The Secret and ConfigMap files of the service's container, and its hostPath dirs."""
    _tls_secret(plan, "controller" if name == "dpunet-controller" else node.name, volumes)
    if name == "dpunet-controller":
        (volumes / "dpu-tokens").mkdir(parents=True, exist_ok=True)  # standalone: none
    elif name == "dpunet-dpu":
        image.secret_dir(volumes / "dpu-token", {node.name: token_path(plan, node.name)})
    else:
        image.secret_dir(volumes / "dpunet-token", {"token": token_path(plan, node.name)})
        d = plan.node_dir(node)
        (d / "state").mkdir(parents=True, exist_ok=True)
        if name == "dpunet-host":
            pools = volumes / "pools"
            pools.mkdir(parents=True, exist_ok=True)
            values = image.lab_values(plan.spec.image or image.DEFAULT_IMAGE)
            (pools / "config.json").write_text(json.dumps(manifests.pool_config(values)))
            (d / "kubelet").mkdir(exist_ok=True)
            (d / "devinfo").mkdir(exist_ok=True)


def _token_file(plan: LabPlan, subject: str) -> str:
    """A node's or DPU's token as its daemon sees it (from an image: the manifest's)."""
    if plan.spec.image is None:
        return str(token_path(plan, subject))
    return f"{manifests.TOKEN_DIR}/token"


def restart(plan: LabPlan, node_name: str, service_name: str) -> int:
    """Start a lab service again as it was started at `up` (after a crash or a kill);
    returns the new pid. LabError when it is still running or unknown."""
    node = plan.node(node_name)
    known = {s.name: s for s in node_services(plan, node)}
    if service_name not in known:
        raise LabError(
            f"{node_name} runs no {service_name} (it runs: {', '.join(known) or 'none'})"
        )
    service = known[service_name]
    if pid_alive(read_pid(service.pidfile)):
        raise LabError(f"{service_name} on {node_name} is still running")
    args = json.loads(service.pidfile.with_suffix(".args").read_text())
    spawn(plan, node, service, args)
    wait_ready(plan, node, service)
    pid = read_pid(service.pidfile)
    assert pid is not None
    return pid


def wait_ready(plan: LabPlan, node: Node, service: Daemon) -> None:
    """Block until `service` does its job again (LabError if it exits or takes longer than
    READY_TIMEOUT): the controller answers, a DPU agent has its host's management port
    up, a node agent has its management port and accepts CNI requests."""
    ready: Callable[[], bool]
    if service.name == "dpunet-controller":
        what, ready = "the dpunet controller", partial(_controller_ready, plan)
    elif service.name == "dpunet-dpu":
        what = f"dpunet-dpu on {node.name} to plug the management port"
        ready = partial(_mgmt_port_plugged, plan, node)
    else:
        what = f"{service.name} on {node.name} (management port and CNI socket)"
        ready = partial(_node_agent_ready, plan, node)

    def check() -> bool:
        _alive_or_fail(service)
        return ready()

    wait_for(what, check, timeout=READY_TIMEOUT)


def _alive_or_fail(service: Daemon) -> None:
    if not pid_alive(read_pid(service.pidfile)):
        tail = (
            service.logfile.read_text(errors="replace")[-1500:] if service.logfile.exists() else ""
        )
        raise LabError(f"{service.name} on {service.node} exited: {tail.strip()}")


# --------------------------------------------------------------------- tokens
def token_path(plan: LabPlan, subject: str) -> Path:
    """The file holding the token of `subject` (`admin`, a node or a DPU name)."""
    return plan.run_dir / "tokens" / subject


def write_tokens(plan: LabPlan) -> None:
    """One random token per node agent (for pods of any namespace), per DPU agent (its
    chassis is the DPU's name) and one for the admin; the controller's token file."""
    (plan.run_dir / "tokens").mkdir(mode=0o700)
    subjects = {"admin": "admin", plan.cp.name: f"node:{plan.cp.name} namespaces=*"}
    for pair in plan.pairs:
        subjects[pair.host.name] = f"node:{pair.host.name} namespaces=*"
        subjects[pair.dpu.name] = f"dpu:{pair.dpu.name}"
    lines = []
    for name, subject in subjects.items():
        token = secrets.token_urlsafe(24)
        path = token_path(plan, name)
        path.write_text(token + "\n")
        path.chmod(0o600)
        lines.append(f"{token} {subject}")
    controller_tokens = plan.run_dir / "tokens" / "controller"
    controller_tokens.write_text("\n".join(lines) + "\n")
    controller_tokens.chmod(0o600)


def controller_socket(plan: LabPlan) -> Path:
    """The controller API's unix socket (reachable from any namespace of the machine)."""
    return plan.node_dir(plan.cp) / "controller.sock"


def admin_client(plan: LabPlan) -> ControllerClient:
    """A client of the lab's controller with the admin token."""
    token = token_path(plan, "admin").read_text().strip()
    return ControllerClient(f"unix:{controller_socket(plan)}", token, timeout=30)


def controller_url() -> str:
    """The controller API as the lab's nodes dial it (HTTPS only on the underlay)."""
    return f"https://{CP_ADDRESS}:{CONTROLLER_PORT}"


def ssl_files(plan: LabPlan, component: str) -> dict[str, str]:
    """A component's TLS files as its config takes them (from an image: where its
    manifest mounts its Secret)."""
    if plan.spec.image is not None:
        return {key: f"{manifests.TLS_DIR}/{name}" for key, name in manifests.TLS_FILES.items()}
    cert = plan.tls(component)
    return {
        "private_key": str(cert.private_key),
        "certificate": str(cert.certificate),
        "ca_cert": str(cert.ca_cert),
    }


def _tls_secret(plan: LabPlan, component: str, volumes: Path) -> None:
    """The component's `dpunet-tls-*` Secret volume, from the lab's PKI."""
    cert = plan.tls(component)
    files = {"private_key": cert.private_key, "certificate": cert.certificate}
    files["ca_cert"] = cert.ca_cert
    image.secret_dir(volumes / "tls", {manifests.TLS_FILES[k]: v for k, v in files.items()})


# ----------------------------------------------------------------- controller
def start_controller(plan: LabPlan) -> None:
    """The controller in cp, listening on the underlay (HTTPS, client certificates of the
    lab's CA only) and on a unix socket (plain: it never leaves the machine); nodes
    registered."""
    cp = plan.cp
    write_tokens(plan)
    tokens = plan.run_dir / "tokens" / "controller"
    if plan.spec.image is not None:  # the tokens Secret's mount (its key: the file's name)
        tokens = Path("/etc/dpunet/controller") / tokens.name
    config = _write_config(
        plan,
        cp,
        "dpunet-controller",
        {
            "nb_remotes": [plan.nb_remote],
            "sb_remotes": [plan.sb_remote],
            "ovn_ssl": ssl_files(plan, "controller"),
            "listen": [f"{CP_ADDRESS}:{CONTROLLER_PORT}", f"unix:{controller_socket(plan)}"],
            "api_tls": ssl_files(plan, "controller"),
            "api_client_cert": "required",  # every lab daemon has a certificate
            "token_file": str(tokens),
            "cluster_cidr": LAB_CLUSTER_CIDR,
            "service_cidr": LAB_SERVICE_CIDR,
            "join_subnet": LAB_JOIN_SUBNET,
            "node_prefix": 24,
            "mtu": POD_MTU,
            "reconcile_interval": 10,
            "dpu_lease_duration": DPU_LEASE_DURATION,
        },
    )
    service = _service(plan, cp, "dpunet-controller")
    spawn(plan, cp, service, ["controller", "run", "--config", str(config)])
    wait_ready(plan, cp, service)
    register_nodes(plan)


def _controller_ready(plan: LabPlan) -> bool:
    try:
        with admin_client(plan) as client:
            client.list_nodes()
    except ClientError:
        return False
    return True


def link_mac(netns: str, ifname: str) -> str:
    """The MAC of `ifname` in `netns`."""
    out = ip("-j", "link", "show", ifname, netns=netns).stdout
    try:
        return str(json.loads(out)[0]["address"])
    except (ValueError, LookupError, TypeError) as exc:
        raise LabError(f"cannot read the MAC of {ifname} in {netns}: {out!r}") from exc


def register_nodes(plan: LabPlan) -> None:
    """cp as a full node, each dpu-host with its DPU's chassis and management VF. Each
    node's gateway router shares the node's address and MAC (the shared gateway): cp's
    breth0, a host's PF."""
    specs: dict[str, dict[str, Any]] = {
        plan.cp.name: {
            "role": "full",
            "chassis": plan.cp.name,
            "node_ip": f"{plan.gateway_ip(plan.cp)}/{plan.underlay_prefix}",
            "next_hop": str(EXT_ADDRESS),
            "gateway_mac": link_mac(plan.cp.netns, CP_BRIDGE),
        }
    }
    for pair in plan.pairs:
        specs[pair.host.name] = {
            "role": "dpu-host",
            "chassis": pair.dpu.name,
            "node_ip": f"{plan.gateway_ip(pair.host)}/{plan.underlay_prefix}",
            "next_hop": str(EXT_ADDRESS),
            "gateway_mac": pair.pf_mac(plan.lab_id),
            "mgmt_pf_mac": pair.pf_mac(plan.lab_id),
            "mgmt_vf_num": 0,
        }
    try:
        with admin_client(plan) as client:
            for name, spec in specs.items():
                client.put_node(name, spec)
    except ClientError as exc:
        raise LabError(f"registering the lab's nodes failed: {exc}") from exc


# ------------------------------------------------------------------ DPU agent
def start_dpu_agent(plan: LabPlan, dpu: Node) -> None:
    """dpunet-dpu in a DPU namespace, renewing its lease at the controller with its own
    token; waits until the host's management port is bound."""
    config = _write_config(
        plan,
        dpu,
        "dpunet-dpu",
        {
            "controller_url": controller_url(),
            "controller_tls": ssl_files(plan, dpu.name),
            "token_file": _token_file(plan, dpu.name),
            "lease_interval": DPU_LEASE_INTERVAL,
            "sb_ssl": ssl_files(plan, dpu.name),
            "log_level": "info",
        },
    )
    service = _service(plan, dpu, "dpunet-dpu")
    spawn(plan, dpu, service, ["dpu", "run", "--config", str(config)])
    wait_ready(plan, dpu, service)


def _mgmt_port_plugged(plan: LabPlan, dpu: Node) -> bool:
    """The host's management port is attached to the DPU's OVS (an OpenFlow port) and
    OVN has it up (after a reboot NB still says up: the attachment is what is new; before
    the DPU's registration the host's node, and so its port, may not exist yet)."""
    ofport = vsctl(plan, dpu, "--if-exists", "get", "Interface", MGMT_PORT, "ofport").strip()
    if not ofport.isdigit() or int(ofport) <= 0:
        return False
    host = plan.node(dpu.peer or "")
    port = f"name=k8s-{host.name}"
    up = nbctl(plan, "--bare", "--columns=up", "find", "Logical_Switch_Port", port)
    return up.strip() == "true"


# ----------------------------------------------------------------- node agents
def start_host_agent(plan: LabPlan, host: Node) -> None:
    """dpunet-host in a dpu-host namespace; waits until its management port is configured."""
    extra = {} if plan.spec.image else {"sysfs_root": str(plan.sysfs_root(host))}
    _start_node_agent(plan, host, "dpunet-host", ["host", "run"], extra)


def start_full_node_agent(plan: LabPlan, node: Node) -> None:
    """dpunet-node on cp (a full node: veth pods on its own OVS)."""
    _start_node_agent(plan, node, "dpunet-node", ["node", "run"], {})


def _start_node_agent(
    plan: LabPlan, node: Node, name: str, command: list[str], extra: dict[str, Any]
) -> None:
    d = plan.node_dir(node)
    d.mkdir(parents=True, exist_ok=True)
    # from an image: state and socket at their defaults, where the manifest mounts them
    paths = (
        {}
        if plan.spec.image
        else {"state_dir": str(d / "state"), "cni_socket": str(d / "cni.sock")}
    )
    config = _write_config(
        plan,
        node,
        name,
        {
            "node": node.name,
            "controller_url": controller_url(),
            "controller_tls": ssl_files(plan, node.name),
            "token_file": _token_file(plan, node.name),
            **paths,
            "reconcile_interval": 2.0,
            **extra,
        },
    )
    service = _service(plan, node, name)
    spawn(plan, node, service, [*command, "--config", str(config)])
    wait_ready(plan, node, service)
    write_cni_config(plan, node)


def _node_agent_ready(plan: LabPlan, node: Node) -> bool:
    out = subprocess.run(
        in_netns(node.netns, ["ip", "-4", "-o", "addr", "show", "dev", "ovn-k8s-mp0"]),
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    if "inet " not in out:
        return False
    status = {"cniVersion": "1.1.0", "name": CNI_NETWORK, **_cni_plugin(plan, node)}
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(shim_dir(plan))}
    code, _ = cni_shim.run(env, json.dumps(status).encode())
    return code == 0  # the daemon serves and its controller answers


# ------------------------------------------------------------------------ CNI
def cni_dir(plan: LabPlan, node: Node) -> Path:
    """The node's CNI config directory (a conflist for its daemon's socket)."""
    return plan.node_dir(node) / "cni"


def shim_dir(plan: LabPlan) -> Path:
    """Where the lab installs the `dpunet-cni` launcher (the CNI_PATH of its runtimes)."""
    return plan.run_dir / "cni-bin"


def write_cni_config(plan: LabPlan, node: Node) -> Path:
    """Install the shim (once) and the node's conflist; returns the conflist's path."""
    launcher = shim_dir(plan) / "dpunet-cni"
    with _SHIM_INSTALL:  # node agents of different pairs start side by side
        if not launcher.exists():
            install_shim(shim_dir(plan), plan.run_dir / "cni-lib")
    d = cni_dir(plan, node)
    d.mkdir(parents=True, exist_ok=True)
    conflist = d / f"{CNI_NETWORK}.conflist"
    conflist.write_text(
        json.dumps(
            {"cniVersion": "1.0.0", "name": CNI_NETWORK, "plugins": [_cni_plugin(plan, node)]},
            indent=2,
        )
    )
    return conflist


def _cni_plugin(plan: LabPlan, node: Node) -> dict[str, str]:
    """The plugin entry of the node's network: the shim, its daemon's socket and state
    (from an image: the state directory as the daemon in its container names it)."""
    state = DEFAULT_STATE_DIR if plan.spec.image else str(plan.node_dir(node) / "state")
    return {
        "type": "dpunet-cni",
        "socket": str(plan.node_dir(node) / "cni.sock"),
        "stateDir": state,
    }
