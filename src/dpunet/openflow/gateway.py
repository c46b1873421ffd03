"""The shared gateway's pipeline on the external bridge (brp0 on a DPU, breth0 on a full
node), where the node's gateway router GR_<node> shares the node's IP and MAC with the
host (docs/architecture.md, section 4a; docs/services.md).

Ports: the uplink, the host (`pf0hpf` on a DPU, the bridge's LOCAL port on a full node),
the GR (the localnet patch port ovn-controller creates) and, on a DPU, LOCAL (the DPU's
own address). Tables:

- table 0, priority 300/310: from the host, IP: committed in dpunet's conntrack zone
  with ct_mark 2, then out of the uplink (310: to LOCAL when addressed to the bridge's
  own MAC, a DPU's address); from the GR: ct_clear, the same with ct_mark 1; ARP from
  either: to the uplink (and the DPU's LOCAL), never to the other one;
- table 0, priority 250: TCP/UDP to the node IP on the NodePort range -> GR, before
  conntrack;
- table 0, priority 200: ARP requests for the node IP to the host only (the host
  answers); ARP replies to the node IP to the host and the GR (both resolve neighbours);
  IP to the node IP: through conntrack in the zone, then table 1;
- table 1: established/related with ct_mark 2 -> host (priority 300); with ct_mark 1 ->
  ct_clear, GR (250); anything else -> host (0).

Everything else keeps the bridge's own flows (the default NORMAL). Each flow's cookie is
`COOKIE_PREFIX` in the upper 32 bits and a hash of the flow in the lower ones, so a
reconcile reads dpunet's flows by the prefix, deletes those it does not want by their
exact cookie and adds the missing ones; it never touches another cookie and a pass that
finds everything in place sends nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dpunet.logs import event
from dpunet.openflow import protocol as ofp
from dpunet.openflow.client import OpenFlowConnection, mgmt_socket
from dpunet.openflow.protocol import ApplyActions, Conntrack, CtClear, Flow, Match, Output, SetField
from dpunet.settings import describe, read_config_file

COOKIE_PREFIX = 0x64706E74  # "dpnt"
COOKIE = COOKIE_PREFIX << 32
COOKIE_MASK = 0xFFFFFFFF00000000
DEFAULT_ZONE = 64000  # the conntrack zone OVN-Kubernetes' shared gateway uses on breth0
DEFAULT_NODE_PORTS = (30000, 32767)
MARK_GATEWAY = 1
MARK_HOST = 2
TABLE_IN = 0
TABLE_NODE_IP = 1

log = logging.getLogger(__name__)


class GatewaySettings(BaseModel):
    """The pipeline's settings in the agent that owns the external bridge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="program the shared gateway's flows")
    interval: float = Field(
        default=10.0, gt=0, description="dpunet-dpu: seconds between checks of the flows"
    )
    zone: int = Field(default=DEFAULT_ZONE, ge=1, le=65535, description="conntrack zone")
    node_port_range: str = Field(
        default=f"{DEFAULT_NODE_PORTS[0]}-{DEFAULT_NODE_PORTS[1]}",
        description="ports on the node IP that go to the gateway router (the controller's)",
    )

    @field_validator("node_port_range")
    @classmethod
    def _range(cls, value: str) -> str:
        low, sep, high = value.partition("-")
        if not (sep and low.isascii() and low.isdigit() and high.isascii() and high.isdigit()):
            raise ValueError(f"{value!r} is not a port range like 30000-32767")
        if not 1 <= int(low) <= int(high) <= 65535:
            raise ValueError(f"{value!r} is not a range inside 1-65535")
        return value

    @property
    def node_ports(self) -> tuple[int, int]:
        """The range as two numbers."""
        low, _, high = self.node_port_range.partition("-")
        return int(low), int(high)


def agent_settings(path: Path) -> GatewaySettings:
    """The `gateway` section of an agent's config file (dpunet-dpu's or dpunet-node's, YAML
    or JSON), as that agent reads it (defaults for what it leaves out); ValueError naming
    the file and the problem (a `SettingsError` when the file is unusable)."""
    try:
        return GatewaySettings.model_validate(read_config_file(path).get("gateway") or {})
    except ValidationError as exc:
        problems = describe(exc, field=lambda loc: ".".join(map(str, ("gateway", *loc))))
        raise ValueError(f"{path}: {problems}") from exc


@dataclass(frozen=True)
class GatewayPorts:
    """OpenFlow port numbers on the external bridge."""

    uplink: int
    host: int
    gateway: int | None  # None until ovn-controller made the patch port
    local_mac: str | None = None  # the bridge's own MAC when the host is not LOCAL (a DPU)

    @property
    def others(self) -> tuple[int, ...]:
        """Where ARP of the host or the GR goes: the uplink, and LOCAL when the host is
        not LOCAL (a DPU's own address lives there)."""
        if self.host == ofp.OFPP_LOCAL:
            return (self.uplink,)
        return (self.uplink, ofp.OFPP_LOCAL)


@dataclass(frozen=True)
class GatewaySpec:
    """What the pipeline is built from."""

    node_ip: IPv4Address
    ports: GatewayPorts
    zone: int = DEFAULT_ZONE
    node_ports: tuple[int, int] = DEFAULT_NODE_PORTS


def _cookie(flow: Flow) -> int:
    text = b"|".join(
        [
            str(flow.table).encode(),
            str(flow.priority).encode(),
            flow.match.encode(),
            flow.encoded_instructions(),
        ]
    )
    return COOKIE | int.from_bytes(hashlib.sha256(text).digest()[:4], "big")


def _flow(table: int, priority: int, match: Match, *actions: Output | Conntrack | CtClear) -> Flow:
    flow = Flow(table, priority, match, (ApplyActions(tuple(actions)),))
    return Flow(flow.table, flow.priority, flow.match, flow.instructions, cookie=_cookie(flow))


def _egress(
    spec: GatewaySpec, in_port: int, mark: int, first: tuple[CtClear, ...] = ()
) -> list[Flow]:
    """IP from the host or the GR: committed with `mark`, out of the uplink, or to LOCAL
    when addressed to the bridge's own MAC (a DPU's address). Never NORMAL: the host and
    the GR share a MAC, so learning would flip between them and flood."""
    commit = Conntrack(spec.zone, commit=True, actions=(SetField("ct_mark", mark),))
    ip_from = Match.of(in_port=in_port, eth_type=ofp.ETH_TYPE_IP)
    flows = [_flow(TABLE_IN, 300, ip_from, *first, commit, Output(spec.ports.uplink))]
    if spec.ports.local_mac:
        to_local = Match.of(in_port=in_port, eth_type=ofp.ETH_TYPE_IP, eth_dst=spec.ports.local_mac)
        flows.append(_flow(TABLE_IN, 310, to_local, *first, commit, Output(ofp.OFPP_LOCAL)))
    arp_from = Match.of(in_port=in_port, eth_type=ofp.ETH_TYPE_ARP)
    flows.append(_flow(TABLE_IN, 300, arp_from, *(Output(p) for p in spec.ports.others)))
    return flows


def _state(bits: int, mark: int) -> Match:
    return Match.of(ct_state=(ofp.CS_TRK | bits, ofp.CS_TRK | bits), ct_mark=mark)


def pipeline(spec: GatewaySpec) -> list[Flow]:
    """The flows the bridge should hold (module docstring), cookies included."""
    ports, ip = spec.ports, spec.node_ip
    host = Output(ports.host)
    arp_request = Match.of(eth_type=ofp.ETH_TYPE_ARP, arp_op=1, arp_tpa=ip)
    arp_reply = Match.of(eth_type=ofp.ETH_TYPE_ARP, arp_op=2, arp_tpa=ip)
    flows = [
        *_egress(spec, ports.host, MARK_HOST),
        _flow(TABLE_IN, 200, arp_request, host),
        _flow(
            TABLE_IN,
            200,
            Match.of(eth_type=ofp.ETH_TYPE_IP, ipv4_dst=ip),
            Conntrack(spec.zone, table=TABLE_NODE_IP),
        ),
        _flow(TABLE_NODE_IP, 300, _state(ofp.CS_EST, MARK_HOST), host),
        _flow(TABLE_NODE_IP, 300, _state(ofp.CS_REL, MARK_HOST), host),
        _flow(TABLE_NODE_IP, 0, Match(), host),
    ]
    if ports.gateway is None:
        return [*flows, _flow(TABLE_IN, 200, arp_reply, host)]
    # the packet's conntrack state (and the userspace datapath's cached connection) is
    # cleared at the patch port, so OVN's zones and this one never see each other's
    to_gateway = (CtClear(), Output(ports.gateway))
    flows += [
        *_egress(spec, ports.gateway, MARK_GATEWAY, (CtClear(),)),
        _flow(TABLE_IN, 200, arp_reply, host, Output(ports.gateway)),
        _flow(TABLE_NODE_IP, 250, _state(ofp.CS_EST, MARK_GATEWAY), *to_gateway),
        _flow(TABLE_NODE_IP, 250, _state(ofp.CS_REL, MARK_GATEWAY), *to_gateway),
    ]
    # NodePorts go to the GR before conntrack: the userspace datapath's load balancing to a
    # local backend breaks when the packet went through a zone upstream (the host's
    # ephemeral ports, 32768-60999 by default, stay out of the range)
    for value, mask in ofp.port_ranges(*spec.node_ports):
        for proto, field in ((ofp.IPPROTO_TCP, "tcp_dst"), (ofp.IPPROTO_UDP, "udp_dst")):
            match = Match.of(
                eth_type=ofp.ETH_TYPE_IP, ipv4_dst=ip, ip_proto=proto, **{field: (value, mask)}
            )
            flows.append(_flow(TABLE_IN, 250, match, Output(ports.gateway)))
    return flows


# ------------------------------------------------------------------ discovery
def physnet_bridge(external_ids: Mapping[str, str], physnet: str = "physnet") -> str | None:
    """The bridge `ovn-bridge-mappings` maps `physnet` to."""
    for entry in external_ids.get("ovn-bridge-mappings", "").split(","):
        net, _, bridge = entry.strip().partition(":")
        if net == physnet and bridge:
            return bridge
    return None


@dataclass(frozen=True)
class BridgePort:
    """One port of the external bridge as OVSDB reports it."""

    name: str
    type: str
    ofport: int | None
    mac: str | None = None


class OvsdbPort(Protocol):
    """A port of the local OVS database's replica (`dpunet.ovsdb.local.OvsPort`)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def ofport(self) -> int | None: ...
    @property
    def mac_in_use(self) -> str | None: ...
    @property
    def bridge(self) -> str: ...


def bridge_ports(ports: Iterable[OvsdbPort], bridge: str) -> list[BridgePort]:
    """The ports of `bridge` among the replica's."""
    return [BridgePort(p.name, p.type, p.ofport, p.mac_in_use) for p in ports if p.bridge == bridge]


def find_ports(
    bridge: str, ports: Sequence[BridgePort], host: str | None, uplink: str | None
) -> GatewayPorts | str:
    """The pipeline's ports on `bridge` (`host` None: the host is LOCAL, a full node;
    `uplink` None: the one port that is neither LOCAL, the host nor a patch port), or
    why they cannot be found."""
    by_name = {p.name: p for p in ports}
    patches = [p for p in ports if p.type == "patch"]
    if uplink is None:
        candidates = [
            p.name
            for p in ports
            if p.name not in (bridge, host) and p.type not in ("patch", "internal")
        ]
        if len(candidates) != 1:
            return (
                f"bridge {bridge}: cannot tell the uplink among {sorted(candidates) or 'no ports'}"
            )
        uplink = candidates[0]
    numbers: dict[str, int] = {}
    for role, name in (("uplink", uplink), ("host", host)):
        if name is None:
            continue
        port = by_name.get(name)
        if port is None or port.ofport is None or port.ofport <= 0:
            return f"bridge {bridge}: {role} {name} has no OpenFlow port yet"
        numbers[role] = port.ofport
    gateway = None
    if len(patches) == 1 and patches[0].ofport is not None and patches[0].ofport > 0:
        gateway = patches[0].ofport
    elif len(patches) > 1:
        return f"bridge {bridge}: several patch ports {sorted(p.name for p in patches)}"
    local = by_name.get(bridge)
    return GatewayPorts(
        uplink=numbers["uplink"],
        host=numbers.get("host", ofp.OFPP_LOCAL),
        gateway=gateway,
        local_mac=local.mac if local is not None and host is not None else None,
    )


def wanted_flows(
    settings: GatewaySettings,
    bridge: str,
    ports: Sequence[BridgePort],
    host: str | None,
    uplink: str | None,
    node_ip: IPv4Address,
) -> list[Flow] | str:
    """The flows `bridge` should hold for a gateway router on `node_ip`, or why its ports
    cannot be told apart (`find_ports`)."""
    found = find_ports(bridge, ports, host, uplink)
    if isinstance(found, str):
        return found
    return pipeline(GatewaySpec(node_ip, found, settings.zone, settings.node_ports))


def missing_flows(wanted: Sequence[Flow], present: Sequence[Flow]) -> tuple[int, int]:
    """(wanted flows absent or different, flows of dpunet's cookie not wanted) on a bridge:
    what verify and the lab's checks report."""
    delete, add = diff(wanted, present)
    wanted_cookies = {f.cookie for f in wanted}
    return len(add), len([c for c in delete if c not in wanted_cookies])


# ------------------------------------------------------------------ reconcile
@dataclass(frozen=True)
class FlowChanges:
    """What one reconcile did."""

    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def _same(a: Flow, b: Flow) -> bool:
    return (a.table, a.priority, a.match.as_dict()) == (b.table, b.priority, b.match.as_dict())


def diff(wanted: Iterable[Flow], present: Iterable[Flow]) -> tuple[list[int], list[Flow]]:
    """(cookies to delete, flows to add): a present flow of dpunet's stays when exactly one
    flow carries its cookie and it is the wanted flow of that cookie."""
    want = {f.cookie: f for f in wanted}
    seen: dict[int, list[Flow]] = {}
    for flow in present:
        seen.setdefault(flow.cookie, []).append(flow)
    delete = sorted(
        cookie
        for cookie, flows in seen.items()
        if cookie not in want or len(flows) != 1 or not _same(flows[0], want[cookie])
    )
    add = [f for c, f in want.items() if c not in seen or c in delete]
    return delete, add


def reconcile(conn: OpenFlowConnection, wanted: Sequence[Flow]) -> FlowChanges:
    """Make dpunet's flows on the connected bridge exactly `wanted` (others untouched)."""
    delete, add = diff(wanted, conn.flows(COOKIE, COOKIE_MASK))
    conn.delete_cookies(delete)
    conn.add(add)
    return FlowChanges(tuple(f.cookie for f in add), tuple(delete))


def program(ovs_db: str, bridge: str, wanted: Sequence[Flow]) -> FlowChanges:
    """`reconcile` over `bridge`'s management socket next to the OVS database `ovs_db`,
    logging what changed; OpenFlowError when the switch cannot be reached."""
    with OpenFlowConnection(mgmt_socket(ovs_db, bridge)) as conn:
        changes = reconcile(conn, wanted)
    if changes:
        event(
            log,
            "gateway-flows",
            bridge=bridge,
            added=len(changes.added),
            removed=len(changes.removed),
            flows=len(wanted),
        )
    return changes


def parse_gateway_mac(mac_column: Sequence[str]) -> tuple[str, IPv4Address] | None:
    """(MAC, IP) of an SB Port_Binding `mac` entry like `0a:58:c0:00:02:65 192.0.2.101/24`."""
    for entry in mac_column:
        parts = entry.split()
        if len(parts) >= 2:
            try:
                return parts[0].lower(), IPv4Address(parts[1].split("/")[0])
            except ValueError:
                continue
    return None
