"""Services in Northbound: the controller as a real process against a real OVN NB (temp dir).

No ovn-northd here: a port counts as a backend once its LSP is `up`, which the tests set
by hand (northd would otherwise own that column). The data path is tested in the lab
(test_services_lab.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from controller_harness import (
    ControllerProc,
    OvnCentral,
    node_token,
    register,
    running,
    wait_until,
)

from dpunet.cli.services_cmds import services

pytestmark = pytest.mark.lab

SETTINGS = {"service_cidr": "198.19.0.0/24", "node_port_range": "30000-30003"}
NB_TABLES = ("Load_Balancer", "Load_Balancer_Group", "Logical_Switch", "Logical_Router")


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral(northd=False).start()
    yield central
    central.close()


@pytest.fixture(scope="module")
def ctl(ovn: OvnCentral) -> Iterator[ControllerProc]:
    with running(ovn.nb_remotes, ("n1",), **SETTINGS) as proc:
        with proc.client() as admin:
            register(admin, "n1", node_ip="192.0.2.51/24")
            register(admin, "n2", node_ip="192.0.2.52/24")
        yield proc


@pytest.fixture()
def admin(ctl: ControllerProc) -> Iterator[httpx.Client]:
    with ctl.client() as client:
        yield client


def lbs(ovn: OvnCentral) -> dict[str, dict[str, Any]]:
    """Load_Balancer rows by name (vips, options, external_ids as dicts)."""
    data = json.loads(
        ovn.nbctl(
            "--format=json", "--columns=_uuid,name,vips,options,external_ids,protocol", "list",
            "Load_Balancer",
        )
    )  # fmt: skip
    out = {}
    for row in data["data"]:
        cols = dict(zip(data["headings"], row, strict=True))
        for key in ("vips", "options", "external_ids"):
            cols[key] = dict(cols[key][1])
        out[cols["name"]] = cols
    return out


def refs(ovn: OvnCentral, table: str, name: str, column: str) -> set[str]:
    """UUIDs in a reference column of the row called `name`."""
    value = json.loads(ovn.nbctl("--format=json", f"--columns={column}", "list", table, name))
    cell = value["data"][0][0]
    items = cell[1] if cell[0] == "set" else [cell]
    return {u for _, u in items}


def group_uuid(ovn: OvnCentral) -> str | None:
    out = ovn.nbctl(
        "--bare", "--columns=_uuid", "find", "Load_Balancer_Group", "name=clusterLBGroup"
    )
    return out.strip() or None


def versions(ovn: OvnCentral) -> dict[str, str]:
    """`_version` of every row of the tables services touch."""
    ops = [
        {"op": "select", "table": t, "where": [], "columns": ["_uuid", "_version"]}
        for t in NB_TABLES
    ]
    proc = subprocess.run(
        ["ovsdb-client", "transact", ovn.nb_remotes[0], json.dumps(["OVN_Northbound", *ops])],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    out = {}
    for table, result in zip(NB_TABLES, json.loads(proc.stdout), strict=True):
        for row in result["rows"]:
            out[f"{table} {row['_uuid'][1]}"] = row["_version"][1]
    return out


def set_up(ovn: OvnCentral, lsp: str, up: bool = True) -> None:
    ovn.nbctl("set", "Logical_Switch_Port", lsp, f"up={'true' if up else 'false'}")


def put_port(admin: httpx.Client, name: str, node: str = "n1") -> str:
    resp = admin.put(f"/v1/ports/default/{name}", json={"node": node, "uid": name, "sandbox": "s"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["ips"][0].split("/")[0])


def test_cluster_ip_service_lbs_and_group(ovn: OvnCentral, admin: httpx.Client) -> None:
    resp = admin.put(
        "/v1/services/default/dns",
        json={
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53},
            ],
            "endpoints": ["10.0.0.10"],
        },
    )
    assert resp.status_code == 200, resp.text
    svc = resp.json()
    assert svc["clusterIP"].startswith("198.19.0.") and svc["backends"] == ["10.0.0.10"]
    assert svc["loadBalancers"] == ["Service_default/dns_TCP", "Service_default/dns_UDP"]
    rows = lbs(ovn)
    udp = rows["Service_default/dns_UDP"]
    assert udp["protocol"] == "udp"
    assert udp["vips"] == {f"{svc['clusterIP']}:53": "10.0.0.10:53"}
    assert udp["options"]["reject"] == "true"
    assert udp["external_ids"]["dpunet:owner"] == "dpunet"
    group = group_uuid(ovn)
    assert group is not None
    members = refs(ovn, "Load_Balancer_Group", group, "load_balancer")
    assert {rows[n]["_uuid"][1] for n in svc["loadBalancers"]} <= members
    for table, name in (
        ("Logical_Switch", "n1"),
        ("Logical_Switch", "n2"),
        ("Logical_Router", "GR_n1"),
        ("Logical_Router", "GR_n2"),
    ):
        assert refs(ovn, table, name, "load_balancer_group") == {group}
    assert refs(ovn, "Logical_Switch", "join", "load_balancer_group") == set()
    assert (
        ovn.nbctl("get", "Logical_Router", "GR_n1", "options:lb_force_snat_ip").strip()
        == "router_ip"
    )


def test_backends_follow_pod_ports_that_are_up(ovn: OvnCentral, admin: httpx.Client) -> None:
    ip_a = put_port(admin, "be-a")
    ip_b = put_port(admin, "be-b", node="n2")
    resp = admin.put(
        "/v1/services/default/web",
        json={"ports": [{"port": 80, "targetPort": 8080}], "pods": ["be-a", "be-b"]},
    )
    assert resp.status_code == 200 and resp.json()["backends"] == []  # nothing up yet
    vip = f"{resp.json()['clusterIP']}:80"
    assert lbs(ovn)["Service_default/web_TCP"]["vips"] == {vip: ""}
    set_up(ovn, "default_be-a")
    set_up(ovn, "default_be-b")
    both = ",".join(f"{ip}:8080" for ip in sorted([ip_a, ip_b]))
    wait_until("both backends", lambda: lbs(ovn)["Service_default/web_TCP"]["vips"][vip] == both)
    # a released port leaves the service within a second
    assert admin.delete("/v1/ports/default/be-b").status_code == 200
    start = time.monotonic()
    wait_until(
        "be-b out of rotation",
        lambda: lbs(ovn)["Service_default/web_TCP"]["vips"][vip] == f"{ip_a}:8080",
        timeout=1.0,
    )
    assert time.monotonic() - start < 1.0
    assert admin.get("/v1/services/default/web").json()["backends"] == [ip_a]


def test_selector_matches_labels_given_at_port_creation(
    ovn: OvnCentral, admin: httpx.Client
) -> None:
    body = {"node": "n1", "uid": "lab-a", "sandbox": "s", "labels": {"app": "shop", "v": "1"}}
    port = admin.put("/v1/ports/default/lab-a", json=body)
    assert port.status_code == 200 and port.json()["labels"] == {"app": "shop", "v": "1"}
    assert admin.put("/v1/ports/default/lab-a", json=body).json() == port.json()  # idempotent
    other = {"node": "n1", "uid": "lab-b", "sandbox": "s", "labels": {"app": "other"}}
    assert admin.put("/v1/ports/default/lab-b", json=other).status_code == 200
    for lsp in ("default_lab-a", "default_lab-b"):
        set_up(ovn, lsp)
    svc = admin.put(
        "/v1/services/default/shop", json={"ports": [{"port": 80}], "selector": {"app": "shop"}}
    )
    ip = port.json()["ips"][0].split("/")[0]
    assert svc.status_code == 200 and svc.json()["backends"] == [ip]
    bad = admin.put("/v1/ports/default/lab-c", json={**body, "labels": {"-x": "y"}})
    assert bad.status_code == 422


def test_node_port_lbs_sit_on_each_gateway_router_and_follow_nodes(
    ovn: OvnCentral, admin: httpx.Client
) -> None:
    resp = admin.put(
        "/v1/services/default/np",
        json={"type": "NodePort", "ports": [{"port": 80}], "endpoints": ["10.0.0.20"]},
    )
    assert resp.status_code == 200, resp.text
    node_port = resp.json()["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 30003
    rows = lbs(ovn)
    n1 = rows["Service_default/np_TCP_node_router_n1"]
    assert n1["vips"] == {f"192.0.2.51:{node_port}": "10.0.0.20:80"}
    assert refs(ovn, "Logical_Router", "GR_n1", "load_balancer") == {n1["_uuid"][1]}
    assert n1["_uuid"][1] not in refs(ovn, "Logical_Router", "GR_n2", "load_balancer")
    # a node registered later gets the group and its NodePort LB without any service PUT
    register(admin, "n3", node_ip="192.0.2.53/24")
    wait_until(
        "n3's NodePort LB",
        lambda: (
            "Service_default/np_TCP_node_router_n3" in lbs(ovn)
            and len(refs(ovn, "Logical_Router", "GR_n3", "load_balancer")) == 1
            and refs(ovn, "Logical_Switch", "n3", "load_balancer_group") == {group_uuid(ovn)}
        ),
    )
    assert admin.delete("/v1/nodes/n3").status_code == 200
    wait_until(
        "n3's NodePort LB gone", lambda: "Service_default/np_TCP_node_router_n3" not in lbs(ovn)
    )


def test_api_refusals(admin: httpx.Client, ctl: ControllerProc) -> None:
    existing = admin.get("/v1/services/default/np").json()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("x1", {"ports": [{"port": 80}], "clusterIP": "10.1.2.3"}, 400, "not a host address"),
        ("x2", {"ports": [{"port": 80}], "clusterIP": existing["clusterIP"]}, 409, "belongs to"),
        ("np", {"ports": [{"port": 80}], "clusterIP": "198.19.0.200"}, 409, "cannot change"),
        (
            "x3",
            {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]},
            400,
            "outside 30000-30003",
        ),
        (
            "x4",
            {
                "type": "NodePort",
                "ports": [{"port": 80, "nodePort": existing["ports"][0]["nodePort"]}],
            },
            409,
            "belongs to service default/np",
        ),
        ("x5", {"ports": [{"port": 80}], "pods": ["a"], "endpoints": ["10.0.0.1"]}, 422, "one of"),
    ]
    before = admin.get("/v1/services").json()
    for name, body, status, reason in cases:
        resp = admin.put(f"/v1/services/default/{name}", json=body)
        assert resp.status_code == status, (name, resp.text)
        assert reason in resp.text, (name, resp.text)
    assert admin.get("/v1/services").json() == before  # nothing written
    assert admin.get("/v1/services/default/nope").status_code == 404
    with ctl.client(token=node_token("n1")) as node:
        assert node.get("/v1/services").status_code == 200
        resp = node.put("/v1/services/default/x", json={"ports": [{"port": 80}]})
        assert resp.status_code == 403
        assert node.delete("/v1/services/default/np").status_code == 403
    with ctl.client(token=None) as anonymous:
        assert anonymous.get("/v1/services").status_code == 401


def test_node_ports_run_out_with_507(admin: httpx.Client) -> None:
    made = []
    for i in range(5):
        resp = admin.put(
            f"/v1/services/default/fill{i}", json={"type": "NodePort", "ports": [{"port": 80}]}
        )
        if resp.status_code != 200:
            assert resp.status_code == 507 and "no free node port" in resp.text
            break
        made.append(f"fill{i}")
    else:
        raise AssertionError("the 4-port range never ran out")
    for name in made:
        assert admin.delete(f"/v1/services/default/{name}").json()["deleted"] is True


def test_repeated_put_and_restart_rewrite_nothing(
    ovn: OvnCentral, ctl: ControllerProc, admin: httpx.Client
) -> None:
    body = {"type": "NodePort", "ports": [{"port": 80}], "pods": ["be-a"]}
    first = admin.put("/v1/services/default/stable", json=body).json()
    time.sleep(0.5)  # the pass the PUT's own changes trigger has run
    before = versions(ovn)
    assert admin.put("/v1/services/default/stable", json=body).json() == first
    assert versions(ovn) == before
    ctl.kill(signal.SIGTERM)
    ctl.start()
    wait_until(
        "a service pass after the restart",
        lambda: 'dpunet_controller_service_syncs_total{result="ok"}' in admin.get("/metrics").text,
    )
    time.sleep(0.5)  # anything a pass would write has been written by now
    assert versions(ovn) == before
    assert admin.get("/v1/services/default/stable").json() == first


def test_tampering_is_repaired_and_foreign_rows_are_left(
    ovn: OvnCentral, admin: httpx.Client
) -> None:
    svc = admin.get("/v1/services/default/dns").json()
    vip = f"{svc['clusterIP']}:53"
    ovn.nbctl("set", "Load_Balancer", "Service_default/dns_UDP", f'vips:"{vip}"="10.9.9.9:53"')
    wait_until(
        "the VIP repaired",
        lambda: lbs(ovn)["Service_default/dns_UDP"]["vips"] == {vip: "10.0.0.10:53"},
    )
    ovn.nbctl("lb-add", "foreign", "192.0.2.99:80", "10.0.0.1:80")
    ovn.nbctl(
        "--", "--id=@f", "get", "Load_Balancer", "foreign",
        "--", "add", "Load_Balancer_Group", group_uuid(ovn), "load_balancer", "@f",
    )  # fmt: skip
    assert admin.put("/v1/services/default/dns", json={"ports": [{"port": 53}]}).status_code == 200
    assert "foreign" in lbs(ovn)
    assert lbs(ovn)["foreign"]["_uuid"][1] in refs(
        ovn, "Load_Balancer_Group", group_uuid(ovn) or "", "load_balancer"
    )


def test_unreadable_spec_is_left_alone_until_replaced(ovn: OvnCentral, admin: httpx.Client) -> None:
    assert admin.put("/v1/services/default/odd", json={"ports": [{"port": 7}]}).status_code == 200
    ovn.nbctl(
        "set", "Load_Balancer", "Service_default/odd_TCP", 'external_ids:"dpunet:service-spec"="{"'
    )
    time.sleep(0.5)
    assert "Service_default/odd_TCP" in lbs(ovn)
    assert admin.get("/v1/services/default/odd").status_code == 404
    assert admin.put("/v1/services/default/odd", json={"ports": [{"port": 8}]}).status_code == 200
    assert next(iter(lbs(ovn)["Service_default/odd_TCP"]["vips"])).endswith(":8")


def test_cli_add_list_del(ctl: ControllerProc, ovn: OvnCentral) -> None:
    runner = CliRunner()
    common = ["--controller", ctl.url, "--token", "admin-token-0123456789abcdef"]
    add = runner.invoke(
        services,
        ["add", "cli", "--port", "http=80:8080", "--endpoints", "10.0.0.5", "-o", "json", *common],
    )
    assert add.exit_code == 0, add.output
    assert json.loads(add.output)["backends"] == ["10.0.0.5"]
    listed = runner.invoke(services, ["list", "-o", "json", *common])
    assert "cli" in {s["name"] for s in json.loads(listed.output)}
    bad = runner.invoke(services, ["add", "cli2", "--port", "eighty", *common])
    assert bad.exit_code != 0 and "eighty" in bad.output
    removed = runner.invoke(services, ["del", "cli", *common])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert "Service_default/cli_TCP" not in lbs(ovn)


def test_last_service_gone_removes_the_group(ovn: OvnCentral, admin: httpx.Client) -> None:
    ovn.nbctl("lb-del", "foreign")
    for svc in admin.get("/v1/services").json()["items"]:
        admin.delete(f"/v1/services/{svc['namespace']}/{svc['name']}")
    wait_until("no group", lambda: group_uuid(ovn) is None)
    assert refs(ovn, "Logical_Switch", "n1", "load_balancer_group") == set()
    assert not [n for n in lbs(ovn) if n.startswith("Service_")]
