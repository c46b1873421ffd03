"""`dpunet verify policy`: which of dpunet's ACLs a pod's new connection hits, and whether
OVN lets it through, by OVN's own trace.

Northbound gives the two ends (a pod's Logical_Switch_Port: MAC, address, switch; the
source switch's router port MAC when the destination is elsewhere) and every ACL with its
external_ids. `ovn-trace --detailed` runs the connection's first packet (`--ct=new,trk` at
every conntrack step) through the logical flows of Southbound; each flow of an ACL stage it
passes names, in the Southbound row's `external_ids:stage-hint`, the first 8 hex digits of
the ACL it was made from, which map back to the ACL's `dpunet:acl` identity. The verdict is
the trace's: allowed when the packet is output to the destination pod's port (an address
outside the pod network: to a gateway's localnet port). A diagnostic: it reads, never
changes anything.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dpunet.contract.policy import ACL_KEY, POLICY_KEY
from dpunet.ovsdb.atoms import ovsdb_map, ovsdb_set
from dpunet.ovsdb.rpc import NB_SCHEMA, SB_SCHEMA, request

PROTOCOLS = ("tcp", "udp", "sctp")
CT_STEPS = 8  # `--ct` values given: more than the conntrack steps of any path
TIMEOUT_S = 10.0
_PORT = re.compile(r"^(?P<number>[0-9]{1,5})(/(?P<protocol>[a-z]+))?$")
# ` 4. ls_out_acl (northd.c:6470): MATCH, priority 2001, uuid ca2bf5ed`
_LFLOW = re.compile(
    r"^\s*\d+\.\s+(?P<stage>\S+)\s+\([^)]*\):\s+(?P<match>.*),\s+priority\s+(?P<priority>\d+),"
    r"\s+uuid\s+(?P<uuid>[0-9a-f]{8})\s*$"
)
_PIPELINE = re.compile(r'^(?P<pipeline>ingress|egress)\(dp="(?P<dp>[^"]+)"')
_OUTPUT = re.compile(r'/\* output to "(?P<port>[^"]+)", type "(?P<type>[^"]*)" \*/')


class PolicyTraceError(Exception):
    """The trace could not be made (an unknown pod, a database or ovn-trace failing)."""


@dataclass(frozen=True)
class PortEnd:
    """A Logical_Switch_Port: its switch, MAC and IPv4 address."""

    lsp: str
    switch: str
    mac: str
    ip: str


@dataclass(frozen=True)
class AclHit:
    """A logical flow of an ACL stage the packet passed, and the ACL it came from."""

    datapath: str  # the logical switch
    stage: str
    priority: int
    actions: str  # the flow's first action line
    lflow: str  # the first 8 hex digits of the Logical_Flow's UUID
    acl: str | None  # dpunet:acl of the ACL it was made from; None: OVN's own flow
    policy: str | None  # dpunet:policy (<ns>/<name>) of that ACL
    acl_match: str | None  # the ACL's match as written in Northbound
    foreign_acl: str | None = None  # the UUID prefix of an ACL that is not dpunet's


@dataclass(frozen=True)
class PolicyTrace:
    """One connection's verdict and the ACL flows it hit, in trace order."""

    source: str
    destination: str
    protocol: str
    port: int
    allowed: bool
    microflow: str
    hits: tuple[AclHit, ...] = ()
    outputs: tuple[str, ...] = field(default=())

    @property
    def acls(self) -> list[str]:
        """dpunet's ACLs hit, in trace order, each once."""
        return list(dict.fromkeys(h.acl for h in self.hits if h.acl))

    def to_dict(self) -> dict[str, Any]:
        """As JSON/YAML output shows it."""
        out = asdict(self)
        out["verdict"] = "allowed" if self.allowed else "denied"
        out["acls"] = self.acls
        return out


def parse_port(text: str) -> tuple[str, int]:
    """`NUMBER[/tcp|udp|sctp]` (default tcp) as (protocol, number); ValueError otherwise."""
    match = _PORT.match(text.strip().lower())
    if match is None or not 1 <= int(match["number"]) <= 65535:
        raise ValueError(f"port {text!r} is not NUMBER[/tcp|udp|sctp] with NUMBER 1-65535")
    protocol = match["protocol"] or "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return protocol, int(match["number"])


def _select(remote: str, schema: str, ops: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    try:
        reply = request(remote, "transact", [schema, *ops], int(TIMEOUT_S * 1000))
    except OSError as exc:
        raise PolicyTraceError(f"cannot read {schema} at {remote}: {exc}") from exc
    results = reply.result or []
    errors = [r.get("error") for r in results if isinstance(r, dict) and r.get("error")]
    if reply.error is not None or errors:
        raise PolicyTraceError(f"{schema} at {remote}: {reply.error or errors[0]}")
    return [r.get("rows", []) for r in results]


def _uuid(value: Any) -> str:
    return str(value[1]) if isinstance(value, list) and len(value) == 2 else str(value)


@dataclass(frozen=True)
class NbView:
    """What the trace needs of Northbound."""

    ports: Mapping[str, PortEnd]  # LSP name -> its end (ports with an IPv4 address)
    router_macs: Mapping[str, str]  # switch -> MAC of its router port (rtos-<switch>)
    acls: Mapping[str, dict[str, Any]]  # ACL UUID -> {external_ids, match}


def read_nb(remote: str) -> NbView:
    """Switches, their ports' addresses, router port MACs and ACLs."""
    switches, lsps, lrps, acls = _select(
        remote,
        NB_SCHEMA,
        [
            {"op": "select", "table": "Logical_Switch", "where": [], "columns": ["name", "ports"]},
            {
                "op": "select",
                "table": "Logical_Switch_Port",
                "where": [],
                "columns": ["_uuid", "name", "addresses"],
            },
            {
                "op": "select",
                "table": "Logical_Router_Port",
                "where": [],
                "columns": ["name", "mac"],
            },
            {
                "op": "select",
                "table": "ACL",
                "where": [],
                "columns": ["_uuid", "external_ids", "match"],
            },
        ],
    )
    switch_of = {_uuid(p): sw["name"] for sw in switches for p in ovsdb_set(sw["ports"])}
    ports = {}
    for row in lsps:
        for address in ovsdb_set(row["addresses"]):
            mac, *ips = str(address).split()
            ipv4 = [ip for ip in ips if "." in ip]
            switch = switch_of.get(_uuid(row["_uuid"]))
            if ipv4 and switch:
                ports[row["name"]] = PortEnd(row["name"], switch, mac, ipv4[0].split("/")[0])
    macs = {str(r["name"])[len("rtos-") :]: str(r["mac"]) for r in lrps}
    by_uuid = {
        _uuid(r["_uuid"]): {"external_ids": ovsdb_map(r["external_ids"]), "match": r["match"]}
        for r in acls
    }
    return NbView(ports, macs, by_uuid)


def _stage_hints(remote: str, stages: set[str]) -> dict[str, str]:
    """Logical_Flow UUID -> external_ids:stage-hint, for the flows of `stages`."""
    if not stages:
        return {}
    ops = [
        {
            "op": "select",
            "table": "Logical_Flow",
            "where": [["external_ids", "includes", ["map", [["stage-name", stage]]]]],
            "columns": ["_uuid", "external_ids"],
        }
        for stage in sorted(stages)
    ]
    hints = {}
    for rows in _select(remote, SB_SCHEMA, ops):
        for row in rows:
            hint = ovsdb_map(row["external_ids"]).get("stage-hint")
            if hint:
                hints[_uuid(row["_uuid"])] = hint
    return hints


def resolve(nb: NbView, pod: str) -> PortEnd:
    """`NS/POD` (or an LSP name) as its port; PolicyTraceError when Northbound has none."""
    lsp = pod.replace("/", "_", 1)
    if lsp not in nb.ports:
        raise PolicyTraceError(f"no pod {pod} in OVN Northbound (no Logical_Switch_Port {lsp})")
    return nb.ports[lsp]


def microflow(src: PortEnd, eth_dst: str, dst_ip: str, protocol: str, port: int) -> str:
    """The first packet of the connection, as it leaves `src` for `eth_dst`."""
    return (
        f'inport == "{src.lsp}" && eth.src == {src.mac} && eth.dst == {eth_dst} && '
        f"ip4.src == {src.ip} && ip4.dst == {dst_ip} && ip.ttl == 64 && "
        f"{protocol} && {protocol}.src == 40000 && {protocol}.dst == {port}"
    )


def run_ovn_trace(sb_remote: str, datapath: str, flow: str) -> str:
    """`ovn-trace --detailed` of `flow` entering `datapath`, every conntrack step `new`."""
    argv = ["ovn-trace", f"--db={sb_remote}", "--detailed"]
    argv += ["--ct=new,trk"] * CT_STEPS + [datapath, flow]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise PolicyTraceError("ovn-trace is not installed (Debian: ovn-central)") from exc
    except subprocess.TimeoutExpired as exc:
        raise PolicyTraceError(f"ovn-trace did not answer within {TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise PolicyTraceError(f"ovn-trace failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def parse_trace(
    text: str,
) -> tuple[list[tuple[str, str, int, str, str]], list[tuple[str, str]]]:
    """The logical flows a trace passed, (datapath, stage, priority, uuid prefix, first
    action), and the ports it output to, (port, type)."""
    flows: list[tuple[str, str, int, str, str]] = []
    lines = text.splitlines()
    datapath = ""
    for i, line in enumerate(lines):
        if p := _PIPELINE.match(line):
            datapath = p["dp"]
        elif m := _LFLOW.match(line):
            action = lines[i + 1].strip() if i + 1 < len(lines) else ""
            flows.append((datapath, m["stage"], int(m["priority"]), m["uuid"], action))
    return flows, [(m["port"], m["type"]) for m in _OUTPUT.finditer(text)]


def is_acl_stage(stage: str) -> bool:
    """An ACL stage of a logical switch (`ls_in_acl`, `ls_out_acl_eval`, ...), not the
    hint or pre-ACL stages."""
    return bool(re.match(r"^ls_(in|out)_acl(_after_lb)?(_eval|_action)?$", stage))


def trace_policy(
    nb_remote: str, sb_remote: str, source: str, destination: str, port_text: str
) -> PolicyTrace:
    """Trace a new connection from pod `source` (NS/POD) to `destination` (NS/POD or an
    IPv4 address) on `port_text` (NUMBER[/PROTO])."""
    try:
        protocol, port = parse_port(port_text)
    except ValueError as exc:
        raise PolicyTraceError(str(exc)) from exc
    nb = read_nb(nb_remote)
    src = resolve(nb, source)
    dst: PortEnd | None
    try:
        dst_ip = str(ipaddress.IPv4Address(destination))
        dst = next((p for p in nb.ports.values() if p.ip == dst_ip), None)
    except ValueError:
        dst = resolve(nb, destination)
        dst_ip = dst.ip
    if dst is not None and dst.switch == src.switch:
        eth_dst = dst.mac
    elif src.switch in nb.router_macs:
        eth_dst = nb.router_macs[src.switch]
    else:
        raise PolicyTraceError(f"switch {src.switch} has no router port rtos-{src.switch}")
    flow = microflow(src, eth_dst, dst_ip, protocol, port)
    flows, outputs = parse_trace(run_ovn_trace(sb_remote, src.switch, flow))
    acl_flows = [f for f in flows if is_acl_stage(f[1])]
    hints = _stage_hints(sb_remote, {f[1] for f in acl_flows})
    hits = []
    for datapath, stage, priority, prefix, action in acl_flows:
        hint = next((h for u, h in hints.items() if u.startswith(prefix)), None)
        acl_uuid = next((u for u in nb.acls if hint and u.startswith(hint)), None)
        row = nb.acls.get(acl_uuid or "", {})
        ids = row.get("external_ids", {})
        ident = ids.get(ACL_KEY)
        hits.append(
            AclHit(
                datapath, stage, priority, action, prefix, ident, ids.get(POLICY_KEY),
                row.get("match"), hint if hint and not ident else None,
            )
        )  # fmt: skip
    if dst is not None:
        allowed = any(p == dst.lsp for p, _ in outputs)
    else:
        allowed = any(t == "localnet" for _, t in outputs)
    return PolicyTrace(
        source,
        destination,
        protocol,
        port,
        allowed,
        flow,
        tuple(hits),
        tuple(p for p, _ in outputs),
    )
