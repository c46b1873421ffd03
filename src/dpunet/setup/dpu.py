"""`dpunet dpu setup`: the seed's "Worker-dpu Open vSwitch" section as one idempotent command.

What it converges (all through OVSDB and netlink, no ovs-vsctl/ip):
- `Open_vSwitch.other_config:hw-offload=true` and the external ids ovn-controller and the
  DPU agent read (`host-k8s-nodename`, `ovn-gw-interface`, `ovn-gw-nexthop`,
  `ovn-encap-ip`, `ovn-encap-type=geneve`, `ovn-remote`, `system-id`, `hostname`,
  `ovn-bridge-mappings` with `physnet:<bridge>`, `ovn-bridge-datapath-type`);
- bridge `brp0` (the chosen datapath type) with its internal port, the uplink `p0` and the
  host PF representor `pf0hpf`, and `other_config:hwaddr` pinned (see `bridge_hwaddr`);
- the uplink's IPv4 addresses and routes moved onto `brp0` in an order that keeps the DPU
  reachable: address on brp0 and brp0 up, then the ports into the bridge, then the routes
  replaced onto brp0, then the addresses removed from the uplink; with `address`, that
  address on `brp0` too (the seed's `ip addr add 192.168.41.127/22 dev brp0`), whether or
  not the uplink had it;
- on the userspace (netdev) datapath: tx checksum offload off on the bridge's internal
  port, a tap (OVS 3.5, Debian 13's, opens it with the offload on, 3.1 does not; the
  userspace datapath can pass the partial checksum the kernel leaves on to the wire), and
  the uplink quiet for ARP (`arp_ignore`).

`plan_dpu()` is pure (state in, plan out); `gather_state()` reads; `apply_dpu()` acts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dpunet.linux import ethtool, netlink, sysctl
from dpunet.linux.netlink import Address, KernelRoute, Link, Netlink
from dpunet.ovsdb.local import LocalOvs, OvsSnapshot
from dpunet.ovsdb.remote import default_ovs_db, validate_remote, vswitchd_pid
from dpunet.ovsdb.vswitch import EnsureBridge, SetMapKeys
from dpunet.setup.plan import IfName, Outcome, Plan, SetupError, Step, show, step

PHYSNET = "physnet"
ARP_IGNORE_NO_LOCAL = 8  # never answer ARP on this interface
VSWITCHD_TIMEOUT = 30.0
NETDEV_TIMEOUT = 10.0
_REMOTE_RE = re.compile(r"^(tcp|ssl):(\[[0-9a-fA-F:.]+\]|[^:\[\],]+):\d{1,5}$|^unix:[^,]+$")


def check_ovn_remote(value: str) -> str:
    """`value` if it is a list of OVN remotes (ValueError otherwise)."""
    for part in value.split(","):
        if not _REMOTE_RE.match(part.strip()):
            raise ValueError(f"{part!r} is not an OVN remote like tcp:192.0.2.1:6642")
    return value


def _nonempty(value: str) -> str:
    value = value.strip()
    if not value or any(c.isspace() for c in value) or "," in value:
        raise ValueError("must be a non-empty name without spaces or commas")
    return value


Name = Annotated[str, AfterValidator(_nonempty)]
DatapathChoice = Literal["auto", "system", "netdev"]


class DpuSetupConfig(BaseModel):
    """Input of `dpunet dpu setup` (the CLI options, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host_node: Name | None = Field(
        None, description="Kubernetes node name of the dpu-host this DPU serves (a DPU's)"
    )
    uplink: IfName = Field(description="uplink netdev (p0)")
    gw_nexthop: ipaddress.IPv4Address | None = Field(
        None, description="next hop of the node gateway (a DPU's)"
    )
    encap_ip: ipaddress.IPv4Address | None = Field(
        None, description="Geneve endpoint; default: uplink IP"
    )
    system_id: Name | None = Field(
        None, description="OVS system-id; default: existing, else hostname"
    )
    hostname: Name | None = Field(
        None, description="external_ids:hostname; default: existing, else host"
    )
    ovn_remote: Annotated[str, AfterValidator(check_ovn_remote)] | None = None
    address: ipaddress.IPv4Interface | None = Field(
        None, description="the DPU's underlay address (CIDR) to have on the bridge"
    )
    host_pf_rep: IfName | None = "pf0hpf"
    bridge: IfName = "brp0"
    datapath_type: DatapathChoice = "auto"
    ovs_db: Annotated[str, AfterValidator(validate_remote)] = Field(default_factory=default_ovs_db)
    full_node: bool = Field(
        False,
        description="a full node (`dpunet node setup`): no host PF representor, no "
        "hw-offload, no dpu-host external ids",
    )

    @model_validator(mode="after")
    def _role(self) -> DpuSetupConfig:
        if self.full_node:
            if self.host_node or self.gw_nexthop or self.host_pf_rep:
                raise ValueError(
                    "a full node serves no dpu-host: no host_node, gw_nexthop or host_pf_rep"
                )
            return self
        missing = [n for n in ("host_node", "gw_nexthop", "host_pf_rep") if not getattr(self, n)]
        if missing:
            raise ValueError("a DPU needs " + ", ".join(missing))
        return self


@dataclass(frozen=True)
class DpuState:
    """Everything `plan_dpu` looks at."""

    ovs: OvsSnapshot
    uplink: Link | None
    host_pf_rep: Link | None
    bridge_link: Link | None
    bridge_tx_checksum: bool | None  # any tx checksum offload on; None: no bridge netdev
    uplink_arp_ignore: int | None
    kernel_datapath: bool
    vswitchd_running: bool | None
    system_hostname: str


@dataclass
class DpuPlan(Plan):
    """The plan plus the values it resolved."""

    datapath_type: str = "system"
    encap_ip: str = ""
    system_id: str = ""
    hostname: str = ""
    hwaddr: str = ""
    addresses: list[Address] = field(default_factory=list)  # the uplink's, to move
    assign: Address | None = None  # `address`, when neither the bridge nor the uplink has it
    routes: list[KernelRoute] = field(default_factory=list)


def bridge_hwaddr(uplink_mac: str, datapath_type: str) -> str:
    """The MAC pinned on the bridge's internal port.

    Kernel datapath: the uplink's own MAC, so the DPU's address keeps its MAC when it moves
    and the neighbours' ARP caches stay right (OVS steals every frame from the uplink).
    Userspace datapath: OVS reads the uplink with a packet socket and the uplink's kernel
    stack still sees every frame, so the bridge must not share the uplink's MAC (each
    packet would reach the DPU's stack twice); use the uplink MAC with the
    locally-administered bit flipped.
    """
    mac = uplink_mac.lower()
    if datapath_type != "netdev":
        return mac
    first = int(mac[:2], 16) ^ 0x02
    return f"{first:02x}{mac[2:]}"


def _is_system(datapath_type: str) -> bool:
    return datapath_type in ("", "system")


def _resolve_datapath(cfg: DpuSetupConfig, state: DpuState) -> tuple[str, str]:
    if cfg.datapath_type != "auto":
        return cfg.datapath_type, "given"
    existing = state.ovs.bridges.get(cfg.bridge)
    if existing is not None:
        dp = "system" if _is_system(existing.datapath_type) else existing.datapath_type
        return dp, f"auto: the existing bridge {cfg.bridge} uses it"
    if state.kernel_datapath:
        return "system", "auto: the kernel has the openvswitch datapath"
    return "netdev", "auto: no openvswitch kernel datapath, using the userspace datapath"


def _db_datapath(datapath_type: str) -> str:
    """The Bridge.datapath_type value to write: empty for `system`, as ovs-vsctl leaves it."""
    return "" if datapath_type == "system" else datapath_type


def _merge_mappings(existing: str | None, bridge: str) -> str:
    """`ovn-bridge-mappings` with `physnet:<bridge>` in place of any other `physnet:` entry,
    the other networks' entries kept as they were."""
    want = f"{PHYSNET}:{bridge}"
    out: list[str] = []
    for entry in (e.strip() for e in (existing or "").split(",")):
        if not entry:
            continue
        if entry.split(":", 1)[0] != PHYSNET:
            out.append(entry)
        elif want not in out:
            out.append(want)
    return ",".join(out if want in out else [*out, want])


def _primary_ipv4(links: list[Link | None]) -> str | None:
    for link in links:
        if link is None:
            continue
        for addr in link.addresses:
            if not addr.secondary:
                return addr.address
        if link.addresses:
            return link.addresses[0].address
    return None


def _on_link(ip: str, links: list[Link | None]) -> bool:
    target = ipaddress.IPv4Address(ip)
    for link in links:
        for addr in link.addresses if link else ():
            if target in ipaddress.IPv4Network(f"{addr.address}/{addr.prefixlen}", strict=False):
                return True
    return False


def _movable_routes(link: Link) -> list[KernelRoute]:
    """Routes the kernel does not recreate by itself when the addresses move."""
    return [r for r in link.routes if r.proto != netlink.RTPROT_KERNEL]


def plan_dpu(cfg: DpuSetupConfig, state: DpuState) -> DpuPlan:
    """The steps that bring the DPU from `state` to what `cfg` asks for (pure)."""
    if state.uplink is None:
        raise SetupError(f"uplink netdev {cfg.uplink!r} not found in this network namespace")
    if cfg.host_pf_rep is not None and state.host_pf_rep is None:
        raise SetupError(
            f"host PF representor {cfg.host_pf_rep!r} not found in this network namespace"
        )
    ports = [p for p in (cfg.uplink, cfg.host_pf_rep) if p is not None]
    if len({*ports, cfg.bridge}) != len(ports) + 1:
        raise SetupError("--uplink, --host-pf-rep and --bridge must be three different names")
    existing_bridge = state.ovs.bridges.get(cfg.bridge)
    if existing_bridge is None and state.bridge_link is not None:
        raise SetupError(f"a netdev called {cfg.bridge!r} exists but is not an OVS bridge")
    if any(p in state.ovs.bridges for p in ports):
        raise SetupError("the uplink and the host PF representor must not be OVS bridges")
    for port in ports:
        owner = state.ovs.bridge_of_port(port)
        if owner is not None and owner != cfg.bridge:
            raise SetupError(
                f"{port} is already a port of OVS bridge {owner}; remove it there first"
            )

    plan = DpuPlan()
    dp, why = _resolve_datapath(cfg, state)
    plan.datapath_type = dp
    if cfg.datapath_type == "auto":
        plan.notes.append(f"datapath type {dp} ({why})")

    links = [state.uplink, state.bridge_link]
    given = cfg.address
    encap = (
        str(cfg.encap_ip)
        if cfg.encap_ip
        else str(given.ip)
        if given is not None
        else _primary_ipv4(links)
    )
    if encap is None:
        raise SetupError(
            f"neither {cfg.uplink} nor {cfg.bridge} has an IPv4 address to use as the "
            "Geneve endpoint: pass --address or --encap-ip"
        )
    plan.encap_ip = encap
    if (
        cfg.encap_ip
        and not any(a.address == encap for link in links if link for a in link.addresses)
        and (given is None or str(given.ip) != encap)
    ):
        plan.warnings.append(f"encap IP {encap} is not an address of {cfg.uplink} or {cfg.bridge}")
    nexthop = cfg.gw_nexthop
    in_given = given is not None and nexthop is not None and nexthop in given.network
    if nexthop is not None and not in_given and not _on_link(str(nexthop), links):
        plan.warnings.append(
            f"gateway next hop {cfg.gw_nexthop} is not in a subnet of {cfg.uplink}/{cfg.bridge}"
        )

    ext = state.ovs.external_ids
    plan.hostname = cfg.hostname or ext.get("hostname") or state.system_hostname
    plan.system_id = cfg.system_id or ext.get("system-id") or plan.hostname

    desired_ids: dict[str, str] = {}
    if not cfg.full_node:
        hw_offload_now = state.ovs.other_config.get("hw-offload")
        plan.steps.append(
            step("other_config", "hw-offload", "hw-offload", show(hw_offload_now), "true")
        )
        desired_ids["host-k8s-nodename"] = str(cfg.host_node)
        desired_ids["ovn-gw-interface"] = cfg.uplink
        desired_ids["ovn-gw-nexthop"] = str(cfg.gw_nexthop)
    desired_ids["ovn-encap-ip"] = encap
    desired_ids["ovn-encap-type"] = "geneve"
    remote = cfg.ovn_remote or ext.get("ovn-remote")
    if remote:
        desired_ids["ovn-remote"] = remote
    else:
        plan.warnings.append("external_ids:ovn-remote is not set: pass --ovn-remote tcp:IP:6642")
    desired_ids["system-id"] = plan.system_id
    desired_ids["hostname"] = plan.hostname
    desired_ids["ovn-bridge-mappings"] = _merge_mappings(ext.get("ovn-bridge-mappings"), cfg.bridge)
    if dp != "system" or ext.get("ovn-bridge-datapath-type", "system") != "system":
        desired_ids["ovn-bridge-datapath-type"] = dp
    for key, value in desired_ids.items():
        plan.steps.append(step("external_ids", key, key, show(ext.get(key)), value))

    plan.steps.append(
        step(
            "bridge",
            cfg.bridge,
            f"bridge {cfg.bridge}",
            "present" if existing_bridge else "absent",
            "present",
        )
    )
    current_dp = None
    if existing_bridge is not None:
        current_dp = (
            "system" if _is_system(existing_bridge.datapath_type) else existing_bridge.datapath_type
        )
    plan.steps.append(
        step("datapath_type", cfg.bridge, f"{cfg.bridge} datapath_type", show(current_dp), dp)
    )
    if state.uplink.mac is None:
        raise SetupError(f"uplink {cfg.uplink} has no MAC address")
    plan.hwaddr = bridge_hwaddr(state.uplink.mac, dp)
    current_hwaddr = existing_bridge.other_config.get("hwaddr") if existing_bridge else None
    plan.steps.append(
        step(
            "hwaddr",
            cfg.bridge,
            f"{cfg.bridge} hwaddr",
            show(current_hwaddr),
            plan.hwaddr,
        )
    )

    for link in (state.uplink, *([state.host_pf_rep] if state.host_pf_rep else [])):
        plan.steps.append(
            step("link_up", link.name, f"{link.name} up", "up" if link.up else "down", "up")
        )
    if dp == "netdev":
        recreated = existing_bridge is None or current_dp != dp  # a new tap: offload on
        tx_now = None if recreated else state.bridge_tx_checksum
        plan.steps.append(
            step(
                "tx_checksum",
                cfg.bridge,
                f"{cfg.bridge} tx checksum offload",
                show(None if tx_now is None else ("on" if tx_now else "off")),
                "off",
            )
        )
        plan.steps.append(
            step(
                "arp_ignore",
                cfg.uplink,
                f"{cfg.uplink} arp_ignore",
                show(state.uplink_arp_ignore),
                str(ARP_IGNORE_NO_LOCAL),
            )
        )

    # addresses: every IPv4 address of the uplink ends up on the bridge only
    on_bridge = list(state.bridge_link.addresses) if state.bridge_link else []
    bridge_keys = {(a.address, a.prefixlen) for a in on_bridge}
    plan.addresses = list(state.uplink.addresses)
    desired_addrs = on_bridge + [
        a for a in state.uplink.addresses if (a.address, a.prefixlen) not in bridge_keys
    ]
    if given is not None and (str(given.ip), given.network.prefixlen) not in {
        (a.address, a.prefixlen) for a in desired_addrs
    }:
        plan.assign = Address(
            str(given.ip), given.network.prefixlen, str(given.network.broadcast_address)
        )
        desired_addrs.append(plan.assign)
    cur_text = "; ".join(
        f"{name}: {show([str(a) for a in addrs])}"
        for name, addrs in ((cfg.uplink, state.uplink.addresses), (cfg.bridge, on_bridge))
        if addrs
    )
    plan.steps.append(
        step(
            "addresses",
            cfg.bridge,
            f"addresses -> {cfg.bridge}",
            cur_text or "-",
            f"{cfg.bridge}: {show([str(a) for a in desired_addrs])}" if desired_addrs else "-",
        )
    )
    bridge_up = state.bridge_link.up if state.bridge_link else None
    plan.steps.append(
        step(
            "link_up",
            cfg.bridge,
            f"{cfg.bridge} up",
            show(None if bridge_up is None else ("up" if bridge_up else "down")),
            "up",
        )
    )
    for port in ports:
        plan.steps.append(
            step(
                "port",
                port,
                f"{port} in {cfg.bridge}",
                show(state.ovs.bridge_of_port(port)),
                cfg.bridge,
            )
        )
    plan.routes = _movable_routes(state.uplink)
    plan.steps.append(
        step(
            "routes",
            cfg.bridge,
            f"routes -> {cfg.bridge}",
            show([r.describe(cfg.uplink) for r in plan.routes]),
            show([r.describe(cfg.bridge) for r in plan.routes]),
        )
    )

    hw = plan.find("other_config", "hw-offload")
    if hw is not None and hw.pending:
        if dp == "netdev":
            plan.notes.append(
                "hw-offload has no hardware to offload to on the userspace (netdev) datapath"
            )
        elif state.vswitchd_running is not False:
            plan.notes.append(
                "hw-offload takes full effect after an ovs-vswitchd restart "
                "(e.g. `systemctl restart openvswitch-switch`, as the seed does)"
            )
    needs_vswitchd = any(
        s.pending
        and (
            s.kind in ("addresses", "routes", "port")
            or (s.kind, s.target) == ("link_up", cfg.bridge)
        )
        for s in plan.steps
    )
    if needs_vswitchd and state.vswitchd_running is False:
        raise SetupError(
            "ovs-vswitchd is not running: it creates the bridge's netdev and attaches the "
            "ports; start it first"
        )
    return plan


def gather_state(cfg: DpuSetupConfig, db: LocalOvs, nl: Netlink) -> DpuState:
    """Read OVSDB, netlink and sysctls for `plan_dpu`."""
    pid = vswitchd_pid(cfg.ovs_db)
    running = True if pid is not None else (False if cfg.ovs_db.startswith("unix:") else None)
    return DpuState(
        ovs=db.snapshot(),
        uplink=nl.link(cfg.uplink),
        host_pf_rep=nl.link(cfg.host_pf_rep) if cfg.host_pf_rep else None,
        bridge_link=nl.link(cfg.bridge),
        bridge_tx_checksum=ethtool.tx_checksum_on(cfg.bridge),
        uplink_arp_ignore=sysctl.read_arp_ignore(cfg.uplink),
        kernel_datapath=netlink.kernel_has_ovs_datapath(),
        vswitchd_running=running,
        system_hostname=socket.gethostname(),
    )


def _wait_link(nl: Netlink, name: str, timeout: float) -> Link:
    deadline = time.monotonic() + timeout
    while True:
        link = nl.link(name)
        if link is not None:
            return link
        if time.monotonic() > deadline:
            raise SetupError(f"ovs-vswitchd did not create the netdev {name} within {timeout:.0f}s")
        time.sleep(0.05)


def _wait_applied(db: LocalOvs, next_cfg: int) -> None:
    if not db.wait_applied(next_cfg, VSWITCHD_TIMEOUT):
        raise SetupError(
            f"ovs-vswitchd did not apply the new configuration within {VSWITCHD_TIMEOUT:.0f}s "
            "(is it running and connected to this database?)"
        )


def _done(steps: list[Step]) -> None:
    for s in steps:
        if s.pending:
            s.outcome = Outcome.CHANGED


def apply_dpu(
    cfg: DpuSetupConfig, plan: DpuPlan, state: DpuState, db: LocalOvs, nl: Netlink
) -> None:
    """Carry out the pending steps of `plan`, in the order that keeps the DPU reachable."""
    api = db.api
    pending = {(s.kind, s.target): s for s in plan.pending}

    # 1. OVSDB: global config and the bridge itself.
    config_steps = [s for s in plan.pending if s.kind in ("other_config", "external_ids")]
    bridge_steps = [s for s in plan.pending if s.kind in ("bridge", "datapath_type", "hwaddr")]
    commands = []
    other = {s.target: s.desired for s in config_steps if s.kind == "other_config"}
    ids = {s.target: s.desired for s in config_steps if s.kind == "external_ids"}
    if other:
        commands.append(SetMapKeys(api, "Open_vSwitch", ".", "other_config", other))
    if ids:
        commands.append(SetMapKeys(api, "Open_vSwitch", ".", "external_ids", ids))
    if bridge_steps:
        commands.append(
            EnsureBridge(
                api,
                cfg.bridge,
                _db_datapath(plan.datapath_type)
                if ("datapath_type", cfg.bridge) in pending
                else None,
                plan.hwaddr if ("hwaddr", cfg.bridge) in pending else None,
            )
        )
    next_cfg = db.transact(commands)
    _done(config_steps + bridge_steps)
    if next_cfg is not None and state.vswitchd_running is not False:
        _wait_applied(db, next_cfg)

    link_steps = [
        s for s in plan.pending if s.kind in ("link_up", "arp_ignore", "tx_checksum", "addresses")
    ]
    port_steps = [s for s in plan.pending if s.kind == "port"]
    route_step = pending.get(("routes", cfg.bridge))
    if not (link_steps or port_steps or route_step):
        return

    # 2. netlink: links up, the uplink quiet (userspace datapath), addresses on the bridge.
    assert state.uplink is not None
    bridge = _wait_link(nl, cfg.bridge, NETDEV_TIMEOUT)
    for link in (state.uplink, *([state.host_pf_rep] if state.host_pf_rep else [])):
        if ("link_up", link.name) in pending:
            nl.set_up(link.index)
    if ("arp_ignore", cfg.uplink) in pending:
        sysctl.write_arp_ignore(cfg.uplink, ARP_IGNORE_NO_LOCAL)
    if ("tx_checksum", cfg.bridge) in pending:
        try:
            ethtool.disable_tx_checksum(cfg.bridge)
        except ethtool.EthtoolError as exc:
            raise SetupError(str(exc)) from exc
    for addr in [*plan.addresses, *([plan.assign] if plan.assign else [])]:
        nl.add_address(bridge.index, addr)
    nl.set_up(bridge.index)
    # routes through the bridge that a MAC change (tap down/up) may have flushed
    if ("hwaddr", cfg.bridge) in pending and state.bridge_link is not None:
        for route in _movable_routes(state.bridge_link):
            nl.replace_route(route, bridge.index)

    # 3. OVSDB: the uplink and the host PF representor into the bridge.
    port_commands = [api.add_port(cfg.bridge, s.target, may_exist=True) for s in port_steps]
    next_cfg = db.transact(port_commands)
    if next_cfg is not None and state.vswitchd_running is not False:
        _wait_applied(db, next_cfg)
        failed = [
            f"{i.name}: {i.error or 'no OpenFlow port'}"
            for i in db.interfaces([s.target for s in port_steps])
            if i.error or i.ofport is None or i.ofport < 0
        ]
        if failed:
            raise SetupError("ovs-vswitchd could not attach " + "; ".join(failed))
    _done(port_steps)

    # 4. netlink: routes onto the bridge, then the addresses off the uplink.
    for route in plan.routes:
        nl.replace_route(route, bridge.index)
    for addr in sorted(plan.addresses, key=lambda a: not a.secondary):
        nl.delete_address(state.uplink.index, addr)
    _done(link_steps + ([route_step] if route_step else []))
