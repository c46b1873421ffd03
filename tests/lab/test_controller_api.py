"""The controller's HTTP API against a real OVN NB/SB/northd (temp dir), as a real process.

One controller and OVN central serve the whole module; tests use distinct node names.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from controller_harness import (
    ADMIN_TOKEN,
    ControllerProc,
    OvnCentral,
    node_token,
    register,
    running,
    wait_until,
)

from dpunet.cli.controller_cmds import nodes, ports

pytestmark = pytest.mark.lab

NODES = ("full1", "host9", "host8", "burst", "cli1", "bad1", "out1")


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral().start()
    yield central
    central.close()


@pytest.fixture(scope="module")
def ctl(ovn: OvnCentral) -> Iterator[ControllerProc]:
    with running(ovn.nb_remotes, NODES) as proc:
        yield proc


@pytest.fixture()
def admin(ctl: ControllerProc) -> Iterator[httpx.Client]:
    with ctl.client() as client:
        yield client


def vf_port(node: str, uid: str = "uid-1", sandbox: str = "sb-1", vf: int = 1) -> dict[str, Any]:
    return {
        "node": node,
        "uid": uid,
        "sandbox": sandbox,
        "ifname": "eth0",
        "pci": f"0000:02:00.{vf % 8}",
        "pf_mac": "02:d5:00:01:00:01",
        "vf_num": vf,
    }


def lsp_columns(ovn: OvnCentral, name: str) -> dict[str, str]:
    out = ovn.nbctl(
        "--format=json",
        "--columns=addresses,port_security,options,external_ids",
        "list",
        "Logical_Switch_Port",
        name,
    )
    data = json.loads(out)
    return dict(zip(data["headings"], [json.dumps(v) for v in data["data"][0]], strict=True))


def nb_dump(ovn: OvnCentral) -> str:
    """The tables dpunet writes, once ovn-northd has caught up (it sets `up`)."""
    ovn.nbctl("--wait=sb", "--timeout=10", "sync")
    tables = (
        "Logical_Switch",
        "Logical_Switch_Port",
        "Logical_Router",
        "Logical_Router_Port",
        "Logical_Router_Static_Route",
        "NAT",
    )
    return "".join(
        subprocess.run(
            ["ovsdb-client", "dump", ovn.nb_remotes[0], "OVN_Northbound", table],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for table in tables
    )


# ---------------------------------------------------------------- topology
def test_node_registration_builds_the_topology(ovn: OvnCentral, admin: httpx.Client) -> None:
    full = register(admin, "full1", node_ip="192.0.2.10/24")
    host = register(
        admin,
        "host9",
        role="dpu-host",
        chassis="dpu9",
        node_ip="192.0.2.109/24",
        mgmt_pf_mac="02:D5:00:09:00:01",
        mgmt_vf_num=0,
    )
    assert full["subnet"] != host["subnet"]
    assert host["gateway_ip"].endswith(".1") and host["mgmt_ip"].endswith(".2/24")
    assert host["mgmt_pf_mac"] == "02:d5:00:09:00:01"
    show = ovn.nbctl("show")
    for name in (
        "ovn_cluster_router",
        "(join)",
        "(host9)",
        "(full1)",
        "rtos-host9",
        "stor-host9",
        "k8s-host9",
        "GR_host9",
        "rtoj-GR_host9",
        "jtor-GR_host9",
        "rtoe-GR_host9",
        "(ext_host9)",
        "etor-GR_host9",
        "ext_host9_physnet",
        "192.0.2.109/24",
        "rtoj-ovn_cluster_router",
        "jtor-ovn_cluster_router",
    ):
        assert name in show, f"{name} missing from ovn-nbctl show:\n{show}"
    subnet = host["subnet"]
    assert ovn.nbctl("get", "Logical_Switch", "host9", "other_config:subnet").strip() == (
        f'"{subnet}"'
    )
    assert ovn.nbctl("get", "Logical_Router", "GR_host9", "options:chassis").strip() == "dpu9"
    assert (
        ovn.nbctl("get", "Logical_Switch_Port", "ext_host9_physnet", "options:network_name").strip()
        == "physnet"
    )
    routes = ovn.nbctl("lr-route-list", "GR_host9")
    assert "0.0.0.0/0" in routes and "192.0.2.1" in routes and "rtoe-GR_host9" in routes
    assert "198.18.0.0/16" in routes  # cluster CIDR back through the join switch
    assert f"{subnet}" in ovn.nbctl("lr-route-list", "ovn_cluster_router")
    nat = ovn.nbctl("lr-nat-list", "GR_host9")
    assert "snat" in nat and "192.0.2.109" in nat and subnet in nat
    mgmt = ovn.nbctl("list", "Logical_Switch_Port", "k8s-host9")
    assert "requested-chassis=dpu9" in mgmt and '"dpunet-plug:vf-num"="0"' in mgmt
    rtos = ovn.nbctl("get", "Logical_Router_Port", "rtos-host9", "mac").strip()
    assert (
        rtos
        == '"0a:58:'
        + ":".join(f"{int(b):02x}" for b in subnet.split("/")[0].split(".")[:3])
        + ':01"'
    )

    # idempotent: the same PUT changes nothing, the subnet is kept
    before = nb_dump(ovn)
    again = register(
        admin,
        "host9",
        role="dpu-host",
        chassis="dpu9",
        node_ip="192.0.2.109/24",
        mgmt_pf_mac="02:d5:00:09:00:01",
        mgmt_vf_num=0,
    )
    assert again["subnet"] == subnet
    assert nb_dump(ovn) == before
    listed = admin.get("/v1/nodes").json()["items"]
    assert {"full1", "host9"} <= {n["name"] for n in listed}


def test_the_gateway_router_waits_for_the_node_mac(ovn: OvnCentral, admin: httpx.Client) -> None:
    """A node registered without its gateway MAC gets its switch and management port, but
    no GR_<node> (it would answer ARP for the node IP with another MAC, issue 13); the
    agent's report creates the router with that MAC; a re-registration without one keeps
    it."""
    node = register(admin, "wait1", node_ip="192.0.2.40/24", gateway_mac=None)
    assert node["gateway_mac"] is None
    show = ovn.nbctl("show")
    assert "k8s-wait1" in show and "rtos-wait1" in show
    for name in ("GR_wait1", "ext_wait1", "jtor-GR_wait1"):
        assert name not in show, show
    assert node["subnet"] not in ovn.nbctl("lr-route-list", "ovn_cluster_router")  # no egress
    report = admin.put("/v1/nodes/wait1/gateway", json={"gateway_mac": "02:00:00:00:0a:28"})
    assert report.status_code == 200 and report.json()["changed"] is True, report.text
    mac = ovn.nbctl("get", "Logical_Router_Port", "rtoe-GR_wait1", "mac").strip()
    assert mac == '"02:00:00:00:0a:28"' and "ext_wait1" in ovn.nbctl("show")
    assert node["subnet"] in ovn.nbctl("lr-route-list", "ovn_cluster_router")
    before = nb_dump(ovn)
    register(admin, "wait1", node_ip="192.0.2.40/24", gateway_mac=None)
    assert nb_dump(ovn) == before
    assert admin.delete("/v1/nodes/wait1").json()["deleted"] is True


def test_node_delete_removes_everything_it_owns(ovn: OvnCentral, admin: httpx.Client) -> None:
    register(admin, "host8", role="dpu-host", chassis="dpu8", node_ip="192.0.2.108/24")
    assert admin.put("/v1/ports/ns/pod-a", json=vf_port("host8")).status_code == 200
    ovn.nbctl("ls-add", "not-ours")  # not owned: must survive
    foreign = ("ovn_cluster_router", "900", "ip4.dst == 203.0.113.9", "drop")
    ovn.nbctl("lr-policy-add", *foreign)  # a policy not ours on our router: must survive
    policies = ovn.nbctl("lr-policy-list", "ovn_cluster_router")
    assert 'inport == "rtos-host8" && ip4.dst == 192.0.2.108 /* host8 */' in policies
    resp = admin.delete("/v1/nodes/host8")
    assert resp.status_code == 200 and resp.json()["deleted"] is True
    show = ovn.nbctl("show")
    for name in ("host8", "ns_pod-a"):
        assert name not in show, show
    assert "not-ours" in show and "ovn_cluster_router" in show
    policies = ovn.nbctl("lr-policy-list", "ovn_cluster_router")
    assert "host8" not in policies and "203.0.113.9" in policies, policies
    ovn.nbctl("lr-policy-del", *foreign[:3])
    assert admin.get("/v1/nodes/host8").status_code == 404
    again = admin.delete("/v1/nodes/host8")
    assert again.status_code == 200 and again.json()["deleted"] is False
    ovn.nbctl("ls-del", "not-ours")


# ---------------------------------------------------------------- ports
def test_port_lifecycle_and_idempotency(ovn: OvnCentral, ctl: ControllerProc) -> None:
    with ctl.client(node_token("host9")) as host, ctl.client() as admin:
        register(
            admin,
            "host9",
            role="dpu-host",
            chassis="dpu9",
            node_ip="192.0.2.109/24",
            mgmt_pf_mac="02:d5:00:09:00:01",
            mgmt_vf_num=0,
        )
        first = host.put("/v1/ports/default/web-1", json=vf_port("host9"))
        assert first.status_code == 200, first.text
        body = first.json()
        ip = body["ips"][0].split("/")[0]
        octets = [int(x) for x in ip.split(".")]
        assert body["mac"] == "0a:58:" + ":".join(f"{b:02x}" for b in octets)
        assert body["gateways"] == [body["ips"][0].rsplit(".", 1)[0] + ".1"]
        assert body["routes"] == [{"dst": "0.0.0.0/0", "gw": body["gateways"][0]}]
        assert body["mtu"] == 1400 and body["lsp"] == "default_web-1"
        cols = lsp_columns(ovn, "default_web-1")
        assert cols["addresses"] == cols["port_security"] == json.dumps(f"{body['mac']} {ip}")
        options = ovn.nbctl("list", "Logical_Switch_Port", "default_web-1")
        for item in (
            "requested-chassis=dpu9",
            "iface-id-ver=uid-1",
            "dpunet-plug=representor",
            '"dpunet-plug:pf-mac"="02:d5:00:01:00:01"',
            '"dpunet-plug:vf-num"="1"',
            'dpunet-plug-mtu-request="1400"',
            '"dpunet:namespace"=default',
            '"dpunet:pod"=web-1',
            '"dpunet:uid"=uid-1',
            '"dpunet:node"=host9',
            '"dpunet:sandbox"=sb-1',
            '"dpunet:pci"="0000:02:00.1"',
            '"dpunet:owner"=dpunet',
        ):
            assert item in options, f"{item} missing:\n{options}"

        # same (uid, sandbox): same answer, nothing written
        before = nb_dump(ovn)
        assert host.put("/v1/ports/default/web-1", json=vf_port("host9")).json() == body
        assert nb_dump(ovn) == before

        # new sandbox of the same pod: same address, re-pointed
        moved = host.put("/v1/ports/default/web-1", json=vf_port("host9", sandbox="sb-2"))
        assert moved.json()["ips"] == body["ips"] and moved.json()["sandbox"] == "sb-2"
        assert '"dpunet:sandbox"=sb-2' in ovn.nbctl("list", "Logical_Switch_Port", "default_web-1")

        # a stale release from the old sandbox leaves the port alone
        stale = host.delete("/v1/ports/default/web-1", params={"sandbox": "sb-1"})
        assert stale.status_code == 200 and stale.json()["deleted"] is False

        # the restarted pod got another VF: same address, a fresh LSP row (up re-awaited)
        row = ovn.nbctl("get", "Logical_Switch_Port", "default_web-1", "_uuid").strip()
        vf2 = host.put("/v1/ports/default/web-1", json=vf_port("host9", sandbox="sb-3", vf=2))
        assert vf2.json()["ips"] == body["ips"] and vf2.json()["vf_num"] == 2
        assert ovn.nbctl("get", "Logical_Switch_Port", "default_web-1", "_uuid").strip() != row
        assert (
            ovn.nbctl(
                "get", "Logical_Switch_Port", "default_web-1", 'options:"dpunet-plug:vf-num"'
            ).strip()
            == '"2"'
        )

        # the node's DPU moved to another chassis: its ports follow
        register(
            admin,
            "host9",
            role="dpu-host",
            chassis="dpu9b",
            node_ip="192.0.2.109/24",
            mgmt_pf_mac="02:d5:00:09:00:01",
            mgmt_vf_num=0,
        )
        assert (
            ovn.nbctl(
                "get", "Logical_Switch_Port", "default_web-1", "options:requested-chassis"
            ).strip()
            == "dpu9b"
        )
        assert ovn.nbctl("get", "Logical_Router", "GR_host9", "options:chassis").strip() == "dpu9b"
        register(
            admin,
            "host9",
            role="dpu-host",
            chassis="dpu9",
            node_ip="192.0.2.109/24",
            mgmt_pf_mac="02:d5:00:09:00:01",
            mgmt_vf_num=0,
        )

        # the management VF is not for pods
        mgmt_vf = {**vf_port("host9", uid="uid-x"), "pf_mac": "02:d5:00:09:00:01", "vf_num": 0}
        assert host.put("/v1/ports/default/sneaky", json=mgmt_vf).status_code == 409

        # pod recreated (new uid): replaced, with a new address
        new = host.put("/v1/ports/default/web-1", json=vf_port("host9", uid="uid-2"))
        assert new.status_code == 200 and new.json()["ips"] != body["ips"]
        assert "iface-id-ver=uid-2" in ovn.nbctl("list", "Logical_Switch_Port", "default_web-1")
        assert host.get("/v1/ports/default/web-1").json()["uid"] == "uid-2"
        listed = host.get("/v1/ports", params={"namespace": "default"}).json()["items"]
        assert [p["lsp"] for p in listed] == ["default_web-1"]

        # release, then releasing again succeeds too
        gone = host.delete("/v1/ports/default/web-1", params={"uid": "uid-2"})
        assert gone.json()["deleted"] is True
        assert "default_web-1" not in ovn.nbctl("show")
        again = host.delete("/v1/ports/default/web-1")
        assert again.status_code == 200 and again.json()["deleted"] is False
        assert host.get("/v1/ports/default/web-1").status_code == 403  # not (any more) its own


def test_full_node_port_is_a_plain_veth_port(ovn: OvnCentral, admin: httpx.Client) -> None:
    register(admin, "full1", node_ip="192.0.2.10/24")
    resp = admin.put(
        "/v1/ports/kube-system/dns", json={"node": "full1", "uid": "u", "sandbox": "s"}
    )
    assert resp.status_code == 200, resp.text
    options = ovn.nbctl("get", "Logical_Switch_Port", "kube-system_dns", "options")
    assert "requested-chassis=full1" in options and "plug" not in options
    assert admin.delete("/v1/ports/kube-system/dns").json()["deleted"] is True


def test_auth(ctl: ControllerProc) -> None:
    with ctl.client(token=None) as anon:
        resp = anon.get("/v1/nodes")
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
        assert anon.get("/healthz").status_code == 200
        assert anon.put("/v1/ports/default/x", content=b"{garbage").status_code == 401
        for path in ("/metrics", "/openapi.json"):
            assert anon.get(path).status_code == 401
    with ctl.client("not-a-token-0123456789") as bad:
        assert bad.get("/v1/ports").status_code == 401
    with ctl.client(ADMIN_TOKEN) as admin:
        register(admin, "host9", role="dpu-host", chassis="dpu9", node_ip="192.0.2.109/24")
    with ctl.client(node_token("cli1")) as other:
        for resp in (
            other.put("/v1/ports/default/x", json=vf_port("host9")),
            other.put(
                "/v1/nodes/cli1",
                json={
                    "role": "full",
                    "chassis": "c",
                    "node_ip": "192.0.2.5/24",
                    "next_hop": "192.0.2.1",
                },
            ),
            other.get("/v1/nodes/host9"),
            other.get("/v1/ports", params={"node": "host9"}),
            other.delete("/v1/nodes/host9"),
        ):
            assert resp.status_code == 403, resp.text
            assert resp.json()["detail"]
        assert other.get("/v1/nodes").json()["items"] == []
    # another node's port and no port at all look the same to a node
    with ctl.client(node_token("host9")) as host9:
        put = host9.put("/v1/ports/default/theirs", json=vf_port("host9"))
        assert put.status_code == 200, put.text
    with ctl.client(node_token("cli1")) as other:
        for pod in ("theirs", "nobody"):
            assert other.get(f"/v1/ports/default/{pod}").status_code == 403
            gone = other.delete(f"/v1/ports/default/{pod}")
            assert gone.status_code == 200 and gone.json() == {
                "deleted": False,
                "detail": f"no port default/{pod} of node cli1",
            }
    with ctl.client(ADMIN_TOKEN) as admin:
        assert admin.get("/v1/ports/default/nobody").status_code == 404
        assert admin.delete("/v1/ports/default/theirs").json()["deleted"] is True


BAD_PORT_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("/v1/ports/default/p", {**vf_port("nosuchnode")}, 404),
    ("/v1/ports/default/p", {**vf_port("bad1"), "pf_mac": "zz:00:00:00:00:00"}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "pf_mac": "03:00:00:00:00:01"}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "pci": "02:00.1"}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "vf_num": -1}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "vf_num": "one"}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "sandbox": ""}, 422),
    ("/v1/ports/default/p", {**vf_port("bad1"), "surprise": 1}, 422),
    ("/v1/ports/default/p", {"node": "bad1", "uid": "u", "sandbox": "s", "vf_num": 3}, 422),
    ("/v1/ports/default/p", {"node": "bad1", "uid": "u", "sandbox": "s"}, 400),
    ("/v1/ports/Default/p", vf_port("bad1"), 422),
    ("/v1/ports/default/p_q", vf_port("bad1"), 422),
    ("/v1/ports/default/" + "a" * 64, vf_port("bad1"), 422),
    (
        "/v1/nodes/bad_name",
        {"role": "full", "chassis": "c", "node_ip": "192.0.2.5/24", "next_hop": "192.0.2.1"},
        422,
    ),
    (
        "/v1/nodes/join",
        {"role": "full", "chassis": "c", "node_ip": "192.0.2.5/24", "next_hop": "192.0.2.1"},
        400,
    ),
    (
        "/v1/nodes/bad2",
        {"role": "full", "chassis": "c", "node_ip": "192.0.2.5/24", "next_hop": "198.51.100.1"},
        422,
    ),
    (
        "/v1/nodes/bad2",
        {"role": "router", "chassis": "c", "node_ip": "192.0.2.5/24", "next_hop": "192.0.2.1"},
        422,
    ),
    (
        "/v1/nodes/bad2",
        {"role": "full", "chassis": "c", "node_ip": "192.0.2.0/24", "next_hop": "192.0.2.1"},
        422,
    ),
]


def test_bad_input_is_a_4xx_with_a_reason_and_writes_nothing(
    ovn: OvnCentral, admin: httpx.Client
) -> None:
    register(admin, "bad1", role="dpu-host", chassis="dpub", node_ip="192.0.2.111/24")
    before = nb_dump(ovn)
    for path, body, status in BAD_PORT_REQUESTS:
        resp = admin.put(path, json=body)
        assert resp.status_code == status, (path, body, resp.text)
        assert resp.json()["detail"], resp.text
    raw = [
        (b"{not json", "application/json", 422),
        (b'{"node": "bad1"}', "text/plain", 422),
        (b"x" * 70000, "application/json", 413),
        (b"[1, 2]", "application/json", 422),
    ]
    for content, ctype, status in raw:
        resp = admin.put("/v1/ports/default/p", content=content, headers={"Content-Type": ctype})
        assert resp.status_code == status, (content[:20], resp.text)
        assert resp.json()["detail"]
    assert (
        admin.put("/v1/ports/default/p", params={"timeout": "0"}, json=vf_port("bad1")).status_code
        == 422
    )
    assert nb_dump(ovn) == before


def test_concurrent_puts_never_share_an_address(
    ovn: OvnCentral, admin: httpx.Client, ctl: ControllerProc
) -> None:
    """200 concurrent PUTs (plus 50 concurrent repeats of some of them) on one node."""
    register(admin, "burst", role="dpu-host", chassis="dpux", node_ip="192.0.2.120/24")

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with ctl.async_client(node_token("burst"), limits=limits) as client:
            reqs = [
                (f"p{i}", vf_port("burst", uid=f"u{i}", sandbox=f"s{i}", vf=i % 127 + 1))
                for i in range(200)
            ]
            reqs += reqs[:50]
            return await asyncio.gather(
                *(client.put(f"/v1/ports/burst/{n}", json=b) for n, b in reqs)
            )

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [
        r.text for r in responses if r.status_code != 200
    ][:3]
    by_name: dict[str, dict[str, Any]] = {}
    for r in responses:
        body = r.json()
        prev = by_name.setdefault(body["name"], body)
        assert prev["ips"] == body["ips"]  # a repeat got the same answer
    ips = [b["ips"][0] for b in by_name.values()]
    macs = [b["mac"] for b in by_name.values()]
    assert len(by_name) == 200 and len(set(ips)) == 200 and len(set(macs)) == 200
    rows = json.loads(
        ovn.nbctl("--format=json", "--columns=name,addresses", "list", "Logical_Switch_Port")
    )
    nb = {name: addr for name, addr in rows["data"] if name.startswith("burst_")}
    assert len(nb) == 200
    for body in by_name.values():
        assert nb[body["lsp"]] == f"{body['mac']} {body['ips'][0].split('/')[0]}"
    node = admin.get("/v1/nodes/burst").json()
    assert node["ports"] == 200 and node["free_ips"] == 252 - 200
    assert httpx.get(f"{ctl.url}/metrics").status_code == 401
    metrics = admin.get("/metrics").text
    assert 'dpunet_controller_ports{node="burst"} 200.0' in metrics
    assert 'dpunet_controller_free_ips{node="burst"} 52.0' in metrics
    for phase in ("allocate", "nb_write", "total"):
        assert f'dpunet_controller_port_setup_seconds_count{{phase="{phase}"}}' in metrics
    assert admin.delete("/v1/nodes/burst").json()["deleted"] is True


def test_cli_lists_nodes_and_ports(admin: httpx.Client, ctl: ControllerProc) -> None:
    register(admin, "cli1", node_ip="192.0.2.30/24")
    with ctl.client(node_token("cli1")) as node:
        assert (
            node.put(
                "/v1/ports/tools/box", json={"node": "cli1", "uid": "u", "sandbox": "s"}
            ).status_code
            == 200
        )
    runner = CliRunner()
    base = ["--controller", f"unix:{ctl.socket}", "--token", ADMIN_TOKEN]
    out = runner.invoke(ports, ["list", "-o", "json", "--node", "cli1", *base])
    assert out.exit_code == 0, out.output
    assert [p["lsp"] for p in json.loads(out.output)] == ["tools_box"]
    out = runner.invoke(nodes, ["list", "-o", "yaml", *base])
    assert out.exit_code == 0 and "name: cli1" in out.output
    out = runner.invoke(nodes, ["list", *base])
    assert out.exit_code == 0 and "cli1" in out.output
    out = runner.invoke(
        nodes, ["list", "--controller", f"unix:{ctl.socket}", "--token", "nope-nope-nope-nope"]
    )
    assert out.exit_code != 0 and "unknown bearer token" in out.output


def test_nb_outage_makes_requests_wait(
    ovn: OvnCentral, ctl: ControllerProc, admin: httpx.Client
) -> None:
    register(admin, "out1", node_ip="192.0.2.31/24")
    ovn.stop_nb()
    wait_until("readyz to report 503", lambda: not ctl.ready(), timeout=10)
    result: dict[str, httpx.Response] = {}

    def put() -> None:
        with ctl.client() as client:
            result["r"] = client.put(
                "/v1/ports/default/during-outage", json={"node": "out1", "uid": "u", "sandbox": "s"}
            )

    worker = threading.Thread(target=put)
    worker.start()
    time.sleep(1.5)
    ovn.start_member(0)
    worker.join(30)
    assert result["r"].status_code == 200, result["r"].text
    ctl.wait_ready(15)
    assert "default_during-outage" in ovn.nbctl("show")
