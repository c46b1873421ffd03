"""`dpunet verify topology`: a DPU's OVS and a dpu-host's VFs against the expected layout.

Expected on a DPU (docs/architecture.md sections 1 and 4, the seed's DPU picture):
- `other_config:hw-offload=true`;
- the external bridge (`physnet:<bridge>` of `ovn-bridge-mappings`, `brp0`) with its
  internal port, the uplink `p0` and the host PF representor `pf0hpf`;
- `br-int` with `fail_mode=secure`, the management port (`iface-id=k8s-<host node>`),
  one working representor port per pod whose Port_Binding is requested on this chassis,
  no port left over from a pod that is gone, a Geneve port to every other chassis, and
  the patch pair between br-int and the external bridge;
- the shared gateway's flows on the external bridge, read over OpenFlow (dpunet's cookie),
  against those `dpunet-dpu` wants with its settings (conntrack zone, NodePort range: the
  `gateway` section of its config file, `DpuTarget.gateway`) for the gateway router port
  SB binds to the chassis (`rtoe-GR_<host node>`, which shares the host's IP); none when
  those settings turn the flows off;
- no interface OVS failed to open.
Expected on a full node (`DpuTarget.full_node`; OVS and the gateway router on the node
itself): the external bridge (`breth0`) and its shared gateway flows, those `dpunet-node`
wants with its settings, the host being the bridge's LOCAL port (`check_full_node`).
Expected on a dpu-host: the PF with VFs enabled, every VF either in the host or held by
a pod, each VF with its representor on the DPU, the management port up and addressed.

`check_dpu()`, `check_full_node()` and `check_host()` are pure (snapshots in, findings out).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dpunet.contract.lsp import gateway_external_port
from dpunet.openflow import gateway as gw
from dpunet.openflow.protocol import Flow
from dpunet.verify.ovsview import OvsView
from dpunet.verify.sbview import SbView
from dpunet.verify.targets import DpuTarget, HostTarget

INTEGRATION_BRIDGE = "br-int"
DEFAULT_EXTERNAL_BRIDGE = "brp0"
FULL_NODE_BRIDGE = "breth0"
PHYSNET = "physnet"
TUNNEL_TYPES = frozenset({"geneve", "vxlan", "stt"})


@dataclass(frozen=True)
class Finding:
    """One check: what was expected, what was found, and the fix when they differ."""

    node: str
    check: str
    ok: bool
    found: str = ""
    fix: str = ""


@dataclass(frozen=True)
class RepresentorInfo:
    """A DPU representor netdev and what it stands for (from sysfs)."""

    netdev: str
    kind: str  # "uplink", "pf", "vf", "other"
    vf_index: int | None = None


@dataclass(frozen=True)
class DpuLayout:
    """What `check_dpu` looks at."""

    node: str
    ovs: OvsView
    sb: SbView | None
    representors: tuple[RepresentorInfo, ...] = ()
    sb_error: str | None = None
    gateway_flows: tuple[Flow, ...] | None = None  # dpunet's, read over OpenFlow
    gateway_flows_error: str | None = None
    gateway: gw.GatewaySettings = field(default_factory=gw.GatewaySettings)  # the agent's
    full_node: bool = False  # checked by `check_full_node`


@dataclass(frozen=True)
class VfInfo:
    """One VF as the host sees it."""

    index: int
    pci: str
    netdev: str | None
    driver: str | None
    held_by: str | None = None  # the pod whose sandbox record holds it


@dataclass(frozen=True)
class HostLayout:
    """What `check_host` looks at."""

    node: str
    pf: str
    pf_present: bool
    num_vfs: int = 0
    total_vfs: int = 0
    vfs: tuple[VfInfo, ...] = ()
    mgmt_ifname: str = "ovn-k8s-mp0"
    mgmt_vf: int | None = 0
    mgmt_present: bool = False
    mgmt_up: bool = False
    mgmt_addresses: tuple[str, ...] = ()
    dpu_vf_representors: tuple[int, ...] | None = None  # VF indexes with a representor


@dataclass
class LayoutReport:
    """Every finding of `verify topology`."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def deviations(self) -> list[Finding]:
        """The findings that failed."""
        return [f for f in self.findings if not f.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "ok": not self.deviations,
            "deviations": len(self.deviations),
            "findings": [asdict(f) for f in self.findings],
        }


def external_bridge(ovs: OvsView) -> str:
    """The bridge of `physnet` in `ovn-bridge-mappings` (default brp0)."""
    for entry in ovs.external_ids.get("ovn-bridge-mappings", "").split(","):
        net, _, bridge = entry.strip().partition(":")
        if net == PHYSNET and bridge:
            return bridge
    return DEFAULT_EXTERNAL_BRIDGE


def check_dpu(layout: DpuLayout) -> list[Finding]:
    """The DPU's OVS against the expected layout (`check_full_node` for a full node)."""
    if layout.full_node:
        return check_full_node(layout)
    node, ovs = layout.node, layout.ovs
    out: list[Finding] = []

    def add(check: str, ok: bool, found: str = "", fix: str = "") -> None:
        out.append(Finding(node, check, ok, found, "" if ok else fix))

    setup_fix = "dpunet dpu setup (see docs/dpu-agent.md), or: "
    add(
        "other_config:hw-offload=true",
        ovs.hw_offload,
        f"hw-offload={ovs.other_config.get('hw-offload', '(unset)')}",
        "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true, then restart "
        "ovs-vswitchd (dpunet dpu setup does the first part)",
    )
    ext = external_bridge(ovs)
    ext_bridge = ovs.bridges.get(ext)
    add(
        f"bridge {ext} exists",
        ext_bridge is not None,
        "absent" if ext_bridge is None else "present",
        f"{setup_fix}ovs-vsctl add-br {ext}",
    )
    if ext_bridge is not None:
        kinds = {r.netdev: r.kind for r in layout.representors}
        uplink = ovs.external_ids.get("ovn-gw-interface") or next(
            (n for n, k in kinds.items() if k == "uplink"), "p0"
        )
        host_pf = next((n for n, k in kinds.items() if k == "pf"), "pf0hpf")
        ports = set(ext_bridge.ports)
        internal = ovs.interfaces.get(ext)
        add(
            f"{ext} has its internal port",
            internal is not None and internal.type == "internal",
            "present" if internal is not None else "absent",
            f"ovs-vsctl add-br {ext} recreates it (or: dpunet dpu setup)",
        )
        for what, port in (("uplink", uplink), ("host PF representor", host_pf)):
            add(
                f"{ext} has the {what} {port}",
                port in ports,
                f"ports: {', '.join(sorted(ports)) or '-'}",
                f"{setup_fix}ovs-vsctl add-port {ext} {port}",
            )
    br_int = ovs.bridges.get(INTEGRATION_BRIDGE)
    add(
        "bridge br-int exists",
        br_int is not None,
        "absent" if br_int is None else "present",
        "ovn-controller creates br-int: is it running and connected to OVN SB?",
    )
    if br_int is None:
        return out
    add(
        "br-int fail_mode=secure",
        br_int.fail_mode == "secure",
        f"fail_mode={br_int.fail_mode or '(unset)'}",
        "ovs-vsctl set-fail-mode br-int secure",
    )
    out += _check_ports(layout)
    out += _check_tunnels(layout)
    patches = [
        i
        for i in ovs.bridge_ifaces(INTEGRATION_BRIDGE)
        if i.type == "patch"
        and (peer := ovs.interfaces.get(i.options.get("peer", ""))) is not None
        and peer.bridge == ext
        and peer.options.get("peer") == i.name
    ]
    add(
        f"patch pair br-int <-> {ext}",
        bool(patches),
        ", ".join(p.name for p in patches) or "none",
        f"ovn-controller creates it for the node's localnet port: check "
        f"external_ids:ovn-bridge-mappings={PHYSNET}:{ext} and that the node is registered "
        "with the controller (its ext_<node> switch)",
    )
    if ext_bridge is not None:
        out += _check_gateway(layout, ext, uplink, host_pf)
    broken = [i for i in ovs.interfaces.values() if i.error]
    for iface in broken:
        add(
            f"interface {iface.name} works",
            False,
            f"error: {iface.error}",
            f"the netdev is missing or unusable: recreate it, or ovs-vsctl del-port {iface.name}",
        )
    return out


def check_full_node(layout: DpuLayout) -> list[Finding]:
    """A full node's external bridge and dpunet-node's shared gateway flows on it."""
    ovs = layout.ovs
    ext = gw.physnet_bridge(ovs.external_ids) or FULL_NODE_BRIDGE
    present = ext in ovs.bridges
    out = [
        Finding(
            layout.node,
            f"bridge {ext} exists",
            present,
            "present" if present else "absent",
            "" if present else "the node's OVS setup creates it (docs/node-agent.md)",
        )
    ]
    if layout.sb is None:
        out.append(
            Finding(
                layout.node,
                f"shared gateway flows on {ext}",
                False,
                layout.sb_error or "Southbound not readable",
                "give --sb-remote, or check external_ids:ovn-remote",
            )
        )
    elif present:
        uplink = ovs.external_ids.get("ovn-gw-interface")
        out += _check_gateway(layout, ext, uplink, None, "dpunet-node")
    return out


def _check_gateway(
    layout: DpuLayout,
    ext: str,
    uplink: str | None,
    host_pf: str | None,
    agent: str = "dpunet-dpu",
) -> list[Finding]:
    """The shared gateway's flows on the external bridge (`agent`'s, with its settings)
    for the gateway router port SB binds to this chassis (`host_pf` None: the host is
    LOCAL; `uplink` None: the bridge's one other system port)."""
    if layout.sb is None or (layout.gateway_flows is None and layout.gateway_flows_error is None):
        return []
    if not layout.gateway.enabled:
        return []
    node, ovs = layout.node, layout.ovs
    host_node = ovs.external_ids.get("host-k8s-nodename")
    ports = layout.sb.gateway_ports
    lport = gateway_external_port(host_node) if host_node else _external_port(ports, node)
    parsed = gw.parse_gateway_mac(ports.get(lport, ())) if lport else None
    check = f"shared gateway flows on {ext}"
    if parsed is None:
        return [
            Finding(
                node,
                check,
                False,
                f"no gateway router port {lport or 'rtoe-GR_<node>'} bound to this chassis",
                "register the dpu-host node with the controller; its GR_<node> waits for "
                "the node's gateway MAC, which this DPU's registration reports",
            )
        ]
    _mac, node_ip = parsed
    if layout.gateway_flows is None:
        return [Finding(node, check, False, layout.gateway_flows_error or "", "is OVS running?")]
    bridge_ports = [
        gw.BridgePort(i.name, i.type, i.ofport, i.mac_in_use) for i in ovs.bridge_ifaces(ext)
    ]
    wanted = gw.wanted_flows(layout.gateway, ext, bridge_ports, host_pf, uplink, node_ip)
    if isinstance(wanted, str):
        setup = "dpunet dpu setup" if agent == "dpunet-dpu" else "the node's OVS setup"
        return [Finding(node, check, False, wanted, setup)]
    missing, stale = gw.missing_flows(wanted, layout.gateway_flows)
    return [
        Finding(
            node,
            check,
            missing == 0 and stale == 0,
            f"GR and host share {node_ip}: {len(wanted)} flows wanted (zone "
            f"{layout.gateway.zone}, NodePorts {layout.gateway.node_port_range}), {missing} "
            f"missing, {stale} stale",
            f"is {agent} running (it repairs them every gateway.interval)? "
            f"docs/{'dpu-agent' if agent == 'dpunet-dpu' else 'node-agent'}.md",
        )
    ]


def _external_port(ports: Mapping[str, object], node: str) -> str | None:
    """The gateway router's external port among the l3gateway ports bound to the chassis
    (its join port is one too): `node`'s own, else the only `rtoe-GR_` one."""
    if gateway_external_port(node) in ports:
        return gateway_external_port(node)
    external = [p for p in ports if p.startswith(gateway_external_port(""))]
    return external[0] if len(external) == 1 else None


def _check_ports(layout: DpuLayout) -> list[Finding]:
    """Management port, one representor per requested pod, nothing stale."""
    node, ovs = layout.node, layout.ovs
    out: list[Finding] = []
    by_lsp = {i.iface_id: i for i in ovs.bridge_ifaces(INTEGRATION_BRIDGE) if i.iface_id}
    host = ovs.external_ids.get("host-k8s-nodename")
    agent_fix = (
        "dpunet-dpu plugs it: is dpunet-dpu running (dpunet dpu run)? Its log names "
        "refused bindings (unknown PF MAC, no representor, name taken)"
    )
    if host:
        mgmt = by_lsp.get(f"k8s-{host}")
        out.append(
            Finding(
                node,
                f"management port (k8s-{host}) on br-int",
                mgmt is not None and _working(mgmt.ofport),
                mgmt.name if mgmt else "absent",
                "" if mgmt is not None and _working(mgmt.ofport) else agent_fix,
            )
        )
    if layout.sb is None:
        out.append(
            Finding(
                node,
                "pods' representors (OVN Southbound)",
                False,
                layout.sb_error or "Southbound not readable",
                "give --sb-remote, or check external_ids:ovn-remote",
            )
        )
        return out
    wanted = [p for p in layout.sb.ports if p.representor and not p.logical_port.startswith("k8s-")]
    for port in wanted:
        iface = by_lsp.get(port.logical_port)
        if iface is None:
            out.append(
                Finding(node, f"representor of {port.logical_port}", False, "absent", agent_fix)
            )
            continue
        problems = []
        if not _working(iface.ofport):
            problems.append(f"ofport {iface.ofport}")
        if iface.error:
            problems.append(iface.error)
        if iface.external_ids.get("ovn-installed") != "true":
            problems.append("not ovn-installed")
        out.append(
            Finding(
                node,
                f"representor of {port.logical_port}",
                not problems,
                f"{iface.name}" + (f" ({'; '.join(problems)})" if problems else ""),
                ""
                if not problems
                else "ovn-controller installs the flows once the port works: check its log "
                "and the representor netdev",
            )
        )
    known = {p.logical_port for p in layout.sb.ports}
    for lsp, iface in sorted(by_lsp.items()):
        if iface.external_ids.get("dpunet-owned") == "true" and lsp not in known:
            out.append(
                Finding(
                    node,
                    f"no stale port ({iface.name})",
                    False,
                    f"{iface.name} bound to {lsp}, which has no Port_Binding on this chassis",
                    f"dpunet-dpu removes it on its next pass; by hand: "
                    f"ovs-vsctl del-port br-int {iface.name}",
                )
            )
    return out


def _check_tunnels(layout: DpuLayout) -> list[Finding]:
    """A tunnel port on br-int to every other chassis."""
    if layout.sb is None:
        return []
    tunnels = {
        i.options.get("remote_ip"): i
        for i in layout.ovs.bridge_ifaces(INTEGRATION_BRIDGE)
        if i.type in TUNNEL_TYPES
    }
    out = []
    for chassis in layout.sb.remote_chassis:
        iface = tunnels.get(chassis.ip)
        ok = iface is not None and iface.type == chassis.encap_type
        out.append(
            Finding(
                layout.node,
                f"{chassis.encap_type} tunnel to {chassis.name} ({chassis.ip})",
                ok,
                iface.name if iface else "absent",
                ""
                if ok
                else "ovn-controller creates it: check ovn-encap-type/ovn-encap-ip on both "
                "chassis and that ovn-controller runs here",
            )
        )
    return out


def _working(ofport: int | None) -> bool:
    return ofport is not None and ofport > 0


def check_host(layout: HostLayout) -> list[Finding]:
    """A dpu-host's VFs and management port against the expected layout."""
    node = layout.node
    out: list[Finding] = []

    def add(check: str, ok: bool, found: str = "", fix: str = "") -> None:
        out.append(Finding(node, check, ok, found, "" if ok else fix))

    add(
        f"PF {layout.pf} present",
        layout.pf_present,
        "present" if layout.pf_present else "absent",
        "check the NIC and its driver (mlx5_core), or give --pf",
    )
    if not layout.pf_present:
        return out
    add(
        "SR-IOV VFs enabled",
        layout.num_vfs > 0,
        f"sriov_numvfs={layout.num_vfs} of {layout.total_vfs}",
        f"dpunet host setup --pf {layout.pf} --num-vfs N",
    )
    for vf in layout.vfs:
        if vf.driver is None:
            add(
                f"VF{vf.index} ({vf.pci}) bound to a driver",
                False,
                "no driver",
                f"echo {vf.pci} > /sys/bus/pci/drivers/mlx5_core/bind",
            )
        elif vf.netdev is None and vf.held_by is None:
            add(
                f"VF{vf.index} ({vf.pci}) in the host or held by a pod",
                False,
                "its netdev is in no pod dpunet knows of",
                "a leaked VF: dpunet-host's reconcile returns it; if it stays, find it with "
                "`dpunet sriov list` and move it back (ip link set ... netns 1)",
            )
    if layout.dpu_vf_representors is not None:
        missing = sorted({vf.index for vf in layout.vfs} - set(layout.dpu_vf_representors))
        add(
            "every VF has a representor on the DPU",
            not missing,
            "missing for VF " + ", ".join(map(str, missing)) if missing else "all present",
            "the DPU must be in switchdev mode with representors created "
            "(devlink dev eswitch set ... mode switchdev)",
        )
    if layout.mgmt_vf is not None:
        add(
            f"management port {layout.mgmt_ifname} present and up",
            layout.mgmt_present and layout.mgmt_up,
            ("up" if layout.mgmt_up else "down") if layout.mgmt_present else "absent",
            "dpunet-host configures it from VF0: is dpunet-host running?",
        )
        add(
            f"management port {layout.mgmt_ifname} addressed",
            bool(layout.mgmt_addresses),
            ", ".join(layout.mgmt_addresses) or "no IPv4 address",
            "dpunet-host assigns the node subnet's .2: check that the controller knows "
            "the node (dpunet nodes list) and dpunet-host's log",
        )
    return out


# ------------------------------------------------------------------ gathering
def gather_dpu(target: DpuTarget) -> DpuLayout:
    """Read a DPU target."""
    from dpunet.hw.representors import list_representors
    from dpunet.hw.sysfs import Sysfs
    from dpunet.openflow.client import OpenFlowConnection, OpenFlowError
    from dpunet.verify.ovsview import read_ovs
    from dpunet.verify.sbview import SbError, read_sb

    ovs = read_ovs(target.ovs_db)
    chassis = ovs.external_ids.get("system-id", target.name)
    remote = target.sb_remote or _first_remote(ovs.external_ids.get("ovn-remote", ""))
    sb, sb_error = None, None
    if remote is None:
        sb_error = "external_ids:ovn-remote has no unix: or tcp: remote"
    else:
        try:
            sb = read_sb(remote, chassis)
        except SbError as exc:
            sb_error = str(exc)
    reps: tuple[RepresentorInfo, ...] = ()
    if not target.full_node:
        with contextlib.suppress(OSError):
            reps = tuple(
                RepresentorInfo(r.netdev, r.kind.value, r.vf_index)
                for r in list_representors(Sysfs(target.sysfs_root))
            )
    flows, flows_error = None, None
    try:
        ext = external_bridge(ovs)
        if target.full_node:
            ext = gw.physnet_bridge(ovs.external_ids) or FULL_NODE_BRIDGE
        with OpenFlowConnection(target.ovs_rundir / f"{ext}.mgmt") as conn:
            flows = tuple(conn.flows(gw.COOKIE, gw.COOKIE_MASK))
    except OpenFlowError as exc:
        flows_error = str(exc)
    return DpuLayout(
        target.name, ovs, sb, reps, sb_error, flows, flows_error, target.gateway, target.full_node
    )


def _first_remote(value: str) -> str | None:
    for remote in value.split(","):
        remote = remote.strip()
        if remote.startswith(("tcp:", "unix:")):
            return remote
    return None


def gather_host(target: HostTarget, dpu: DpuLayout | None = None) -> HostLayout:
    """Read a host target."""
    from dpunet.hw.host import find_pf, list_vfs
    from dpunet.hw.sysfs import Sysfs

    sysfs = Sysfs(target.sysfs_root)
    pf = find_pf(sysfs, target.pf)
    if pf is None:
        return HostLayout(target.name, target.pf, False)
    held = {r.device.key: f"{r.namespace}/{r.pod}" for r in target.sandboxes()}
    vfs = tuple(
        VfInfo(vf.index, vf.address, vf.netdev, vf.driver, held.get(vf.address))
        for vf in list_vfs(sysfs, pf)
    )
    present, up, addresses = _link_state(target.netns, target.mgmt_ifname)
    dpu_reps = (
        tuple(r.vf_index for r in dpu.representors if r.kind == "vf" and r.vf_index is not None)
        if dpu is not None
        else None
    )
    return HostLayout(
        target.name,
        target.pf,
        True,
        pf.num_vfs,
        pf.total_vfs,
        vfs,
        target.mgmt_ifname,
        target.mgmt_vf,
        present,
        up,
        addresses,
        dpu_reps,
    )


def _link_state(netns: str | None, ifname: str) -> tuple[bool, bool, tuple[str, ...]]:
    """(exists, up, IPv4 addresses) of a netdev in a namespace."""
    from dpunet.linux.netns import iproute_at

    with iproute_at(netns) as ipr:
        indexes = ipr.link_lookup(ifname=ifname)
        if not indexes:
            return False, False, ()
        link = ipr.get_links(indexes[0])[0]
        up = bool(link["flags"] & 1)
        addrs = tuple(
            f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=indexes[0], family=socket.AF_INET)
        )
    return True, up, addrs


def verify_layout(dpus: Sequence[DpuTarget], hosts: Sequence[HostTarget]) -> LayoutReport:
    """Gather and check every target; a host is checked against its DPU when both are given."""
    report = LayoutReport()
    dpu_layouts = {}
    for dpu in dpus:
        layout = gather_dpu(dpu)
        dpu_layouts[dpu.name] = layout
        report.findings += check_dpu(layout)
    for host in hosts:
        report.findings += check_host(gather_host(host, dpu_layouts.get(host.dpu or "")))
    return report
