"""`dpunet lab check` rows of the shared gateway: each node's gateway router on the node's
own address, dpunet's flows on each external bridge (read back over OpenFlow), and the
traffic the flows must tell apart: ext -> the node's IP (ping, and TCP to a listener in
the node's own namespace), the node -> ext, node <-> node, a pod's egress arriving at
ext with the node's IP as its source, and a pod's TCP to its own node's IP answered by the
node's listener with the pod's own address as the source (the 1004 policy's reroute
through the management port, not the gateway router that shares the IP; docs/lab.md,
"The shared gateway").
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Interface

from dpunet.contract.lsp import gateway_external_port
from dpunet.lab import daemons, pods, svc
from dpunet.lab.checks import CheckResult, ping
from dpunet.lab.runner import LabError, in_netns, wait_for
from dpunet.lab.services import config_path
from dpunet.lab.topology import CP_BRIDGE, DPU_BRIDGE, DPU_HOST_PF_REP, LabPlan, Node
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowConnection, OpenFlowError
from dpunet.ovsdb.local import connect
from dpunet.ovsdb.remote import OvsdbError

LISTEN_PORT = 18080  # not a NodePort: ext's connections to it belong to the node itself
EXT_PORT = 18081
_RESPONDER = [sys.executable, "-m", "dpunet.lab.responder"]


def gateway_nodes(plan: LabPlan) -> list[Node]:
    """The nodes with a gateway router: cp and every dpu-host."""
    return [plan.cp, *(pair.host for pair in plan.pairs)]


def bridge_of(plan: LabPlan, node: Node) -> tuple[Node, str, str | None]:
    """(the node running the bridge, the bridge, the host port: None for LOCAL)."""
    if node is plan.cp:
        return plan.cp, CP_BRIDGE, None
    pair = next(p for p in plan.pairs if p.host is node)
    return pair.dpu, DPU_BRIDGE, DPU_HOST_PF_REP


def flow_state(plan: LabPlan, node: Node) -> tuple[int, int, int]:
    """(flows wanted with the settings of the bridge agent's config, missing, unwanted of
    dpunet's cookie) on `node`'s external bridge; LabError when the bridge or the config
    cannot be read."""
    owner, bridge, host_port = bridge_of(plan, node)
    rundir = plan.ovs_dir(owner)
    try:
        with connect(f"unix:{rundir}/db.sock") as ovs:
            state = ovs.state()
    except OvsdbError as exc:
        raise LabError(f"{owner.name}'s OVS: {exc}") from exc
    ports = [
        gw.BridgePort(p.name, p.type, p.ofport, p.mac_in_use)
        for p in state.ports
        if p.bridge == bridge
    ]
    assert node.underlay_ip is not None
    uplink = state.external_ids.get("ovn-gw-interface")
    config = config_path(plan, owner, "dpunet-node" if node is plan.cp else "dpunet-dpu")
    try:
        settings = gw.agent_settings(config) if config.exists() else gw.GatewaySettings()
    except ValueError as exc:
        raise LabError(str(exc)) from exc
    wanted = gw.wanted_flows(settings, bridge, ports, host_port, uplink, node.underlay_ip)
    if isinstance(wanted, str):
        raise LabError(wanted)
    try:
        with OpenFlowConnection(rundir / f"{bridge}.mgmt") as conn:
            present = conn.flows(gw.COOKIE, gw.COOKIE_MASK)
    except OpenFlowError as exc:
        raise LabError(str(exc)) from exc
    missing, unwanted = gw.missing_flows(wanted, present)
    return len(wanted), missing, unwanted


def gateway_address(plan: LabPlan, node: Node) -> str:
    """The networks of GR_<node>'s external port in NB."""
    out = daemons.nbctl(
        plan, "--bare", "--columns=networks", "find", "Logical_Router_Port",
        f"name={gateway_external_port(node.name)}",
    )  # fmt: skip
    return out.strip()


@contextlib.contextmanager
def listener(plan: LabPlan, netns: str, name: str, port: int) -> Iterator[None]:
    """A responder (`dpunet.lab.responder serve`) on TCP `port` in `netns` while inside."""
    work = plan.run_dir / "gwcheck" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ready = work / "ready"
    argv = [*_RESPONDER, "serve", name, "--tcp", str(port), "--ready", str(ready)]
    with open(work / "log", "ab") as log:
        proc = subprocess.Popen(
            in_netns(netns, argv), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise LabError(f"listener {name}: {(work / 'log').read_text()[-400:]}")
            return ready.exists()

        wait_for(f"listener {name}", up, timeout=15)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def _tcp_row(
    check: str, source: str, netns: str, host: str, port: int, name: str, peer: str | None
) -> CheckResult:
    result = svc.probe(netns, "tcp", host, port, count=2)
    ok = result["answers"] == {name: 2} and (peer is None or result["peers"] == [peer])
    detail = f"answers {result['answers']}, source seen {', '.join(result['peers']) or '-'}"
    return CheckResult(check, source, f"{host}:{port}", ok, detail)


def gateway_checks(plan: LabPlan) -> list[CheckResult]:
    """The rows (module docstring)."""
    rows: list[CheckResult] = []
    nodes = gateway_nodes(plan)
    for node in nodes:
        ip = str(node.underlay_ip)
        networks = gateway_address(plan, node)
        ok = IPv4Interface(networks).ip == node.underlay_ip if networks else False
        rows.append(
            CheckResult(
                "shared gateway: GR address", f"GR_{node.name}", ip, ok, networks or "no port"
            )
        )
        owner, bridge, _ = bridge_of(plan, node)
        try:
            total, missing, unwanted = flow_state(plan, node)
            ok, detail = (
                missing == 0 and unwanted == 0,
                f"{total} flows, {missing} missing, {unwanted} stale",
            )
        except LabError as exc:
            ok, detail = False, str(exc)
        rows.append(CheckResult("shared gateway: flows", f"{owner.name} {bridge}", ip, ok, detail))
        ok, detail = ping(plan.ext.netns, ip, count=2)
        rows.append(CheckResult("shared gateway: ext -> node IP", "ext", ip, ok, detail))
    lab_pods = [pod for pod in pods.load_pods(plan) if pod.ip is not None]
    for node in nodes:
        with listener(plan, node.netns, f"{node.name}-host", LISTEN_PORT):
            rows.append(
                _tcp_row("shared gateway: ext -> node listener", "ext", plan.ext.netns,
                         str(node.underlay_ip), LISTEN_PORT, f"{node.name}-host", None)
            )  # fmt: skip
            for pod in (p for p in lab_pods if p.node == node.name):
                rows.append(
                    _tcp_row("shared gateway: pod -> own node IP (host, via 1004 reroute)",
                             f"{pod.name}@{node.name}", pod.netns, str(node.underlay_ip),
                             LISTEN_PORT, f"{node.name}-host", pod.ip)
                )  # fmt: skip
    ext_ip = str(plan.ext.underlay_ip)
    with listener(plan, plan.ext.netns, "ext", EXT_PORT):
        for node in nodes:
            rows.append(
                _tcp_row("shared gateway: node -> ext", node.name, node.netns, ext_ip, EXT_PORT,
                         "ext", str(node.underlay_ip))
            )  # fmt: skip
        for pod in lab_pods:
            node = plan.node(pod.node)
            rows.append(
                _tcp_row("shared gateway: pod -> ext (source = node IP)", f"{pod.name}@{node.name}",
                         pod.netns, ext_ip, EXT_PORT, "ext", str(node.underlay_ip))
            )  # fmt: skip
    for a in nodes:
        for b in nodes:
            if a is not b:
                ok, detail = ping(a.netns, str(b.underlay_ip), count=2)
                rows.append(
                    CheckResult(
                        "shared gateway: node -> node", a.name, str(b.underlay_ip), ok, detail
                    )
                )
    return rows
