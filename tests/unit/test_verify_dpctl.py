"""`dpctl/dump-flows` parsing: verbose and short lines, userspace and tc (offloaded) flows."""

# ruff: noqa: E501  (datapath flows are single lines, kept verbatim)

from __future__ import annotations

import pytest

from dpunet.verify import dpctl
from dpunet.verify.dpctl import CT_FLAGS, Layer, ParseError

# Recorded on this machine kind: OVS 3.1 userspace datapath, `dpctl/dump-flows -m`.
USERSPACE_VERBOSE = """\
flow-dump from the main thread:
ufid:2e991d36-f5b3-438b-89fa-016bdba86a0f, skb_priority(0/0),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(pf0vf2),packet_type(ns=0,id=0),eth(src=0a:58:c6:12:01:04,dst=33:33:00:00:00:16/00:00:00:00:00:00),eth_type(0x86dd),ipv6(src=::/::,dst=ff02::16/::,label=0/0,proto=58/0,tclass=0/0,hlimit=1/0,frag=no),icmpv6(type=143/0,code=0/0), packets:7, bytes:566, used:9.290s, dp:ovs, actions:drop, dp-extra-info:miniflow_bits(5,1)
ufid:93aeead5-d6e1-45c0-baa5-5e62717ab0f3, skb_priority(0/0),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(p0),packet_type(ns=0,id=0),eth(src=4a:7b:e5:db:d5:46,dst=10:f0:1e:a1:ad:26),eth_type(0x0800),ipv4(src=192.0.2.10/0.0.0.0,dst=192.0.2.201,proto=6,tos=0/0,ttl=64/0,frag=no),tcp(src=6642/0,dst=34900/0),tcp_flags(0/0), packets:181, bytes:167216, used:2.816s, flags:SFP., dp:ovs, actions:brp0, dp-extra-info:miniflow_bits(5,2)
ufid:16a4bf06-3199-42b9-8b1c-896caa932a47, skb_priority(0/0),skb_mark(0/0),ct_state(0/0x29),ct_zone(0/0),ct_mark(0/0x2),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(pf0vf1),packet_type(ns=0,id=0),eth(src=0a:58:c6:12:01:03,dst=0a:58:c6:12:01:01),eth_type(0x0800),ipv4(src=198.18.1.3,dst=192.0.2.1,proto=1,tos=0/0,ttl=64,frag=no),icmp(type=8/0,code=0/0), packets:2, bytes:196, used:2.418s, dp:ovs, actions:set(eth(src=0a:58:c0:00:02:97,dst=ee:13:b9:7d:1f:05)),set(ipv4(ttl=62)),ct(zone=1,nat),recirc(0xd), dp-extra-info:miniflow_bits(5,2)
ufid:42574622-081a-47eb-b317-2ce2d95466f6, skb_priority(0/0),skb_mark(0/0),ct_state(0xaa/0x29),ct_zone(0x1/0),ct_mark(0/0x2),ct_label(0/0),ct_tuple4(src=198.18.1.3/0.0.0.0,dst=192.0.2.1/0.0.0.0,proto=1/0,tp_src=8/0,tp_dst=0/0),recirc_id(0xc),dp_hash(0/0),in_port(p0),packet_type(ns=0,id=0),eth(src=0a:58:c6:13:ff:03,dst=0a:58:c6:13:ff:01),eth_type(0x0800),ipv4(src=192.0.2.1/255.255.255.128,dst=198.18.1.3,proto=1,tos=0/0,ttl=63,frag=no),icmp(type=0/0,code=0/0), packets:2, bytes:196, used:2.418s, dp:ovs, actions:ct_clear,set(eth(src=0a:58:c6:12:01:01,dst=0a:58:c6:12:01:03)),set(ipv4(ttl=62)),pf0vf1, dp-extra-info:miniflow_bits(5,2)
ufid:c2e3f9b8-4d5f-45d6-a839-71fd902f256e, skb_priority(0/0),skb_mark(0/0),ct_state(0/0x29),ct_zone(0/0),ct_mark(0/0x2),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(p0),packet_type(ns=0,id=0),eth(src=ee:13:b9:7d:1f:05,dst=0a:58:c0:00:02:97),eth_type(0x0806),arp(sip=192.0.2.1,tip=192.0.2.151,op=1,sha=ee:13:b9:7d:1f:05,tha=00:00:00:00:00:00), packets:0, bytes:0, used:never, dp:ovs, actions:userspace(pid=0,slow_path(action)), dp-extra-info:miniflow_bits(5,4)
"""

# The same datapath without -m: ports by number, ct_state by flag names.
USERSPACE_SHORT = """\
flow-dump from the main thread:
ct_state(-new-rpl-trk),ct_mark(0/0x2),recirc_id(0),in_port(2),packet_type(ns=0,id=0),eth(src=ee:13:b9:7d:1f:05,dst=0a:58:c0:00:02:97),eth_type(0x0806),arp(sip=192.0.2.1,tip=192.0.2.151,op=1,sha=ee:13:b9:7d:1f:05,tha=00:00:00:00:00:00), packets:0, bytes:0, used:never, actions:userspace(pid=0,slow_path(action))
recirc_id(0),in_port(2),packet_type(ns=0,id=0),eth(src=4a:7b:e5:db:d5:46,dst=10:f0:1e:a1:ad:26),eth_type(0x0800),ipv4(dst=192.0.2.201,proto=6,frag=no), packets:184, bytes:167493, used:0.327s, flags:SFP., actions:1
"""

DPCTL_SHOW = """\
netdev@ovs-netdev:
  lookups: hit:764 missed:36 lost:2
  flows: 4
  port 0: ovs-netdev (tap)
  port 1: brp0 (tap)
  port 2: p0
  port 3: pf0hpf
  port 4: br-int (tap)
  port 5: genev_sys_6081 (geneve: packet_type=ptap)
  port 7: pf0vf1
"""

# Kernel datapath with tc offload (format of OVS's format_dpif_flow with -m: offloaded:yes
# and dp:tc before the actions; a dp:tc flow without offloaded:yes is in tc software).
TC_VERBOSE = """\
ufid:d8a3e5b4-1c2d-4e5f-8a9b-0c1d2e3f4a5b, skb_priority(0/0),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(pf0vf1),packet_type(ns=0/0,id=0/0),eth(src=0a:58:0a:f4:00:05,dst=0a:58:0a:f4:00:06),eth_type(0x0800),ipv4(src=10.244.0.5,dst=10.244.0.6,proto=1,tos=0/0x3,ttl=64/0,frag=no), packets:1000, bytes:98000, used:0.330s, offloaded:yes, dp:tc, actions:pf0vf2
ufid:5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9, skb_priority(0/0),tunnel(tun_id=0x1,src=192.168.1.2,dst=192.168.1.1,ttl=0/0,tp_dst=6081,geneve({class=0x102,type=0x80,len=4,0x20001/0x7fffffff}),flags(+key)),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(genev_sys_6081),packet_type(ns=0/0,id=0/0),eth(src=0a:58:0a:f4:01:05,dst=0a:58:0a:f4:00:05),eth_type(0x0800),ipv4(src=0.0.0.0/0.0.0.0,dst=0.0.0.0/0.0.0.0,proto=0/0,tos=0/0,ttl=0/0,frag=no), packets:500, bytes:49000, used:1.200s, offloaded:yes, dp:tc, actions:pf0vf1
ufid:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d, skb_priority(0/0),skb_mark(0/0),ct_state(0/0),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),recirc_id(0),dp_hash(0/0),in_port(pf0vf1),packet_type(ns=0/0,id=0/0),eth(src=0a:58:0a:f4:00:05,dst=0a:58:0a:f4:01:05),eth_type(0x0800),ipv4(src=10.244.0.5,dst=10.244.1.5/0.0.0.0,proto=6,tos=0/0x3,ttl=64/0,frag=no), packets:20, bytes:1800, used:0.100s, dp:tc, actions:set(tunnel(tun_id=0x1,dst=192.168.1.2,ttl=64,tp_dst=6081,geneve({class=0x102,type=0x80,len=4,0x10002}),flags(df|csum|key))),genev_sys_6081
ufid:1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e, recirc_id(0),dp_hash(0/0),skb_priority(0/0),in_port(pf0vf1),skb_mark(0/0),ct_state(0x21/0x21),ct_zone(0/0),ct_mark(0/0),ct_label(0/0),eth(src=0a:58:0a:f4:00:05,dst=0a:58:0a:f4:00:01),eth_type(0x0800),ipv4(src=10.244.0.5,dst=8.8.8.8,proto=6,tos=0/0,ttl=64/0,frag=no),tcp(src=40000/0,dst=443/0), packets:3, bytes:222, used:0.050s, flags:S, dp:ovs, actions:ct(commit,zone=5),check_pkt_len(size=1414,gt(userspace(pid=3,controller(reason=1))),le(p0))
"""


def test_verbose_userspace_lines() -> None:
    flows = dpctl.parse_dump(USERSPACE_VERBOSE)
    assert len(flows) == 5
    first = flows[0]
    assert first.ufid == "2e991d36-f5b3-438b-89fa-016bdba86a0f"
    assert first.in_port == "pf0vf2"
    assert (first.packets, first.bytes, first.used) == (7, 566, 9.29)
    assert first.dp == "ovs" and first.offloaded is None
    assert first.layer is Layer.OVS
    assert first.actions == ("drop",)
    assert first.outputs() == []
    assert first.extra == {"dp-extra-info": "miniflow_bits(5,1)"}
    assert flows[1].tcp_flags == "SFP." and flows[1].outputs() == ["brp0"]
    assert (
        flows[1].match["ipv4"]
        == "src=192.0.2.10/0.0.0.0,dst=192.0.2.201,proto=6,tos=0/0,ttl=64/0,frag=no"
    )


def test_actions_with_nested_commas() -> None:
    flows = dpctl.parse_dump(USERSPACE_VERBOSE)
    sets = flows[2]
    assert sets.actions == (
        "set(eth(src=0a:58:c0:00:02:97,dst=ee:13:b9:7d:1f:05))",
        "set(ipv4(ttl=62))",
        "ct(zone=1,nat)",
        "recirc(0xd)",
    )
    assert sets.outputs() == []
    assert sets.action_names() == ["set", "set", "ct", "recirc"]
    assert flows[3].outputs() == ["pf0vf1"]
    assert flows[4].used is None
    assert flows[4].action_names() == ["userspace"]


def test_ct_state_hex_and_flags() -> None:
    flows = dpctl.parse_dump(USERSPACE_VERBOSE)
    assert flows[0].ct_state() is None  # 0/0: wildcarded
    assert flows[2].ct_state() == (0, 0x29)
    assert dpctl.parse_ct_state("-new-rpl-trk") == (0, CT_FLAGS["new"] | 0x08 | 0x20)
    assert dpctl.parse_ct_state("+trk+new") == (0x21, 0x21)
    assert dpctl.parse_ct_state("0x21") == (0x21, 0xFF)
    with pytest.raises(ParseError):
        dpctl.parse_ct_state("+bogus")


def test_short_lines_renamed_by_dpctl_show() -> None:
    names = dpctl.parse_dp_ports(DPCTL_SHOW)
    assert names["2"] == "p0" and names["5"] == "genev_sys_6081" and "6" not in names
    flows = dpctl.parse_dump(USERSPACE_SHORT)
    assert [f.in_port for f in flows] == ["2", "2"]
    assert flows[0].dp is None and flows[0].layer is Layer.OVS
    assert flows[0].ct_state() == (0, 0x29)
    renamed = [dpctl.rename_ports(f, names) for f in flows]
    assert renamed[0].in_port == "p0"
    assert renamed[1].outputs() == ["brp0"]
    assert renamed[0].actions == ("userspace(pid=0,slow_path(action))",)


def test_tc_offloaded_and_software_flows() -> None:
    flows = dpctl.parse_dump(TC_VERBOSE)
    hw, tunnel_in, tc_sw, ovs = flows
    assert hw.layer is Layer.HARDWARE and hw.offloaded == "yes" and hw.dp == "tc"
    assert hw.outputs() == ["pf0vf2"]
    assert tunnel_in.in_port == "genev_sys_6081" and tunnel_in.match["tunnel"].startswith(
        "tun_id=0x1"
    )
    assert tc_sw.layer is Layer.TC_SOFTWARE
    assert tc_sw.outputs() == ["genev_sys_6081"]
    assert ovs.layer is Layer.OVS
    assert ovs.outputs() == ["p0"]
    assert "check_pkt_len" in ovs.action_names() and "userspace" in ovs.action_names()
    assert ovs.ct_state() == (0x21, 0x21)


def test_partial_offload_and_tunnel_push() -> None:
    line = (
        "ufid:aa, recirc_id(0),in_port(pf0vf1),eth_type(0x0800), packets:4, bytes:400, "
        "used:0.001s, offloaded:partial, dp:ovs, actions:clone(tnl_push(tnl_port(genev_sys_6081),"
        "header(size=50,type=5,eth(dst=aa:bb:cc:dd:ee:ff,src=11:22:33:44:55:66,dl_type=0x0800),"
        "ipv4(src=192.0.2.201,dst=192.0.2.10,proto=17,tos=0,ttl=64,frag=0x4000),"
        "udp(src=0,csum=0xffff,dst=6081),geneve(crit,vni=0x1)),out_port(brp0)),p0)"
    )
    flow = dpctl.parse_flow(line)
    assert flow.layer is Layer.PARTIAL
    assert flow.outputs() == ["brp0", "p0"]
    renamed = dpctl.rename_ports(
        dpctl.parse_flow(line.replace("out_port(brp0)", "out_port(1)")), {"1": "brp0"}
    )
    assert renamed.outputs() == ["brp0", "p0"]


@pytest.mark.parametrize(
    "line",
    [
        "garbage",
        "in_port(1), packets:1, bytes:1, used:never",  # no actions
        "in_port(1), packets:x, bytes:1, used:never, actions:drop",
        "in_port(1), packets:1, bytes:1, used:never, nonsense, actions:drop",
    ],
)
def test_malformed_lines(line: str) -> None:
    with pytest.raises(ParseError):
        dpctl.parse_flow(line)


def test_split_top_respects_brackets() -> None:
    assert dpctl.split_top("a(b,c),d{e,f},g[h,i]") == ["a(b,c)", "d{e,f}", "g[h,i]"]
    assert dpctl.split_top("a, b(c, d), e", ", ") == ["a", "b(c, d)", "e"]
    assert dpctl.split_call("ct(zone=1)") == ("ct", "zone=1")
    assert dpctl.split_call("drop") == ("drop", None)
