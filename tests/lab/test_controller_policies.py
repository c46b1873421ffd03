"""NetworkPolicy in Northbound: the controller as a real process against a real OVN NB.

Checks the OVN objects (port groups, address sets, ACLs) the policy API writes, that a pod
added touches only the rows it belongs to, that a restart rewrites nothing and that
deleting every policy leaves none of dpunet's policy rows. The data path is the lab's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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

from dpunet.cli.policies_cmds import policies
from dpunet.contract.policy import PolicyType
from dpunet.controller.policy_acls import default_deny_port_group, policy_port_group

pytestmark = pytest.mark.lab

POLICY_TABLES = ("Port_Group", "Address_Set", "ACL")
SET_COLUMNS = ("acls", "ports", "addresses")
WEB_HTTP = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "web-http", "namespace": "a"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}],
                "ports": [{"port": "http"}],
            }
        ],
    },
}


@pytest.fixture(scope="module")
def ovn() -> Iterator[OvnCentral]:
    central = OvnCentral(northd=False).start()
    yield central
    central.close()


@pytest.fixture(scope="module")
def ctl(ovn: OvnCentral) -> Iterator[ControllerProc]:
    with running(ovn.nb_remotes, ("n1",)) as proc:
        with proc.client() as admin:
            register(admin, "n1", node_ip="192.0.2.51/24")
        yield proc


@pytest.fixture()
def admin(ctl: ControllerProc) -> Iterator[httpx.Client]:
    with ctl.client() as client:
        yield client


def rows(ovn: OvnCentral, table: str) -> list[dict[str, Any]]:
    """Rows of a table with maps as dicts and sets as lists."""
    data = json.loads(ovn.nbctl("--format=json", "list", table))
    out = []
    for raw in data["data"]:
        row = {}
        for head, cell in zip(data["headings"], raw, strict=True):
            if isinstance(cell, list) and cell[0] == "map":
                row[head] = dict(cell[1])
            elif isinstance(cell, list) and cell[0] == "set":
                row[head] = [c[1] if isinstance(c, list) else c for c in cell[1]]
            elif isinstance(cell, list):
                row[head] = cell[1]
            else:
                row[head] = cell
            if head in SET_COLUMNS and not isinstance(row[head], list):
                row[head] = [row[head]]
        out.append(row)
    return out


def ours(ovn: OvnCentral, table: str) -> list[dict[str, Any]]:
    return [r for r in rows(ovn, table) if r["external_ids"].get("dpunet:owner") == "dpunet"]


def versions(ovn: OvnCentral) -> dict[str, str]:
    """`_version` of every row of the policy tables."""
    ops = [
        {"op": "select", "table": t, "where": [], "columns": ["_uuid", "_version"]}
        for t in POLICY_TABLES
    ]
    proc = subprocess.run(
        ["ovsdb-client", "transact", ovn.nb_remotes[0], json.dumps(["OVN_Northbound", *ops])],
        capture_output=True, text=True, check=True, timeout=10,
    )  # fmt: skip
    out = {}
    for table, result in zip(POLICY_TABLES, json.loads(proc.stdout), strict=True):
        for row in result["rows"]:
            out[f"{table} {row['_uuid'][1]}"] = row["_version"][1]
    return out


def put_pod(admin: httpx.Client, ns: str, name: str, labels: dict[str, str], **extra: Any) -> str:
    body = {"node": "n1", "uid": name, "sandbox": "s", "labels": labels, **extra}
    resp = admin.put(f"/v1/ports/{ns}/{name}", json=body)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["ips"][0].split("/")[0])


def group(ovn: OvnCentral, name: str) -> dict[str, Any]:
    (row,) = [r for r in rows(ovn, "Port_Group") if r["name"] == name]
    return row


def test_policy_objects_in_northbound(ovn: OvnCentral, admin: httpx.Client) -> None:
    web = put_pod(admin, "a", "web", {"app": "web"},
                  ports=[{"name": "http", "containerPort": 8080}])  # fmt: skip
    cli = put_pod(admin, "b", "cli", {"app": "cli"})
    assert admin.put("/v1/namespaces/b/labels", json={"labels": {"team": "b"}}).status_code == 200
    resp = admin.put("/v1/policies/a/web-http", json=WEB_HTTP)
    assert resp.status_code == 200, resp.text
    info = resp.json()
    assert info["pods"] == ["a_web"] and info["acls"] == 1
    pg = group(ovn, policy_port_group("a/web-http"))
    acls = {r["_uuid"]: r for r in rows(ovn, "ACL")}
    (acl,) = [acls[u] for u in pg["acls"]]
    assert acl["action"] == "allow-related" and acl["priority"] == 1001
    assert acl["direction"] == "to-lport"
    assert f"tcp.dst == 8080 && ip4.dst == {web}" in acl["match"]
    (address_set,) = ours(ovn, "Address_Set")
    assert address_set["addresses"] == [cli] and f"${address_set['name']}" in acl["match"]
    deny = group(ovn, default_deny_port_group("a", PolicyType.INGRESS))
    assert sorted(acls[u]["action"] for u in deny["acls"]) == ["allow", "drop"]
    switch_acls = {acls[u]["match"] for r in rows(ovn, "Logical_Switch") if r["name"] == "n1"
                   for u in r["acls"]}  # fmt: skip
    assert {m.split(" == ")[0] for m in switch_acls} == {"ip4.src", "ip4.dst"}
    assert admin.get("/v1/policies/a/web-http").json() == info


def test_bad_policies_are_refused_with_a_reason(ctl: ControllerProc, admin: httpx.Client) -> None:
    bad = {**WEB_HTTP, "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "80"}]}]}}
    resp = admin.put("/v1/policies/a/bad", json=bad)
    assert resp.status_code == 422 and "needs a letter" in resp.text
    resp = admin.put("/v1/policies/a/other", json=WEB_HTTP)
    assert resp.status_code == 400 and "metadata.name" in resp.text
    with ctl.client(node_token("n1")) as node:
        assert node.put("/v1/policies/a/web-http", json=WEB_HTTP).status_code == 403
    assert admin.get("/v1/policies/a/bad").status_code == 404


def test_a_pod_added_touches_only_its_rows(ovn: OvnCentral, admin: httpx.Client) -> None:
    time.sleep(0.5)  # passes the earlier writes woke have run
    before = versions(ovn)
    put_pod(admin, "a", "tool", {"app": "tool"})  # selected by no policy
    time.sleep(0.5)
    assert versions(ovn) == before
    put_pod(admin, "a", "web2", {"app": "web"})  # no named port: the ACL stays
    time.sleep(0.5)
    after = versions(ovn)
    changed = {k for k in after if before.get(k) != after[k]}
    deny = group(ovn, default_deny_port_group("a", PolicyType.INGRESS))
    policy = group(ovn, policy_port_group("a/web-http"))
    assert changed == {f"Port_Group {deny['_uuid']}", f"Port_Group {policy['_uuid']}"}
    web2 = next(r["_uuid"] for r in rows(ovn, "Logical_Switch_Port") if r["name"] == "a_web2")
    assert web2 in deny["ports"] and web2 in policy["ports"]


def test_restart_rewrites_nothing(
    ovn: OvnCentral, ctl: ControllerProc, admin: httpx.Client
) -> None:
    time.sleep(0.5)
    before = versions(ovn)
    assert admin.put("/v1/policies/a/web-http", json=WEB_HTTP).status_code == 200
    assert versions(ovn) == before
    ctl.kill(signal.SIGTERM)
    ctl.start()
    wait_until(
        "a policy pass after the restart",
        lambda: 'dpunet_controller_policy_syncs_total{result="ok"}' in admin.get("/metrics").text,
    )
    time.sleep(0.5)
    assert versions(ovn) == before


def ok_passes(admin: httpx.Client) -> float:
    """The controller's count of policy passes that succeeded."""
    for line in admin.get("/metrics").text.splitlines():
        if line.startswith('dpunet_controller_policy_syncs_total{result="ok"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_write_costs_one_pass(ovn: OvnCentral, admin: httpx.Client) -> None:
    """The pass admitting a PUT or DELETE writes port groups, ACLs and a switch's ACLs; NB
    reporting them back wakes no second pass."""
    time.sleep(1.0)  # passes the earlier writes woke have run
    before = ok_passes(admin)
    policy = {**WEB_HTTP, "metadata": {"name": "echo", "namespace": "a"}}
    written = versions(ovn)
    assert admin.put("/v1/policies/a/echo", json=policy).status_code == 200
    assert versions(ovn) != written
    time.sleep(1.5)  # a pass woken by the write's echo would run within 0.2 s
    assert ok_passes(admin) == before + 1
    assert admin.delete("/v1/policies/a/echo").json()["deleted"] is True
    time.sleep(1.5)
    assert ok_passes(admin) == before + 2


def test_concurrent_writes_are_each_answered_for_themselves(ctl: ControllerProc) -> None:
    """Writes arriving together share passes; each gets its own answer (created, its port
    group and ACLs; deleted or not)."""
    names = [f"p{i}" for i in range(8)]
    spec = {"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}}

    def call(method: str, name: str) -> httpx.Response:
        with ctl.client() as client:
            return client.request(
                method, f"/v1/policies/c/{name}", json=spec if method == "PUT" else None
            )

    with ThreadPoolExecutor(len(names)) as pool:
        put = list(pool.map(lambda n: call("PUT", n), names))
        assert [r.status_code for r in put] == [200] * len(names), [r.text for r in put]
        assert [(r.json()["name"], r.json()["port_group"], r.json()["acls"]) for r in put] == [
            (n, policy_port_group(f"c/{n}"), 1) for n in names
        ]
        deleted = list(pool.map(lambda n: call("DELETE", n), names))
        assert [r.json()["deleted"] for r in deleted] == [True] * len(names)
        again = list(pool.map(lambda n: call("DELETE", n), names))
        assert [r.json()["deleted"] for r in again] == [False] * len(names)


def test_cli_apply_list_delete_leaves_nothing(
    ovn: OvnCentral, ctl: ControllerProc, tmp_path: Path
) -> None:
    docs = tmp_path / "p.yaml"
    docs.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: deny-out, namespace: b}\n"
        "spec: {podSelector: {}, policyTypes: [Egress]}\n---\n"
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
        "metadata: {name: deny-in, namespace: b}\nspec: {podSelector: {}}\n"
    )
    opts = ["--controller", ctl.url, "--token", ADMIN_TOKEN]
    runner = CliRunner()
    result = runner.invoke(policies, ["apply", "-f", str(docs), *opts, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert [p["name"] for p in json.loads(result.output)] == ["deny-out", "deny-in"]
    listed = runner.invoke(policies, ["list", "-n", "b", *opts, "-o", "json"])
    assert sorted(p["name"] for p in json.loads(listed.output)) == ["deny-in", "deny-out"]
    for key in ("b/deny-out", "b/deny-in", "a/web-http"):
        result = runner.invoke(policies, ["delete", key, *opts])
        assert result.exit_code == 0 and "removed" in result.output, result.output
    for table in POLICY_TABLES:
        assert ours(ovn, table) == [], table
    assert rows(ovn, "ACL") == []
