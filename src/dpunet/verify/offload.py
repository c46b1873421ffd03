"""`dpunet verify offload`: per pod, which datapath flows are in hardware and why the others
are not.

Three signals, all read on the DPU: the datapath flows (`dpctl/dump-flows -m`, through
ovs-vswitchd's control socket), the tc flower filters of each representor (netlink) and
each representor's software vs hardware vport counters (ethtool statistics). Flows are
mapped to pods through their in_port and outputs: a br-int interface's
`external_ids:iface-id` is the pod's Logical_Switch_Port `<namespace>_<pod>`.

`analyse()` is pure (snapshot in, report out); `collect()` reads a target.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from dpunet.verify import dpctl
from dpunet.verify.dpctl import CT_FLAGS, DpFlow, Layer
from dpunet.verify.ethtool_stats import VportCounters, vport_counters
from dpunet.verify.ovsview import OvsView, pod_of_lsp
from dpunet.verify.targets import DpuTarget
from dpunet.verify.tc import DeviceFilters

# datapath actions tc flower can carry to the eSwitch (OVS netdev-offload-tc)
OFFLOADABLE_ACTIONS = frozenset(
    {
        "output",
        "drop",
        "set",
        "set_masked",
        "push_vlan",
        "pop_vlan",
        "push_mpls",
        "pop_mpls",
        "ct",
        "ct_clear",
        "recirc",
        "clone",
        "check_pkt_len",
        "gt",
        "le",
        "meter",
        "sample",
        "actions",
    }
)
UNSUPPORTED_MATCHES = frozenset({"nd", "nd_ext", "nsh"})

USERSPACE_DATAPATH = (
    "the bridges use the userspace (netdev) datapath, which has no hardware to offload to: "
    "every flow runs in ovs-vswitchd (expected in the lab; on a DPU use the kernel datapath "
    "with other_config:hw-offload=true)"
)
OFFLOAD_DISABLED = (
    "other_config:hw-offload is not true: offload is disabled "
    "(fix: ovs-vsctl set Open_vSwitch . other_config:hw-offload=true, then restart "
    "ovs-vswitchd)"
)
NOT_RESTARTED = (
    "hw-offload=true but no flow reached tc and no representor has a flower filter: "
    "ovs-vswitchd was probably not restarted since hw-offload was enabled "
    "(changing it takes a restart)"
)


@dataclass(frozen=True)
class FlowVerdict:
    """One datapath flow, where it runs and (when not in hardware) why."""

    ufid: str | None
    in_port: str | None
    outputs: tuple[str, ...]
    pods: tuple[str, ...]
    layer: str
    packets: int
    bytes: int
    used: float | None
    actions: str
    reasons: tuple[str, ...] = ()


@dataclass
class PodOffload:
    """The flows and traffic of one pod's representor."""

    pod: str
    representor: str
    lsp: str | None
    flows: int = 0
    flows_hardware: int = 0
    flows_tc_software: int = 0
    flows_ovs: int = 0
    packets_hardware: int = 0
    packets_software: int = 0
    bytes_hardware: int = 0
    bytes_software: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RepresentorSignals:
    """tc and ethtool signals of one representor."""

    name: str
    pod: str | None
    tc_in_hw: int | None = None
    tc_not_in_hw: int | None = None
    tc_hw_packets: int | None = None
    tc_sw_packets: int | None = None
    tc_note: str | None = None
    vport: VportCounters | None = None
    hw_tc_offload: bool | None = None


@dataclass
class OffloadReport:
    """What `verify offload` prints for one node."""

    node: str
    datapath: str
    hw_offload: bool
    offload_possible: bool
    notes: list[str] = field(default_factory=list)
    pods: list[PodOffload] = field(default_factory=list)
    flows: list[FlowVerdict] = field(default_factory=list)
    representors: list[RepresentorSignals] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class OffloadSnapshot:
    """Everything `analyse` looks at, as read from a node."""

    node: str
    ovs: OvsView
    flows: Sequence[DpFlow]
    tc: Mapping[str, DeviceFilters] = field(default_factory=dict)
    ethtool: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    hw_tc_offload: Mapping[str, bool | None] = field(default_factory=dict)


def flow_reasons(flow: DpFlow) -> list[str]:
    """Why this flow (as such) would not be in hardware; empty when nothing stands out."""
    reasons = []
    actions_text = ",".join(flow.actions)
    names = flow.action_names()
    if "userspace" in names:
        if "slow_path(" in actions_text:
            why = actions_text.split("slow_path(", 1)[1].split(")", 1)[0]
            reasons.append(
                f"slow_path({why}): the packet goes up to ovs-vswitchd "
                "(OVN controller action, ARP/ND responder, ICMP error, or a flow too complex "
                "for the datapath)"
            )
        else:
            reasons.append("userspace action: the packet is sent to ovs-vswitchd")
    state = flow.ct_state()
    if state is not None:
        value, mask = state
        tracked = bool(mask & value & CT_FLAGS["trk"])
        new = bool(mask & value & CT_FLAGS["new"])
        invalid = bool(mask & value & CT_FLAGS["inv"])
        not_est = bool(mask & CT_FLAGS["est"]) and not value & CT_FLAGS["est"]
        if tracked and (new or invalid or not_est):
            label = "+new" if new else ("+inv" if invalid else "-est")
            reasons.append(
                f"conntrack state {label}: only established connections are offloaded "
                "(connection setup stays in software)"
            )
    if "check_pkt_len" in names:
        reasons.append(
            "check_pkt_len (OVN gateway MTU check, options:gateway_mtu): needs OVS >= 2.16 "
            "with tc support in the kernel and NIC driver, else software"
        )
    unsupported = sorted({n for n in names if n not in OFFLOADABLE_ACTIONS and n != "userspace"})
    if unsupported:
        reasons.append(f"unsupported action(s) for tc offload: {', '.join(unsupported)}")
    bad_match = sorted(k for k in flow.match if k in UNSUPPORTED_MATCHES)
    dp_hash = flow.match.get("dp_hash", "0/0")
    if dp_hash and not dp_hash.endswith("/0") and dp_hash not in ("0", "0/0"):
        bad_match.append("dp_hash (select group)")
    if bad_match:
        reasons.append(f"unsupported match field(s) for tc offload: {', '.join(bad_match)}")
    if flow.layer is Layer.TC_SOFTWARE:
        reasons.append(
            "in tc but not in hardware (not_in_hw): the NIC driver refused the rule "
            "(unsupported match/action combination or table full; see dmesg)"
        )
    return reasons


def _port_pods(ovs: OvsView) -> dict[str, tuple[str, str | None]]:
    """Interface name -> (pod, lsp) for every interface bound to a pod or the mgmt port."""
    out = {}
    for iface in ovs.interfaces.values():
        pod = pod_of_lsp(iface.iface_id)
        if pod is not None:
            out[iface.name] = (pod, iface.iface_id)
    return out


def analyse(snap: OffloadSnapshot) -> OffloadReport:
    """The per-pod offload report of one node."""
    ovs = snap.ovs
    datapaths = sorted({b.datapath_type for b in ovs.bridges.values()}) or ["unknown"]
    report = OffloadReport(
        node=snap.node,
        datapath=",".join(datapaths),
        hw_offload=ovs.hw_offload,
        offload_possible=not ovs.userspace_datapath and ovs.hw_offload,
    )
    global_reasons = []
    if ovs.userspace_datapath:
        global_reasons.append(USERSPACE_DATAPATH)
    elif not ovs.hw_offload:
        global_reasons.append(OFFLOAD_DISABLED)
    else:
        tc_flows = any(f.layer is not Layer.OVS for f in snap.flows)
        tc_filters = any(d.filters for d in snap.tc.values())
        if snap.flows and not tc_flows and not tc_filters:
            global_reasons.append(NOT_RESTARTED)
            report.offload_possible = False
    report.notes += global_reasons

    port_pods = _port_pods(ovs)
    pods: dict[str, PodOffload] = {
        name: PodOffload(pod, name, lsp) for name, (pod, lsp) in sorted(port_pods.items())
    }
    hw_tc_off = {
        name for name, on in snap.hw_tc_offload.items() if on is False and name in port_pods
    }
    if hw_tc_off and report.offload_possible:
        report.notes.append(
            "hw-tc-offload is off on "
            + ", ".join(sorted(hw_tc_off))
            + " (fix: ethtool -K <representor> hw-tc-offload on)"
        )

    for flow in snap.flows:
        outputs = tuple(flow.outputs())
        ends = [p for p in (flow.in_port, *outputs) if p]
        touched = sorted({port_pods[p][0] for p in ends if p in port_pods})
        layer = flow.layer
        reasons: list[str] = []
        if layer is not Layer.HARDWARE:
            reasons = global_reasons + flow_reasons(flow)
            rep_off = sorted(p for p in ends if p in hw_tc_off)
            if rep_off and not ovs.userspace_datapath:
                reasons.append(f"hw-tc-offload is off on {', '.join(rep_off)}")
            if not reasons:
                reasons.append(
                    "no specific cause found in the flow: look for offload errors "
                    "(netdev_offload_tc) in ovs-vswitchd.log"
                )
        verdict = FlowVerdict(
            ufid=flow.ufid,
            in_port=flow.in_port,
            outputs=outputs,
            pods=tuple(touched),
            layer=layer.value,
            packets=flow.packets,
            bytes=flow.bytes,
            used=flow.used,
            actions=",".join(flow.actions),
            reasons=tuple(reasons),
        )
        report.flows.append(verdict)
        for name in {p for p in ends if p in pods}:
            _count(pods[name], flow, layer, reasons)

    report.pods = sorted(pods.values(), key=lambda p: p.pod)
    for name in sorted(set(snap.tc) | set(snap.ethtool) | set(snap.hw_tc_offload)):
        filters = snap.tc.get(name)
        stats = snap.ethtool.get(name)
        report.representors.append(
            RepresentorSignals(
                name=name,
                pod=port_pods.get(name, (None, None))[0],
                tc_in_hw=filters.in_hw if filters and not filters.error else None,
                tc_not_in_hw=filters.not_in_hw if filters and not filters.error else None,
                tc_hw_packets=filters.hardware.packets if filters and not filters.error else None,
                tc_sw_packets=filters.software.packets if filters and not filters.error else None,
                tc_note=filters.error if filters else None,
                vport=vport_counters(stats) if stats is not None else None,
                hw_tc_offload=snap.hw_tc_offload.get(name),
            )
        )
    return report


def _count(pod: PodOffload, flow: DpFlow, layer: Layer, reasons: list[str]) -> None:
    pod.flows += 1
    if layer is Layer.HARDWARE:
        pod.flows_hardware += 1
        pod.packets_hardware += flow.packets
        pod.bytes_hardware += flow.bytes
        return
    if layer is Layer.TC_SOFTWARE:
        pod.flows_tc_software += 1
    else:
        pod.flows_ovs += 1
    pod.packets_software += flow.packets
    pod.bytes_software += flow.bytes
    tally = Tally(pod.reasons)
    tally.update(_short(r) for r in reasons)
    pod.reasons = dict(tally)


def _short(reason: str) -> str:
    """The head of a reason, for per-pod counts."""
    return reason.split(":", 1)[0]


def representor_names(ovs: OvsView) -> list[str]:
    """System interfaces of the bridges: representors, uplink, host PF representor."""
    return sorted(
        i.name for i in ovs.interfaces.values() if i.type in ("", "system") and i.name != i.bridge
    )


def collect(target: DpuTarget, timeout: float = 10.0) -> OffloadSnapshot:
    """Read every signal of a DPU target."""
    from dpunet.linux import ethtool
    from dpunet.verify import ethtool_stats, tc, unixctl
    from dpunet.verify.ovsview import read_ovs

    ovs = read_ovs(target.ovs_db)
    ctl = unixctl.vswitchd_socket(target.ovs_rundir)
    text = unixctl.call(ctl, "dpctl/dump-flows", "-m", timeout=timeout)
    flows = dpctl.parse_dump(text)
    if any(f.in_port and f.in_port.isdigit() for f in flows):
        names = dpctl.parse_dp_ports(unixctl.call(ctl, "dpctl/show", timeout=timeout))
        flows = [dpctl.rename_ports(f, names) for f in flows]
    devices = representor_names(ovs)
    tc_state: dict[str, DeviceFilters] = {}
    stats: dict[str, Mapping[str, int]] = {}
    features: dict[str, bool | None] = {}
    for dev in devices:
        tc_state[dev] = tc.dump_filters(target.netns, dev)
        try:
            stats[dev] = ethtool.read_stats(target.netns, dev)
            features[dev] = ethtool_stats.read_hw_tc_offload(target.netns, dev)
        except ethtool.EthtoolError:
            continue
    return OffloadSnapshot(target.name, ovs, flows, tc_state, stats, features)
