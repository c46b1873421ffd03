"""The shared gateway in the lab (issue 13): GR_host1 and host1 own 192.0.2.101, GR_cp and
cp own 192.0.2.10, and the pipeline on brp0 (dpunet-dpu) and breth0 (dpunet-node) tells
their traffic apart. Real traffic from ext, the nodes and pods on a VF and on cp; the
flows read back over OpenFlow; agents killed and restarted; a flow deleted by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from commands import cli
from polling import wait_until

from dpunet.lab import daemons, gwcheck, pods, services, svc
from dpunet.lab.checks import ping
from dpunet.lab.lab import down
from dpunet.lab.runner import in_netns, pid_alive, read_pid, run
from dpunet.lab.topology import UNDERLAY_CIDR, LabPlan, LabSpec, Node
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowConnection
from dpunet.openflow.protocol import Flow

pytestmark = pytest.mark.lab

LAB = "sgw"
DPUNET = [sys.executable, "-m", "dpunet.cli.main"]
HOST_PORT = 18080  # not a NodePort
EXT_PORT = 18081
DPU_INTERVAL = 10.0  # dpunet-dpu's default gateway.interval
NODE_INTERVAL = 2.0  # the lab's dpunet-node reconcile_interval


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    cli([*DPUNET, "lab", "up", "--name", LAB])
    plan = LabPlan(LabSpec(name=LAB))
    for name, node in (("busy1", "host1"), ("busy2", "host1"), ("webh", "host1"), ("webc", "cp")):
        pods.add_pod(plan, name, node, "netns")
    svc.add_service(plan, "np", 80, ["webh", "webc"], target_port=8080, node_port="auto")
    yield plan
    down(LAB)


def host1(plan: LabPlan) -> Node:
    return plan.node("host1")


def ip_of(node: Node) -> str:
    return str(node.underlay_ip)


def flows(plan: LabPlan, owner: str, bridge: str) -> list[Flow]:
    path = plan.ovs_dir(plan.node(owner)) / f"{bridge}.mgmt"
    with OpenFlowConnection(path) as conn:
        return conn.flows(gw.COOKIE, gw.COOKIE_MASK)


def ofctl(plan: LabPlan, owner: str, *args: str) -> str:
    node = plan.node(owner)
    return run(
        ["ovs-ofctl", "-O", "OpenFlow13", *args], netns=node.netns, env=plan.node_env(node)
    ).stdout


def test_gateway_routers_share_the_node_addresses(lab: LabPlan) -> None:
    for node in gwcheck.gateway_nodes(lab):
        assert IPv4Interface(gwcheck.gateway_address(lab, node)).ip == node.underlay_ip
    # no other address on the underlay belongs to a gateway
    networks = daemons.nbctl(lab, "--bare", "--columns=networks", "list", "Logical_Router_Port")
    underlay = {
        IPv4Interface(n).ip for n in networks.split() if IPv4Interface(n).ip in UNDERLAY_CIDR
    }
    assert underlay == {n.underlay_ip for n in gwcheck.gateway_nodes(lab)}


def test_ext_sees_one_mac_per_node_ip(lab: LabPlan) -> None:
    """The host answers ARP for the shared IP; the router's ARP carries the same MAC, so
    the next hop's neighbour entry is the host's interface, whoever spoke last."""
    expected = {
        ip_of(host1(lab)): lab.pairs[0].pf_mac(lab.lab_id),
        ip_of(lab.cp): services.link_mac(lab.cp.netns, "breth0"),
    }
    for address, mac in expected.items():
        run(["ip", "neigh", "flush", "to", address], netns=lab.ext.netns)
        assert ping(lab.ext.netns, address, count=1)[0]
        with gwcheck.listener(lab, lab.ext.netns, "ext", EXT_PORT):  # router traffic too
            pod = "busy1" if address == ip_of(host1(lab)) else "webc"
            svc.probe(pods.get_pod(lab, pod).netns, "tcp", ip_of(lab.ext), EXT_PORT, 2)
        neigh = json.loads(
            run(["ip", "-j", "neigh", "show", address], netns=lab.ext.netns).stdout or "[]"
        )
        assert [n.get("lladdr") for n in neigh] == [mac], neigh


def test_lab_check_rows(lab: LabPlan) -> None:
    results = json.loads(cli([*DPUNET, "lab", "check", "--name", LAB, "-o", "json"]).stdout)
    rows = [r for r in results if r["check"].startswith("shared gateway:")]
    assert rows and all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    kinds = {r["check"] for r in rows}
    assert {
        "shared gateway: GR address",
        "shared gateway: flows",
        "shared gateway: ext -> node IP",
        "shared gateway: ext -> node listener",
        "shared gateway: node -> ext",
        "shared gateway: pod -> ext (source = node IP)",
        "shared gateway: pod -> own node IP (host, via 1004 reroute)",
        "shared gateway: node -> node",
    } == kinds
    own = {r["source"] for r in rows if r["check"].startswith("shared gateway: pod -> own")}
    assert own == {"busy1@host1", "busy2@host1", "webh@host1", "webc@cp"}, own


def test_host_traffic_while_pods_are_busy(lab: LabPlan) -> None:
    h1, cp, ext = host1(lab), lab.cp, lab.ext
    busy = [
        subprocess.Popen(
            in_netns(
                pods.get_pod(lab, name).netns,
                ["ping", "-q", "-i", "0.01", "-c", "600", str(ext.underlay_ip)],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("busy1", "busy2")
    ]
    try:
        with (
            gwcheck.listener(lab, h1.netns, "h1", HOST_PORT),
            gwcheck.listener(lab, ext.netns, "ext", EXT_PORT),
        ):
            # pods' TCP to ext at the same time
            pod_tcp = svc.probe(pods.get_pod(lab, "busy1").netns, "tcp", ip_of(ext), EXT_PORT, 10)
            ext_ping = run(
                ["ping", "-c", "20", "-i", "0.05", ip_of(h1)], netns=ext.netns, check=False
            )
            ext_tcp = svc.probe(ext.netns, "tcp", ip_of(h1), HOST_PORT, 10)
            host_tcp = svc.probe(h1.netns, "tcp", ip_of(ext), EXT_PORT, 10)
            cp_to_h1 = run(
                ["ping", "-c", "10", "-i", "0.05", ip_of(h1)], netns=cp.netns, check=False
            )
            h1_to_cp = run(
                ["ping", "-c", "10", "-i", "0.05", ip_of(cp)], netns=h1.netns, check=False
            )
    finally:
        outputs = [p.communicate(timeout=60)[0] for p in busy]
    assert " 0% packet loss" in ext_ping.stdout, ext_ping.stdout
    assert ext_tcp == {"answers": {"h1": 10}, "peers": [ip_of(ext)]}
    assert host_tcp == {"answers": {"ext": 10}, "peers": [ip_of(h1)]}
    assert pod_tcp == {"answers": {"ext": 10}, "peers": [ip_of(h1)]}
    assert " 0% packet loss" in cp_to_h1.stdout and " 0% packet loss" in h1_to_cp.stdout
    for out in outputs:
        assert "600 packets transmitted, 600 received" in out, out


@pytest.mark.parametrize("pod", ["busy1", "webc"])
def test_pod_egress_leaves_with_the_node_ip_and_replies_return(lab: LabPlan, pod: str) -> None:
    node = lab.node(pods.get_pod(lab, pod).node)
    with gwcheck.listener(lab, lab.ext.netns, "ext", EXT_PORT):
        result = svc.probe(pods.get_pod(lab, pod).netns, "tcp", ip_of(lab.ext), EXT_PORT, 6)
    assert result == {"answers": {"ext": 6}, "peers": [ip_of(node)]}
    assert ping(pods.get_pod(lab, pod).netns, ip_of(lab.ext), count=3)[1] == "3/3 replies"


def mgmt_ip(plan: LabPlan, node: Node) -> IPv4Address:
    """The node's management port address: the .2 of its subnet as NB records it."""
    subnet = daemons.nbctl(plan, "get", "Logical_Switch", node.name, "other_config:subnet")
    return IPv4Network(subnet.strip().strip('"')).network_address + 2


def test_cluster_router_reroutes_each_node_ip_to_its_management_port(lab: LabPlan) -> None:
    out = daemons.nbctl(
        lab, "--format=json", "--columns=priority,match,action,nexthops,external_ids",
        "list", "Logical_Router_Policy",
    )  # fmt: skip
    rows = [dict(zip(json.loads(out)["headings"], r, strict=True)) for r in json.loads(out)["data"]]
    # (a one-element set is the bare value in ovsdb's JSON)
    got = {(r["priority"], r["match"], r["action"], r["nexthops"]) for r in rows}
    want = {
        (
            1004,
            f'inport == "rtos-{node.name}" && ip4.dst == {node.underlay_ip} /* {node.name} */',
            "reroute",
            str(mgmt_ip(lab, node)),
        )
        for node in gwcheck.gateway_nodes(lab)
    }
    assert got == want
    policies = daemons.nbctl(
        lab, "--bare", "--columns=policies", "list", "Logical_Router", "ovn_cluster_router"
    )
    assert len(policies.split()) == len(want)

    # deleted by hand: the controller's next pass (every 10 s in the lab) writes it again
    # and leaves the other node's row as it was
    def uuid_of(node: str) -> str:
        return daemons.nbctl(
            lab, "--bare", "--columns=_uuid", "find", "Logical_Router_Policy",
            f"external_ids:dpunet\\:node={node}",
        ).strip()  # fmt: skip

    kept = uuid_of("cp")
    assert kept and uuid_of("host1")
    daemons.nbctl(lab, "lr-policy-del", "ovn_cluster_router", uuid_of("host1"))
    assert uuid_of("host1") == ""
    wait_until("host1's policy back", lambda: uuid_of("host1") != "", timeout=20)
    assert uuid_of("cp") == kept


@pytest.mark.parametrize("pod", ["busy1", "webc"])
def test_pod_to_its_own_node_ip_reaches_the_host(lab: LabPlan, pod: str) -> None:
    """Not the gateway router that shares the address: the host's own listener answers."""
    node = lab.node(pods.get_pod(lab, pod).node)
    with gwcheck.listener(lab, node.netns, f"self-{node.name}", HOST_PORT):
        result = svc.probe(pods.get_pod(lab, pod).netns, "tcp", ip_of(node), HOST_PORT, 4)
    assert result["answers"] == {f"self-{node.name}": 4}, result
    assert ping(pods.get_pod(lab, pod).netns, ip_of(node), count=3)[1] == "3/3 replies"


def test_node_port_answers_from_both_nodes_other_ports_reach_the_host(lab: LabPlan) -> None:
    node_port = next(s for s in svc.list_services(lab) if s["name"] == "np")["ports"][0]["nodePort"]
    for node in (host1(lab), lab.cp):
        result = svc.probe(lab.ext.netns, "tcp", ip_of(node), node_port, 16)
        assert set(result["answers"]) == {"webh", "webc"}, (node.name, result)
    with gwcheck.listener(lab, host1(lab).netns, "h1", HOST_PORT):
        assert svc.probe(lab.ext.netns, "tcp", ip_of(host1(lab)), HOST_PORT, 4)["answers"] == {
            "h1": 4
        }


def dpu_metric(lab: LabPlan, line_start: str) -> float:
    """A sample of dpunet-dpu's /metrics on dpu1 (its default address, in its namespace)."""
    url = "http://127.0.0.1:9476/metrics"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}).read().decode())"
    body = run([sys.executable, "-c", code], netns=lab.node("dpu1").netns).stdout
    return float(next(x for x in body.splitlines() if x.startswith(line_start)).split()[-1])


def _kill(lab: LabPlan, node: str, name: str) -> None:
    daemon = next(d for d in services.node_services(lab, lab.node(node)) if d.name == name)
    pid = read_pid(daemon.pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_until(f"{name} gone", lambda: not pid_alive(pid))


@pytest.mark.parametrize(
    ("owner", "bridge", "agent", "interval"),
    [("dpu1", "brp0", "dpunet-dpu", DPU_INTERVAL), ("cp", "breth0", "dpunet-node", NODE_INTERVAL)],
)
def test_agent_restart_leaves_the_flows_and_a_deleted_flow_comes_back(
    lab: LabPlan, owner: str, bridge: str, agent: str, interval: float
) -> None:
    before = {f.cookie: f for f in flows(lab, owner, bridge)}
    assert len(before) >= 20
    # a flow of someone else's cookie is never touched
    ofctl(lab, owner, "add-flow", bridge, "cookie=0x1,table=7,priority=5,actions=drop")
    started = time.monotonic()
    _kill(lab, owner, agent)
    services.restart(lab, owner, agent)
    time.sleep(interval + 2)  # at least one pass of the new process
    elapsed = time.monotonic() - started
    after = {f.cookie: f for f in flows(lab, owner, bridge)}
    assert after.keys() == before.keys()
    for cookie, flow in after.items():  # not deleted and added again: they kept aging
        assert flow.duration >= before[cookie].duration + elapsed - 1, hex(cookie)
    added = 'dpunet_dpu_gateway_flow_changes_total{action="added"}'
    if agent == "dpunet-dpu":  # the new process found every flow in place
        assert dpu_metric(lab, added) == 0
        assert dpu_metric(lab, "dpunet_dpu_gateway_flows ") == len(after)
    # one flow deleted by hand comes back within one reconcile interval
    victim = next(f for f in after.values() if f.table == gw.TABLE_NODE_IP and f.priority == 0)
    ofctl(lab, owner, "del-flows", bridge, f"cookie={victim.cookie:#x}/-1")
    assert victim.cookie not in {f.cookie for f in flows(lab, owner, bridge)}
    deleted = time.monotonic()
    wait_until(
        "the deleted flow back",
        lambda: victim.cookie in {f.cookie for f in flows(lab, owner, bridge)},
        timeout=interval + 3,
    )
    assert time.monotonic() - deleted <= interval + 3
    if agent == "dpunet-dpu":
        assert dpu_metric(lab, added) == 1
    assert "cookie=0x1," in ofctl(lab, owner, "dump-flows", bridge, "cookie=0x1/-1")
    ofctl(lab, owner, "del-flows", bridge, "cookie=0x1/-1")
