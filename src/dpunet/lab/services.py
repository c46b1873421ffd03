"""dpunet's own daemons in the lab: controller, DPU agents, host agents, node agent.

Each runs as `python -m dpunet.cli.main ...` inside its node's namespace with a
generated config, token and log file under the node's run directory, the way an
operator would start them on real machines. The lab registers its nodes with the
controller (Kubernetes would do that through Node objects).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from dpunet.cni import shim as cni_shim
from dpunet.cni.install import install_shim
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.lab.daemons import Daemon, nbctl, vsctl
from dpunet.lab.runner import LabError, in_netns, pid_alive, read_pid, wait_for
from dpunet.lab.topology import (
    CP_ADDRESS,
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
    """Start `dpunet ARGS` detached inside the node; its pid goes to the service's pidfile
    and its arguments next to it (for `restart`)."""
    service.pidfile.with_suffix(".args").write_text(json.dumps(args))
    argv = in_netns(
        node.netns, [sys.executable, "-m", "dpunet.cli.main", *args], plan.node_env(node)
    )
    with open(service.logfile, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    service.pidfile.write_text(f"{proc.pid}\n")  # ip netns exec / env exec, so the pid stays


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
    """Block until `service` does its job again (LabError if it exits or takes > 30 s):
    the controller answers, a DPU agent has its host's management port up, a node agent
    has its management port and accepts CNI requests."""
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

    wait_for(what, check, timeout=30)


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


# ----------------------------------------------------------------- controller
def start_controller(plan: LabPlan) -> None:
    """The controller in cp, listening on the underlay and on a unix socket; nodes registered."""
    cp = plan.cp
    write_tokens(plan)
    config = plan.node_dir(cp) / "controller.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nb_remotes": [f"unix:{plan.ovn_dir(cp)}/ovnnb_db.sock"],
                "sb_remotes": [f"unix:{plan.ovn_dir(cp)}/ovnsb_db.sock"],
                "listen": [f"{CP_ADDRESS}:{CONTROLLER_PORT}", f"unix:{controller_socket(plan)}"],
                "token_file": str(plan.run_dir / "tokens" / "controller"),
                "cluster_cidr": LAB_CLUSTER_CIDR,
                "service_cidr": LAB_SERVICE_CIDR,
                "join_subnet": LAB_JOIN_SUBNET,
                "node_prefix": 24,
                "mtu": POD_MTU,
                "reconcile_interval": 10,
                "dpu_lease_duration": DPU_LEASE_DURATION,
            }
        )
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


def register_nodes(plan: LabPlan) -> None:
    """cp as a full node, each dpu-host with its DPU's chassis and management VF."""
    specs: dict[str, dict[str, Any]] = {
        plan.cp.name: {
            "role": "full",
            "chassis": plan.cp.name,
            "node_ip": f"{plan.gateway_ip(plan.cp)}/{plan.underlay_prefix}",
            "next_hop": str(EXT_ADDRESS),
        }
    }
    for pair in plan.pairs:
        specs[pair.host.name] = {
            "role": "dpu-host",
            "chassis": pair.dpu.name,
            "node_ip": f"{plan.gateway_ip(pair.host)}/{plan.underlay_prefix}",
            "next_hop": str(EXT_ADDRESS),
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
    config = plan.node_dir(dpu) / "dpunet-dpu.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "controller_url": f"http://{CP_ADDRESS}:{CONTROLLER_PORT}",
                "token_file": str(token_path(plan, dpu.name)),
                "lease_interval": DPU_LEASE_INTERVAL,
            }
        )
    )
    service = _service(plan, dpu, "dpunet-dpu")
    spawn(plan, dpu, service, ["dpu", "run", "--config", str(config), "--log-level", "info"])
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
    _start_node_agent(
        plan, host, "dpunet-host", ["host", "run"], {"sysfs_root": str(plan.sysfs_root(host))}
    )


def start_full_node_agent(plan: LabPlan, node: Node) -> None:
    """dpunet-node on cp (a full node: veth pods on its own OVS)."""
    _start_node_agent(plan, node, "dpunet-node", ["node", "run"], {})


def _start_node_agent(
    plan: LabPlan, node: Node, name: str, command: list[str], extra: dict[str, Any]
) -> None:
    d = plan.node_dir(node)
    d.mkdir(parents=True, exist_ok=True)
    config = d / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": node.name,
                "controller_url": f"http://{CP_ADDRESS}:{CONTROLLER_PORT}",
                "token_file": str(token_path(plan, node.name)),
                "state_dir": str(d / "state"),
                "cni_socket": str(d / "cni.sock"),
                "reconcile_interval": 2.0,
                **extra,
            }
        )
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
    status = {
        "cniVersion": "1.1.0",
        "name": CNI_NETWORK,
        "type": "dpunet-cni",
        "socket": str(plan.node_dir(node) / "cni.sock"),
        "stateDir": str(plan.node_dir(node) / "state"),
    }
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
    """The plugin entry of the node's network: the shim, its daemon's socket and state."""
    return {
        "type": "dpunet-cni",
        "socket": str(plan.node_dir(node) / "cni.sock"),
        "stateDir": str(plan.node_dir(node) / "state"),
    }
