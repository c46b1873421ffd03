"""The Open vSwitch and OVN daemons of a lab node, started inside its namespace.

Every node that runs OVS gets its own ovsdb-server and ovs-vswitchd with a
private run directory (so `OVS_RUNDIR=... ovs-vsctl` finds them); cp also runs
OVN central (NB, SB, ovn-northd). Bridges use the userspace `netdev` datapath
because these machines have no openvswitch kernel module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dpunet.lab.runner import LabError, read_pid, run, wait_for
from dpunet.lab.topology import CP_ADDRESS, NB_PORT, SB_PORT, LabPlan, Node, Role
from dpunet.setup import pki

VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
NB_SCHEMA = Path("/usr/share/ovn/ovn-nb.ovsschema")
SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")


@dataclass(frozen=True)
class Daemon:
    """One long-running lab process, known by its pidfile."""

    node: str
    name: str
    pidfile: Path
    logfile: Path


def node_daemons(plan: LabPlan, node: Node) -> list[Daemon]:
    """The daemons a node runs, in start order."""
    ovs, ovn = plan.ovs_dir(node), plan.ovn_dir(node)
    out: list[Daemon] = []
    if node.runs_ovs:
        out += [
            Daemon(node.name, "ovsdb-server", ovs / "ovsdb-server.pid", ovs / "ovsdb-server.log"),
            Daemon(node.name, "ovs-vswitchd", ovs / "ovs-vswitchd.pid", ovs / "ovs-vswitchd.log"),
        ]
    if node.role is Role.CONTROL_PLANE:
        out += [
            Daemon(node.name, "ovn-nb", ovn / "ovnnb_db.pid", ovn / "ovnnb_db.log"),
            Daemon(node.name, "ovn-sb", ovn / "ovnsb_db.pid", ovn / "ovnsb_db.log"),
            Daemon(node.name, "ovn-northd", ovn / "ovn-northd.pid", ovn / "ovn-northd.log"),
        ]
    if node.runs_ovs:
        out.append(
            Daemon(
                node.name, "ovn-controller", ovn / "ovn-controller.pid", ovn / "ovn-controller.log"
            )
        )
    return out


def _daemon(plan: LabPlan, node: Node, name: str) -> Daemon:
    return next(d for d in node_daemons(plan, node) if d.name == name)


def start_ovs(plan: LabPlan, node: Node) -> None:
    """ovsdb-server + ovs-vswitchd for `node`, with an initialised Open_vSwitch table."""
    ovs = plan.ovs_dir(node)
    ovs.mkdir(parents=True, exist_ok=True)
    env = plan.node_env(node)
    db = ovs / "conf.db"
    if not db.exists():
        run(["ovsdb-tool", "create", str(db), str(VSWITCH_SCHEMA)])
    dbd = _daemon(plan, node, "ovsdb-server")
    run(
        [
            "ovsdb-server",
            str(db),
            f"--remote=punix:{ovs}/db.sock",
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            f"--pidfile={dbd.pidfile}",
            f"--log-file={dbd.logfile}",
            "--detach",
        ],
        netns=node.netns,
        env=env,
    )
    run(["ovs-vsctl", "--no-wait", "init"], netns=node.netns, env=env)
    vsd = _daemon(plan, node, "ovs-vswitchd")
    run(
        [
            "ovs-vswitchd",
            f"unix:{ovs}/db.sock",
            f"--pidfile={vsd.pidfile}",
            f"--log-file={vsd.logfile}",
            "--detach",
        ],
        netns=node.netns,
        env=env,
        timeout=60,
    )


def vsctl(plan: LabPlan, node: Node, *args: str, timeout: float = 20.0) -> str:
    """Run `ovs-vsctl ARGS` against the node's OVS; returns stdout."""
    return run(
        ["ovs-vsctl", f"--timeout={int(timeout)}", *args],
        netns=node.netns,
        env=plan.node_env(node),
        timeout=timeout + 5,
    ).stdout


def make_pki(plan: LabPlan) -> None:
    """The lab's CA and a certificate per component (`LabPlan.tls_components`); the
    controller's names the address its API is dialled at."""
    pki.init_ca(plan.pki_dir, f"dpunet lab {plan.name} CA")
    for component in plan.tls_components:
        ips = [str(CP_ADDRESS)] if component in ("controller", "ovnnb", "ovnsb") else []
        pki.issue(plan.pki_dir, component, ips=ips)


def pki_options(cert: pki.Certificate) -> list[str]:
    """The OVS/OVN daemons' options for a component's TLS material."""
    return [
        f"--private-key={cert.private_key}",
        f"--certificate={cert.certificate}",
        f"--ca-cert={cert.ca_cert}",
    ]


def _ovsdb_server(
    plan: LabPlan, node: Node, daemon: str, kind: str, schema: Path, port: int
) -> None:
    ovn = plan.ovn_dir(node)
    db = ovn / f"ovn{kind}_db.db"
    if not db.exists():
        run(["ovsdb-tool", "create", str(db), str(schema)])
    d = _daemon(plan, node, daemon)
    run(
        [
            "ovsdb-server",
            str(db),
            f"--remote=punix:{ovn}/ovn{kind}_db.sock",
            f"--remote=pssl:{port}:{CP_ADDRESS}",
            *pki_options(plan.tls(f"ovn{kind}")),
            f"--pidfile={d.pidfile}",
            f"--log-file={d.logfile}",
            f"--unixctl={ovn}/ovn{kind}_db.ctl",
            "--detach",
        ],
        netns=node.netns,
        env=plan.node_env(node),
    )


def start_ovn_central(plan: LabPlan, node: Node) -> None:
    """OVN NB and SB databases (unix socket + TLS on the underlay, nothing plain there)
    and ovn-northd, a TLS client of both."""
    ovn = plan.ovn_dir(node)
    ovn.mkdir(parents=True, exist_ok=True)
    _ovsdb_server(plan, node, "ovn-nb", "nb", NB_SCHEMA, NB_PORT)
    _ovsdb_server(plan, node, "ovn-sb", "sb", SB_SCHEMA, SB_PORT)
    env = plan.node_env(node)
    run(["ovn-nbctl", "--no-wait", "init"], netns=node.netns, env=env)
    run(["ovn-sbctl", "init"], netns=node.netns, env=env)
    d = _daemon(plan, node, "ovn-northd")
    run(
        [
            "ovn-northd",
            f"--ovnnb-db={plan.nb_remote}",
            f"--ovnsb-db={plan.sb_remote}",
            *pki_options(plan.tls("northd")),
            f"--pidfile={d.pidfile}",
            f"--log-file={d.logfile}",
            "--detach",
        ],
        netns=node.netns,
        env=env,
    )


def start_ovn_controller(plan: LabPlan, node: Node) -> None:
    """ovn-controller against the node's local OVS (chassis ids must already be set),
    with the node's certificate for its TLS connection to SB."""
    ovn = plan.ovn_dir(node)
    ovn.mkdir(parents=True, exist_ok=True)
    d = _daemon(plan, node, "ovn-controller")
    run(
        [
            "ovn-controller",
            f"unix:{plan.ovs_dir(node)}/db.sock",
            *pki_options(plan.tls(node.name)),
            f"--pidfile={d.pidfile}",
            f"--log-file={d.logfile}",
            "--detach",
        ],
        netns=node.netns,
        env=plan.node_env(node),
    )


def sbctl(plan: LabPlan, *args: str) -> str:
    """Run `ovn-sbctl ARGS` in cp against the lab's Southbound DB."""
    return run(["ovn-sbctl", *args], netns=plan.cp.netns, env=plan.node_env(plan.cp)).stdout


def nbctl(plan: LabPlan, *args: str) -> str:
    """Run `ovn-nbctl ARGS` in cp against the lab's Northbound DB."""
    return run(["ovn-nbctl", *args], netns=plan.cp.netns, env=plan.node_env(plan.cp)).stdout


def wait_chassis(plan: LabPlan, node: Node, timeout: float = 60.0) -> None:
    """Wait until `node`'s ovn-controller registered its chassis with a Geneve encap."""
    ip = str(node.underlay_ip)

    def registered() -> bool:
        out = sbctl(
            plan, "--bare", "--columns=type,ip", "find", "Encap", f"chassis_name={node.name}"
        )
        return "geneve" in out and ip in out

    wait_for(f"chassis {node.name} in OVN Southbound", registered, timeout=timeout)


def daemon_pid(daemon: Daemon) -> int | None:
    """The pid recorded by a daemon (None when it wrote none)."""
    return read_pid(daemon.pidfile)


def require_tools() -> None:
    """Fail early, with the fix, when OVS/OVN/iproute2 are not installed."""
    missing = [
        p
        for p in (VSWITCH_SCHEMA, NB_SCHEMA, SB_SCHEMA, Path("/usr/sbin/ovs-vswitchd"))
        if not p.exists()
    ]
    if missing:
        raise LabError(
            "Open vSwitch / OVN are not installed (missing "
            + ", ".join(map(str, missing))
            + "); run `make demo` or scripts/install-deps.sh first"
        )
