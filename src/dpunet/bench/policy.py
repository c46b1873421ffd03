"""`dpunet bench policy`: NetworkPolicy at scale against the lab's controller and OVN, vs
writing the same OVN objects raw.

Pods are ports in NB on bench nodes served by the stand-in chassis of `bench controller`
(bench/controller.py: filled raw with the controller's own format, labels and a named port
included, then adopted). Pod k is in namespace `benchp-<k % 10>` with labels
`app=app<k % 20>`, `role=r<k % 3>` and the container port `http` 8080/TCP; namespace j is
labelled `team=t<j % 5>`. Policy i (namespace `benchp-<i % 10>`) selects `app=app<i % 20>`
and allows ingress from `role=r<i % 3>` pods of `team=t<i % 5>` namespaces (AND) on `http`
and on a port range, and from an ipBlock with an except; every 4th also has an egress rule.

"Enforced" is OVN's own acknowledgement: after the writes, NB_Global.nb_cfg is raised and
the run waits for northd (NB_Global.sb_cfg) and for every real chassis' ovn-controller
(Chassis_Private.nb_cfg: the flows are in its OVS; the bench switches are local to every
chassis through the cluster router). Measured, in order:

1. pod add without policies: `sample` port PUTs (to `up`);
2. apply: `policies` PUTs (`concurrency` at once) from the first to enforced;
3. pod add with the policies: PUT to `up`, to the pod being in every port group that
   should hold it, to enforced;
4. delete: every policy DELETE to enforced;
5. the floor of 2: the same port groups, address sets and ACLs (as dpunet wrote them, read
   back at 3) inserted in one raw OVSDB transaction, to enforced;
6. the floor of 3: per pod, one raw transaction with its LSP and the same port group and
   address set memberships, to `up` and to enforced.

Everything is removed at the end: bench nodes and ports, policies, the floor's rows,
namespace labels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from dpunet.bench.controller import (
    FILL_PREFIX,
    MEASURE_PREFIX,
    PORTS_PER_NODE,
    STANDIN,
    _client,
    _parallel,
    _retrying,
    fill_raw,
    register_nodes,
    remove_nodes,
    standin,
    wait_adopted,
)
from dpunet.bench.ovsdb import open_api
from dpunet.bench.stats import ratio, summarize
from dpunet.contract.api import ContainerPort, PortRequest
from dpunet.contract.client import ClientError
from dpunet.contract.lsp import lsp_options
from dpunet.lab.runner import LabError
from dpunet.lab.topology import LabPlan
from dpunet.ovsdb.api import NbApi
from dpunet.ovsdb.atoms import ovsdb_map, ovsdb_set
from dpunet.ovsdb.rpc import NB_SCHEMA, SB_SCHEMA, request

NAMESPACES, APPS, ROLES, TEAMS = 10, 20, 3, 5
NS_PREFIX = "benchp-"
POLICY_PREFIX = "bench-"
FLOOR_SWITCH = "bench-pfloor"
FLOOR_MARK = {"bench": "policy-floor"}
OWNER = ("dpunet:owner", "dpunet")
POLICY_KINDS = ("netpol", "netpol-default-deny", "netpol-selector")
ENFORCE_TIMEOUT = 600.0
POLL_S = 0.01


def pod_shape(k: int) -> tuple[str, dict[str, str], list[tuple[str, str, int]]]:
    """Pod k's namespace, labels and named ports."""
    labels = {"app": f"app{k % APPS}", "role": f"r{k % ROLES}"}
    return f"{NS_PREFIX}{k % NAMESPACES}", labels, [("http", "TCP", 8080)]


def policy_doc(i: int) -> tuple[str, str, dict[str, Any]]:
    """Policy i: (namespace, name, manifest)."""
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": {"app": f"app{i % APPS}"}},
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": f"t{i % TEAMS}"}},
                        "podSelector": {"matchLabels": {"role": f"r{i % ROLES}"}},
                    }
                ],
                "ports": [{"port": "http"}, {"port": 9000 + i, "endPort": 9010 + i}],
            },
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
        ],
    }
    if i % 4 == 0:
        spec["egress"] = [
            {
                "to": [{"podSelector": {"matchLabels": {"app": f"app{(i + 1) % APPS}"}}}],
                "ports": [{"protocol": "UDP", "port": 53}],
            }
        ]
        spec["policyTypes"] = ["Ingress", "Egress"]
    namespace, name = f"{NS_PREFIX}{i % NAMESPACES}", f"{POLICY_PREFIX}{i}"
    manifest = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }
    return namespace, name, manifest


def expected_groups(k: int, policies: int) -> int:
    """How many port groups pod k belongs to under `policies` policies: those selecting it
    and its namespace's default-deny group per isolated direction."""
    selecting = [i for i in range(policies) if i % NAMESPACES == k % NAMESPACES]
    selecting = [i for i in selecting if i % APPS == k % APPS]
    if not selecting:
        return 0
    return len(selecting) + 1 + (1 if any(i % 4 == 0 for i in selecting) else 0)


# ------------------------------------------------------------------ OVSDB, raw
def transact(remote: str, schema: str, ops: list[dict[str, Any]]) -> list[Any]:
    """One raw OVSDB transaction; its results (LabError on any error)."""
    try:
        reply = request(remote, "transact", [schema, *ops], 120_000)
    except OSError as exc:
        raise LabError(f"{schema} at {remote}: {exc}") from exc
    results = reply.result or []
    errors = [r for r in results if isinstance(r, dict) and r.get("error")]
    if reply.error is not None or errors:
        raise LabError(f"{schema} at {remote}: {reply.error or errors[0]}")
    return list(results)


def _owned(table: str, columns: list[str]) -> dict[str, Any]:
    return {
        "op": "select",
        "table": table,
        "where": [["external_ids", "includes", ["map", [list(OWNER)]]]],
        "columns": columns,
    }


class Enforcement:
    """Raises NB_Global.nb_cfg and waits for northd and the real chassis to reach it."""

    def __init__(self, nb_remote: str, sb_remote: str) -> None:
        self.nb, self.sb = nb_remote, sb_remote
        (rows,) = transact(
            sb_remote,
            SB_SCHEMA,
            [{"op": "select", "table": "Chassis_Private", "where": [], "columns": ["name"]}],
        )
        self.chassis = sorted(r["name"] for r in rows["rows"] if r["name"] != STANDIN)

    def wait(self) -> dict[str, float]:
        """Seconds until northd (`northd_s`) and every real chassis (`chassis_s`) acknowledged
        everything written before the call."""
        started = time.perf_counter()
        bump = {
            "op": "mutate",
            "table": "NB_Global",
            "where": [],
            "mutations": [["nb_cfg", "+=", 1]],
        }
        get = {"op": "select", "table": "NB_Global", "where": [], "columns": ["nb_cfg"]}
        target = transact(self.nb, NB_SCHEMA, [bump, get])[1]["rows"][0]["nb_cfg"]
        sb_cfg = {"op": "select", "table": "NB_Global", "where": [], "columns": ["sb_cfg"]}
        self._until(
            lambda: transact(self.nb, NB_SCHEMA, [sb_cfg])[0]["rows"][0]["sb_cfg"] >= target
        )
        northd = time.perf_counter() - started
        private = {
            "op": "select",
            "table": "Chassis_Private",
            "where": [],
            "columns": ["name", "nb_cfg"],
        }

        def chassis_done() -> bool:
            rows = transact(self.sb, SB_SCHEMA, [private])[0]["rows"]
            done = {r["name"] for r in rows if r["nb_cfg"] >= target}
            return set(self.chassis) <= done

        self._until(chassis_done)
        return {"northd_s": northd, "chassis_s": time.perf_counter() - started}

    @staticmethod
    def _until(done: Callable[[], bool]) -> None:
        deadline = time.perf_counter() + ENFORCE_TIMEOUT
        while not done():
            if time.perf_counter() > deadline:
                raise LabError(f"OVN did not acknowledge the writes within {ENFORCE_TIMEOUT:.0f} s")
            time.sleep(POLL_S)


def snapshot(nb_remote: str) -> dict[str, list[dict[str, Any]]]:
    """dpunet's policy port groups, address sets and their ACLs as rows."""
    groups, sets, acls = transact(
        nb_remote,
        NB_SCHEMA,
        [
            _owned("Port_Group", ["name", "ports", "acls", "external_ids"]),
            _owned("Address_Set", ["name", "addresses", "external_ids"]),
            _owned(
                "ACL",
                ["_uuid", "direction", "priority", "match", "action", "options", "external_ids"],
            ),
        ],
    )
    kind = "dpunet:kind"
    return {
        "port_groups": [
            g for g in groups["rows"] if ovsdb_map(g["external_ids"]).get(kind) in POLICY_KINDS
        ],
        "address_sets": [
            s for s in sets["rows"] if ovsdb_map(s["external_ids"]).get(kind) in POLICY_KINDS
        ],
        "acls": [a for a in acls["rows"] if ovsdb_map(a["external_ids"]).get(kind) in POLICY_KINDS],
    }


def floor_ops(snap: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The snapshot's rows inserted again (same names, matches and members) under the
    floor's mark instead of dpunet's: one transaction's operations."""
    mark = ["map", [list(kv) for kv in FLOOR_MARK.items()]]
    names = {}
    ops: list[dict[str, Any]] = []
    for n, acl in enumerate(snap["acls"]):
        names[acl["_uuid"][1]] = f"acl{n}"
        row = {k: acl[k] for k in ("direction", "priority", "match", "action", "options")}
        ops.append(
            {
                "op": "insert",
                "table": "ACL",
                "row": row | {"external_ids": mark},
                "uuid-name": f"acl{n}",
            }
        )
    for group in snap["port_groups"]:
        acls = [["named-uuid", names[a[1]]] for a in ovsdb_set(group["acls"]) if a[1] in names]
        row = {
            "name": group["name"],
            "ports": group["ports"],
            "acls": ["set", acls],
            "external_ids": mark,
        }
        ops.append({"op": "insert", "table": "Port_Group", "row": row})
    for aset in snap["address_sets"]:
        row = {"name": aset["name"], "addresses": aset["addresses"], "external_ids": mark}
        ops.append({"op": "insert", "table": "Address_Set", "row": row})
    return ops


def remove_floor(nb_remote: str) -> None:
    """The floor's rows (its ACLs go with their port groups)."""
    where = [["external_ids", "includes", ["map", [list(kv) for kv in FLOOR_MARK.items()]]]]
    transact(
        nb_remote,
        NB_SCHEMA,
        [
            {"op": "delete", "table": "Port_Group", "where": where},
            {"op": "delete", "table": "Address_Set", "where": where},
        ],
    )


def memberships(nb_remote: str, lsp: str, ip: str) -> tuple[list[str], list[str], str]:
    """(port groups holding LSP `lsp`, address sets holding `ip`, the LSP's UUID)."""
    (ports,) = transact(
        nb_remote,
        NB_SCHEMA,
        [
            {
                "op": "select",
                "table": "Logical_Switch_Port",
                "where": [["name", "==", lsp]],
                "columns": ["_uuid"],
            },
        ],
    )
    if not ports["rows"]:
        return [], [], ""
    uuid = ports["rows"][0]["_uuid"][1]
    groups, sets = transact(
        nb_remote,
        NB_SCHEMA,
        [
            {
                "op": "select",
                "table": "Port_Group",
                "where": [["ports", "includes", ["set", [["uuid", uuid]]]]],
                "columns": ["name"],
            },
            {
                "op": "select",
                "table": "Address_Set",
                "where": [["addresses", "includes", ["set", [ip]]]],
                "columns": ["name"],
            },
        ],
    )
    return [r["name"] for r in groups["rows"]], [r["name"] for r in sets["rows"]], uuid


# ------------------------------------------------------------------ the run
class _Run:
    def __init__(
        self,
        plan: LabPlan,
        pods: int,
        policies: int,
        sample: int,
        concurrency: int,
        say: Callable[[str], None],
    ) -> None:
        self.plan, self.pods, self.policies = plan, pods, policies
        self.sample, self.concurrency, self.say = sample, concurrency, say
        ovn = plan.ovn_dir(plan.cp)
        self.nb = f"unix:{ovn}/ovnnb_db.sock"
        self.sb = f"unix:{ovn}/ovnsb_db.sock"
        self.next_pod = pods  # sample pods are numbered after the filled ones
        self.measured: list[str] = []

    def put_pod(self, k: int) -> tuple[str, str, float]:
        """PUT pod k on a measure node: (LSP name, address, seconds to `up`)."""
        namespace, labels, named = pod_shape(k)
        node = self.measured[k % len(self.measured)]
        body = PortRequest(
            node=node,
            sandbox=f"s{k}",
            uid=f"u{k}",
            labels=labels,
            ports=[ContainerPort(name=n, container_port=c, protocol=p) for n, p, c in named],
        )
        started = time.perf_counter()
        with _client(self.plan) as client:
            info = _retrying(partial(client.put_port, namespace, f"p{k}", body, timeout=120))
        return f"{namespace}_p{k}", str(info.ips[0]).split("/")[0], time.perf_counter() - started

    def pod_adds(self, policies: int, enforcement: Enforcement) -> dict[str, Any]:
        """`sample` pods added one at a time: to `up`, to their port groups, to enforced."""
        up, grouped, enforced, pods = [], [], [], []
        for _ in range(self.sample):
            k, self.next_pod = self.next_pod, self.next_pod + 1
            started = time.perf_counter()
            lsp, ip, to_up = self.put_pod(k)
            up.append(to_up * 1000)
            want = expected_groups(k, policies)
            deadline = started + ENFORCE_TIMEOUT
            while len(memberships(self.nb, lsp, ip)[0]) < want:
                if time.perf_counter() > deadline:
                    raise LabError(f"pod {lsp} did not join its {want} port groups")
                time.sleep(POLL_S)
            grouped.append((time.perf_counter() - started) * 1000)
            enforcement.wait()
            enforced.append((time.perf_counter() - started) * 1000)
            pods.append((lsp, ip))
        return {
            "up_ms": summarize(up),
            "in_port_groups_ms": summarize(grouped),
            "enforced_ms": summarize(enforced),
            "pods": pods,
        }

    def apply(self, enforcement: Enforcement) -> dict[str, Any]:
        """Every policy PUT, then enforced."""
        docs = [policy_doc(i) for i in range(self.policies)]
        started = time.perf_counter()

        def put(i: int) -> None:
            with _client(self.plan) as client:
                _retrying(partial(client.put_policy, *docs[i]))

        _parallel(put, range(len(docs)), self.concurrency)
        api = time.perf_counter() - started
        acked = enforcement.wait()
        return {
            "api_s": api,
            "northd_s": api + acked["northd_s"],
            "enforced_s": api + acked["chassis_s"],
        }

    def delete(self, enforcement: Enforcement) -> dict[str, Any]:
        """Every policy DELETE, then enforced."""
        started = time.perf_counter()

        def delete(i: int) -> None:
            with _client(self.plan) as client:
                _retrying(partial(client.delete_policy, *policy_doc(i)[:2]))

        _parallel(delete, range(self.policies), self.concurrency)
        api = time.perf_counter() - started
        return {"api_s": api, "enforced_s": api + enforcement.wait()["chassis_s"]}

    def floor_apply(self, snap: dict[str, Any], enforcement: Enforcement) -> dict[str, Any]:
        started = time.perf_counter()
        transact(self.nb, NB_SCHEMA, floor_ops(snap))
        commit = time.perf_counter() - started
        acked = enforcement.wait()
        return {
            "commit_s": commit,
            "northd_s": commit + acked["northd_s"],
            "enforced_s": commit + acked["chassis_s"],
        }

    def floor_pod_adds(
        self,
        idl: Any,
        pods: list[tuple[str, str]],
        enforcement: Enforcement,
        member_of: dict[str, tuple[list[str], list[str]]],
    ) -> dict[str, Any]:
        """Per measured pod, its LSP and memberships in one raw transaction."""
        commit, up, enforced = [], [], []
        for n, (lsp, _) in enumerate(pods):
            groups, sets = member_of[lsp]
            name = f"pfloor-{n}"
            ip = f"198.19.{201 + n // 250}.{n % 250 + 1}"
            address = f"0a:58:c6:13:{201 + n // 250:02x}:{n % 250 + 1:02x} {ip}"
            opts = ["map", sorted(lsp_options(STANDIN, iface_id_ver=f"pf{n}").items())]
            ops: list[dict[str, Any]] = [
                {
                    "op": "insert",
                    "table": "Logical_Switch_Port",
                    "uuid-name": "lsp",
                    "row": {
                        "name": name,
                        "addresses": address,
                        "port_security": address,
                        "options": opts,
                    },
                },
                {
                    "op": "mutate",
                    "table": "Logical_Switch",
                    "where": [["name", "==", FLOOR_SWITCH]],
                    "mutations": [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]],
                },
            ]
            ops += [
                {
                    "op": "mutate",
                    "table": "Port_Group",
                    "where": [["name", "==", g]],
                    "mutations": [["ports", "insert", ["set", [["named-uuid", "lsp"]]]]],
                }
                for g in groups
            ]
            ops += [
                {
                    "op": "mutate",
                    "table": "Address_Set",
                    "where": [["name", "==", s]],
                    "mutations": [["addresses", "insert", ["set", [ip]]]],
                }
                for s in sets
            ]
            started = time.perf_counter()
            transact(self.nb, NB_SCHEMA, ops)
            commit.append((time.perf_counter() - started) * 1000)
            idl.wait_member("up", name, timeout=120)
            up.append((time.perf_counter() - started) * 1000)
            enforcement.wait()
            enforced.append((time.perf_counter() - started) * 1000)
        return {
            "commit_ms": summarize(commit),
            "up_ms": summarize(up),
            "enforced_ms": summarize(enforced),
        }

    def label_namespaces(self, clear: bool = False) -> None:
        with _client(self.plan) as client:
            for j in range(NAMESPACES):
                labels = {} if clear else {"team": f"t{j % TEAMS}"}
                _retrying(partial(client.label_namespace, f"{NS_PREFIX}{j}", labels))

    def cleanup(self) -> None:
        """Policies, floor rows, namespace labels, bench nodes."""
        with _client(self.plan) as client:
            for item in _retrying(client.list_policies):
                if item.namespace.startswith(NS_PREFIX):
                    _retrying(partial(client.delete_policy, item.namespace, item.name))
        remove_floor(self.nb)
        transact(
            self.nb,
            NB_SCHEMA,
            [{"op": "delete", "table": "Logical_Switch", "where": [["name", "==", FLOOR_SWITCH]]}],
        )
        self.label_namespaces(clear=True)
        remove_nodes(self.plan)


def run(
    plan: LabPlan,
    pods: int,
    policies: int,
    sample: int,
    concurrency: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The measurements of the module docstring, as one JSON-able dict."""
    r = _Run(plan, pods, policies, sample, concurrency, say)
    fill_nodes = max(1, math.ceil(pods / PORTS_PER_NODE))
    out: dict[str, Any] = {
        "pods": pods,
        "policies": policies,
        "sample": sample,
        "concurrency": concurrency,
    }
    r.cleanup()  # leftovers of an interrupted run
    try:
        with (
            standin(plan),
            open_api(r.nb, "OVN_Northbound", NbApi, ["Logical_Switch", "Logical_Switch_Port"]) as (
                nb,
                idl,
            ),
        ):
            enforcement = Enforcement(r.nb, r.sb)
            out["chassis"] = enforcement.chassis
            say(f"registering 1+{fill_nodes} bench nodes, filling {pods} pods")
            r.measured = register_nodes(plan, MEASURE_PREFIX, 1, 1)
            fillers = register_nodes(plan, FILL_PREFIX, fill_nodes, 2)
            r.label_namespaces()
            started = time.perf_counter()
            names = fill_raw(nb, fillers, 0, pods, pod_shape)
            out["fill_adopt_s"] = wait_adopted(plan, idl, names, fillers, pods)
            out["fill_s"] = time.perf_counter() - started
            say(f"{sample} pod adds without policies")
            out["pod_add_no_policy"] = r.pod_adds(0, enforcement)
            out["pod_add_no_policy"].pop("pods")
            say(f"applying {policies} policies")
            out["apply"] = r.apply(enforcement)
            snap = snapshot(r.nb)
            out["objects"] = {k: len(v) for k, v in snap.items()}
            say(f"{sample} pod adds with {policies} policies")
            with_policies = r.pod_adds(policies, enforcement)
            member_of = {lsp: memberships(r.nb, lsp, ip)[:2] for lsp, ip in with_policies["pods"]}
            snap = snapshot(r.nb)  # with the measured pods in it
            out["pod_add_with_policies"] = with_policies
            say(f"deleting {policies} policies")
            out["delete"] = r.delete(enforcement)
            say("floor: the same objects in one raw transaction")
            out["floor_apply"] = r.floor_apply(snap, enforcement)
            nb.ls_add(FLOOR_SWITCH, may_exist=True).execute(check_error=True)
            say(f"floor: {sample} pods with their memberships, one raw transaction each")
            out["floor_pod_add"] = r.floor_pod_adds(
                idl, with_policies.pop("pods"), enforcement, member_of
            )
    except ClientError as exc:
        raise LabError(f"controller: {exc}") from exc
    finally:
        say("removing the policies, floor rows, bench nodes and ports")
        r.cleanup()
    out["ratio_apply_vs_floor"] = ratio(
        out["apply"]["enforced_s"], out["floor_apply"]["enforced_s"]
    )
    out["ratio_pod_add_vs_floor"] = ratio(
        out["pod_add_with_policies"]["enforced_ms"].get("median"),
        out["floor_pod_add"]["enforced_ms"].get("median"),
    )
    out["pod_add_policy_overhead"] = ratio(
        out["pod_add_with_policies"]["enforced_ms"].get("median"),
        out["pod_add_no_policy"]["enforced_ms"].get("median"),
    )
    return out
