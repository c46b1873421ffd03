"""Per-pod offload verdicts and the likely reason of each software flow."""

# ruff: noqa: E501  (datapath flows are single lines, kept verbatim)

from __future__ import annotations

from dpunet.verify import dpctl
from dpunet.verify.ethtool_stats import vport_counters
from dpunet.verify.offload import (
    NOT_RESTARTED,
    OFFLOAD_DISABLED,
    USERSPACE_DATAPATH,
    OffloadSnapshot,
    analyse,
    flow_reasons,
    representor_names,
)
from dpunet.verify.ovsview import BridgeView, IfaceView, OvsView, pod_of_lsp
from dpunet.verify.tc import TCA_CLS_FLAGS_IN_HW, Counters, DeviceFilters, FlowerFilter, TcAction


def ovs(datapath: str = "system", hw_offload: str = "true") -> OvsView:
    """A DPU with pods default/a (pf0vf1) and default/b (pf0vf2) and the mgmt port."""
    ifaces = {
        "pf0vf1": IfaceView("pf0vf1", "br-int", "pf0vf1", "", {"iface-id": "default_a"}),
        "pf0vf2": IfaceView("pf0vf2", "br-int", "pf0vf2", "", {"iface-id": "default_b"}),
        "ovn-k8s-mp0": IfaceView(
            "ovn-k8s-mp0", "br-int", "ovn-k8s-mp0", "", {"iface-id": "k8s-host1"}
        ),
        "br-int": IfaceView("br-int", "br-int", "br-int", "internal"),
        "ovn-cp-0": IfaceView(
            "ovn-cp-0", "br-int", "ovn-cp-0", "geneve", {}, {"remote_ip": "192.0.2.10"}
        ),
        "p0": IfaceView("p0", "brp0", "p0", ""),
        "pf0hpf": IfaceView("pf0hpf", "brp0", "pf0hpf", ""),
        "brp0": IfaceView("brp0", "brp0", "brp0", "internal"),
    }
    bridges = {
        "br-int": BridgeView(
            "br-int", datapath, "secure", ("br-int", "ovn-cp-0", "ovn-k8s-mp0", "pf0vf1", "pf0vf2")
        ),
        "brp0": BridgeView("brp0", datapath, None, ("brp0", "p0", "pf0hpf")),
    }
    return OvsView({"hw-offload": hw_offload}, {"system-id": "dpu1"}, bridges, ifaces)


def flow(line: str) -> dpctl.DpFlow:
    return dpctl.parse_flow(line)


HW = flow(
    "ufid:1, recirc_id(0),in_port(pf0vf1),eth_type(0x0800), packets:1000, bytes:98000, used:0.3s, offloaded:yes, dp:tc, actions:pf0vf2"
)
TC_SW = flow(
    "ufid:2, recirc_id(0),in_port(pf0vf2),eth_type(0x0800), packets:10, bytes:980, used:0.3s, dp:tc, actions:pf0vf1"
)
NEW_CT = flow(
    "ufid:3, recirc_id(0),in_port(pf0vf1),ct_state(0x21/0x21),eth_type(0x0800), packets:3, bytes:222, used:0.1s, dp:ovs, actions:ct(commit,zone=5),p0"
)
SLOW = flow(
    "ufid:4, recirc_id(0),in_port(p0),eth_type(0x0806),arp(op=1), packets:2, bytes:120, used:0.1s, dp:ovs, actions:userspace(pid=0,slow_path(action))"
)
GW_MTU = flow(
    "ufid:5, recirc_id(0),in_port(pf0vf2),eth_type(0x0800), packets:5, bytes:500, used:0.1s, dp:ovs, actions:check_pkt_len(size=1414,gt(userspace(pid=3,controller(reason=1))),le(p0))"
)
HASH = flow(
    "ufid:6, recirc_id(0),dp_hash(0x1/0xf),in_port(pf0vf1), packets:1, bytes:1, used:0.1s, dp:ovs, actions:hash(l4(0)),recirc(0x2)"
)
PLAIN = flow(
    "ufid:7, recirc_id(0),in_port(pf0vf1),eth_type(0x0800), packets:4, bytes:400, used:0.1s, dp:ovs, actions:pf0vf2"
)


def test_pod_names_from_lsps() -> None:
    assert pod_of_lsp("default_web-1") == "default/web-1"
    assert pod_of_lsp("k8s-host1") == "mgmt:host1"
    assert pod_of_lsp("selftest-cp") is None
    assert pod_of_lsp(None) is None


def test_flow_reasons() -> None:
    assert flow_reasons(HW) == []
    assert flow_reasons(PLAIN) == []
    assert any(r.startswith("in tc but not in hardware") for r in flow_reasons(TC_SW))
    assert any(r.startswith("conntrack state +new") for r in flow_reasons(NEW_CT))
    assert flow_reasons(SLOW)[0].startswith("slow_path(action)")
    gw = flow_reasons(GW_MTU)
    assert any(r.startswith("check_pkt_len") for r in gw)
    assert any(r.startswith("userspace action") for r in gw)
    hashed = flow_reasons(HASH)
    assert any("unsupported action(s) for tc offload: hash" in r for r in hashed)
    assert any("dp_hash" in r for r in hashed)


def test_offloaded_kernel_datapath_counts_per_pod() -> None:
    tc = {
        "pf0vf1": DeviceFilters(
            "pf0vf1",
            (
                FlowerFilter(
                    1,
                    2,
                    TCA_CLS_FLAGS_IN_HW,
                    1,
                    (TcAction("mirred", Counters(10, 980), Counters(9, 882)),),
                ),
            ),
        )
    }
    report = analyse(
        OffloadSnapshot("dpu1", ovs(), [HW, TC_SW, NEW_CT], tc, {"pf0vf1": {}}, {"pf0vf1": True})
    )
    assert report.offload_possible and report.notes == []
    pods = {p.pod: p for p in report.pods}
    a, b = pods["default/a"], pods["default/b"]
    assert (a.flows, a.flows_hardware, a.flows_ovs) == (3, 1, 1)
    assert a.flows_tc_software == 1
    assert a.packets_hardware == 1000 and a.bytes_hardware == 98000
    assert a.packets_software == 13
    assert (b.flows, b.flows_hardware, b.flows_tc_software) == (2, 1, 1)
    assert "conntrack state +new" in a.reasons
    assert pods["mgmt:host1"].flows == 0
    verdicts = {f.ufid: f for f in report.flows}
    assert verdicts["1"].reasons == () and verdicts["1"].pods == ("default/a", "default/b")
    rep = {r.name: r for r in report.representors}["pf0vf1"]
    assert (rep.tc_in_hw, rep.tc_not_in_hw, rep.tc_hw_packets, rep.tc_sw_packets) == (1, 0, 9, 1)


def test_userspace_datapath_says_nothing_can_be_offloaded() -> None:
    report = analyse(OffloadSnapshot("dpu1", ovs(datapath="netdev"), [PLAIN, SLOW]))
    assert not report.offload_possible
    assert report.notes == [USERSPACE_DATAPATH]
    plain = next(f for f in report.flows if f.ufid == "7")
    assert plain.reasons == (USERSPACE_DATAPATH,)
    assert plain.pods == ("default/a", "default/b")
    slow = next(f for f in report.flows if f.ufid == "4")
    assert slow.pods == () and slow.reasons[1].startswith("slow_path")


def test_offload_disabled() -> None:
    report = analyse(OffloadSnapshot("dpu1", ovs(hw_offload="false"), [PLAIN]))
    assert not report.offload_possible and report.notes == [OFFLOAD_DISABLED]


def test_enabled_but_vswitchd_not_restarted() -> None:
    report = analyse(OffloadSnapshot("dpu1", ovs(), [PLAIN], {"pf0vf1": DeviceFilters("pf0vf1")}))
    assert not report.offload_possible
    assert report.notes == [NOT_RESTARTED]
    assert next(f for f in report.flows if f.ufid == "7").reasons[0] == NOT_RESTARTED


def test_hw_tc_offload_off_on_a_representor() -> None:
    snap = OffloadSnapshot("dpu1", ovs(), [HW, PLAIN], {}, {}, {"pf0vf1": False, "pf0vf2": True})
    report = analyse(snap)
    assert any("hw-tc-offload is off on pf0vf1" in n for n in report.notes)
    plain = next(f for f in report.flows if f.ufid == "7")
    assert "hw-tc-offload is off on pf0vf1" in plain.reasons


def test_flow_without_any_visible_cause() -> None:
    report = analyse(OffloadSnapshot("dpu1", ovs(), [HW, PLAIN]))
    plain = next(f for f in report.flows if f.ufid == "7")
    assert plain.reasons[0].startswith("no specific cause")


def test_vport_signal_and_representor_list() -> None:
    stats = {
        "rx_packets": 1,
        "tx_packets": 1,
        "rx_bytes": 1,
        "tx_bytes": 1,
        "vport_rx_packets": 11,
        "vport_tx_packets": 11,
        "vport_rx_bytes": 1,
        "vport_tx_bytes": 1,
    }
    report = analyse(OffloadSnapshot("dpu1", ovs(), [HW], {}, {"pf0vf1": stats}))
    rep = report.representors[0]
    assert rep.vport == vport_counters(stats) and rep.vport is not None
    assert rep.vport.offloaded_packets == 20
    assert representor_names(ovs()) == ["ovn-k8s-mp0", "p0", "pf0hpf", "pf0vf1", "pf0vf2"]
