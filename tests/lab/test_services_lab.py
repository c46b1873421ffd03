"""Services through OVN load balancers in the lab: real traffic from pods on a VF (host1)
and on cp, from the nodes through their management ports and from `ext` to node ports.

Backends answer with their pod name and the client address they see
(dpunet.lab.responder), so spread, affinity, hairpin and SNAT are visible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import httpx
import pytest
from commands import cli, dpunet

from dpunet.controller.service_lbs import HAIRPIN_SNAT_IP
from dpunet.lab import daemons, pods, services, svc
from dpunet.lab.lab import down
from dpunet.lab.runner import pid_alive, read_pid, wait_for
from dpunet.lab.topology import LAB_JOIN_SUBNET, LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "svc"
LAB_SERVICE = [sys.executable, "-c", "from dpunet.cli.lab_service_cmds import service; service()"]
NB_TABLES = (
    "Load_Balancer",
    "Load_Balancer_Group",
    "Logical_Switch",
    "Logical_Router",
    "Logical_Router_Policy",
)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    dpunet("lab", "up", "--name", LAB)
    plan = LabPlan(LabSpec(name=LAB))
    pods.add_pod(plan, "c1", "host1", "podman")  # a container on a VF
    for name, node in (("web1", "host1"), ("web2", "cp"), ("c2", "cp")):
        pods.add_pod(plan, name, node, "netns")
    cli([*LAB_SERVICE, "add", "--name", LAB, "web", "--port", "80", "--target-port", "8080",
         "--pods", "web1,web2", "--node-port", "auto"])  # fmt: skip
    yield plan
    down(LAB)


def ns(plan: LabPlan, pod: str) -> str:
    return pods.get_pod(plan, pod).netns


def service(plan: LabPlan, name: str) -> dict[str, Any]:
    return next(s for s in svc.list_services(plan) if s["name"] == name)


def test_lab_check_covers_services(lab: LabPlan) -> None:
    results = json.loads(dpunet("lab", "check", "--name", LAB, "-o", "json").stdout)
    rows = [r for r in results if r["check"].startswith("service default/web")]
    assert all(r["ok"] for r in results), [r for r in results if not r["ok"]]
    seen = {(r["check"].split(": ", 1)[1], r["source"].split()[0]) for r in rows}
    assert {
        ("pod->clusterIP", "c1@host1"),
        ("pod->clusterIP", "c2@cp"),
        ("node->clusterIP (mgmt port)", "host1"),
        ("ext->nodePort (host1 gateway)", "ext"),
        ("spread (every backend)", "c1"),
    } <= seen


def test_node_port_from_ext_is_snatted_to_the_gateway_router(lab: LabPlan) -> None:
    web = service(lab, "web")
    host1_ip = str(lab.node("host1").underlay_ip)  # GR_host1 shares host1's address
    result = svc.probe(lab.ext.netns, "tcp", host1_ip, web["ports"][0]["nodePort"], 12)
    assert set(result["answers"]) == {"web1", "web2"}
    # lb_force_snat_ip=router_ip: the backends see GR_host1's join address, so a backend
    # on cp answers through GR_host1, which un-DNATs
    (peer,) = result["peers"]
    assert IPv4Address(peer) in IPv4Network(LAB_JOIN_SUBNET)


def test_hairpin_a_pod_reaches_itself_through_its_service(lab: LabPlan) -> None:
    svc.add_service(lab, "solo", 81, ["web2"], target_port=8081)
    result = svc.probe(ns(lab, "web2"), "tcp", service(lab, "solo")["clusterIP"], 81, 3)
    assert result == {"answers": {"web2": 3}, "peers": [HAIRPIN_SNAT_IP]}


def test_a_service_without_backends_refuses_at_once(lab: LabPlan) -> None:
    with services.admin_client(lab) as client:
        tcp = client.put_service("default", "none", {"ports": [{"port": 83}]})
        udp = client.put_service("default", "noneu", {"ports": [{"port": 84, "protocol": "UDP"}]})
    for addr, port, proto in ((tcp.cluster_ip, 83, "tcp"), (udp.cluster_ip, 84, "udp")):
        start = time.monotonic()
        result = svc.probe(ns(lab, "c1"), proto, addr, port, 5)
        assert result["answers"] == {"refused": 5}, proto  # TCP reset / ICMP unreachable
        assert time.monotonic() - start < 2.0  # one python start-up, no timeouts


def test_udp_service_spreads(lab: LabPlan) -> None:
    dns = svc.add_service(lab, "dns", 53, ["web1", "web2"], protocol="udp", target_port=5353)
    result = svc.probe(ns(lab, "c2"), "udp", dns["clusterIP"], 53, 16)
    assert set(result["answers"]) == {"web1", "web2"}


def test_client_ip_affinity_sticks(lab: LabPlan) -> None:
    sticky = svc.add_service(lab, "sticky", 82, ["web1", "web2"], affinity=True)
    assert sticky["affinityTimeout"] == 10800
    for client in ("c1", "c2"):
        svc.warm_up(ns(lab, client), "tcp", sticky["clusterIP"], 82)
        result = svc.probe(ns(lab, client), "tcp", sticky["clusterIP"], 82, 12)
        assert len(result["answers"]) == 1 and set(result["answers"]) <= {"web1", "web2"}


def lb_vips(plan: LabPlan, name: str) -> str:
    return daemons.nbctl(plan, "get", "Load_Balancer", name, "vips")


def test_a_removed_backend_leaves_rotation_within_a_second(lab: LabPlan) -> None:
    pods.add_pod(lab, "b1", "host1", "netns")
    b2 = pods.add_pod(lab, "b2", "cp", "netns")
    rm = svc.add_service(lab, "rm", 85, ["b1", "b2"])
    assert set(svc.probe(ns(lab, "c1"), "tcp", rm["clusterIP"], 85, 12)["answers"]) == {"b1", "b2"}
    pods.del_pod(lab, "b2")  # CNI DEL: the port is released
    gone = time.monotonic()
    wait_for(
        "b2 out of the load balancer",
        lambda: f"{b2.ip}:" not in lb_vips(lab, "Service_default/rm_TCP"),
        timeout=1.0,
        interval=0.02,
    )
    assert time.monotonic() - gone < 1.0
    assert svc.probe(ns(lab, "c1"), "tcp", rm["clusterIP"], 85, 12)["answers"] == {"b1": 12}


def nb_versions(plan: LabPlan) -> dict[str, str]:
    ops = [
        {"op": "select", "table": t, "where": [], "columns": ["_uuid", "_version"]}
        for t in NB_TABLES
    ]
    sock = f"unix:{plan.ovn_dir(plan.cp)}/ovnnb_db.sock"
    out = subprocess.run(
        ["ovsdb-client", "transact", sock, json.dumps(["OVN_Northbound", *ops])],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    return {
        f"{table} {row['_uuid'][1]}": row["_version"][1]
        for table, result in zip(NB_TABLES, json.loads(out), strict=True)
        for row in result["rows"]
    }


def service_passes(plan: LabPlan) -> int:
    transport = httpx.HTTPTransport(uds=str(services.controller_socket(plan)))
    try:
        token = services.token_path(plan, "admin").read_text().strip()
        with httpx.Client(
            transport=transport,
            base_url="http://c",
            timeout=5,
            headers={"Authorization": f"Bearer {token}"},
        ) as http:
            text = http.get("/metrics").text
    except httpx.HTTPError:
        return 0
    for line in text.splitlines():
        if line.startswith('dpunet_controller_service_syncs_total{result="ok"}'):
            return int(float(line.split()[-1]))
    return 0


def test_controller_restart_leaves_nb_unchanged(lab: LabPlan) -> None:
    time.sleep(0.5)  # passes triggered by the tests before have run
    before = nb_versions(lab)
    listed = svc.list_services(lab)
    pidfile = lab.node_dir(lab.cp) / "dpunet-controller.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_for("the controller to stop", lambda: not pid_alive(pid), timeout=15)
    services.restart(lab, "cp", "dpunet-controller")
    wait_for("a service pass of the new controller", lambda: service_passes(lab) >= 1, timeout=30)
    time.sleep(0.5)
    assert nb_versions(lab) == before
    assert svc.list_services(lab) == listed
    web = service(lab, "web")
    answers = svc.probe(ns(lab, "c2"), "tcp", web["clusterIP"], 80, 6)["answers"]
    assert set(answers) <= {"web1", "web2"} and answers


def test_lab_service_cli_del_and_list(lab: LabPlan) -> None:
    out = cli([*LAB_SERVICE, "del", "--name", LAB, "solo"]).stdout
    assert "removed" in out
    assert not (svc.responders_dir(lab, "solo")).exists()
    listed = json.loads(cli([*LAB_SERVICE, "list", "--name", LAB, "-o", "json"]).stdout)
    assert "solo" not in {s["name"] for s in listed} and "web" in {s["name"] for s in listed}
