"""The OpenFlow 1.3 encoder/decoder against byte layouts written out from the OpenFlow
1.3.5 specification and Open vSwitch's Nicira extension definitions, and the shared
gateway's pipeline and diff."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from dpunet.openflow import gateway as gw
from dpunet.openflow import protocol as ofp
from dpunet.openflow.gateway import BridgePort, GatewayPorts, GatewaySpec
from dpunet.openflow.protocol import Conntrack, Flow, Match, Output, SetField


def test_header_and_hello() -> None:
    # ofp_header: version 4, OFPT_HELLO 0, length 16, xid; one VERSIONBITMAP element
    assert ofp.hello(7) == bytes.fromhex("04 00 0010 000000070001 0008 00000010")


def test_match_oxm_tlvs() -> None:
    match = Match.of(in_port=2, eth_type=0x0800, ipv4_dst=IPv4Address("192.0.2.101"))
    # type OXM 1, length 4 + 8 + 6 + 8 = 26, padded to 32
    expected = (
        "0001 001a"
        "8000 00 04 00000002"  # OFPXMC_OPENFLOW_BASIC, IN_PORT(0)<<1, len 4
        "8000 0a 02 0800"  # ETH_TYPE(5)<<1
        "8000 18 04 c0000265"  # IPV4_DST(12)<<1
        "000000000000"
    )
    assert match.encode() == bytes.fromhex(expected)


def test_masked_and_nicira_fields() -> None:
    match = Match.of(ct_state=(0x22, 0x22), ct_mark=1, tcp_dst=(30000, 0xFFF0))
    expected = (
        "0001 0020"  # 4 + 12 + 8 + 8: a multiple of 8, no padding
        "0001 d3 08 00000022 00000022"  # NXM_1, CT_STATE(105)<<1|1, len 8
        "0001 d6 04 00000001"  # CT_MARK(107)<<1
        "8000 1d 04 7530 fff0"  # TCP_DST(14)<<1|1
    )
    assert match.encode() == bytes.fromhex(expected)


def test_match_roundtrip_ignores_order() -> None:
    match = Match.of(eth_type=0x0806, arp_op=1, arp_tpa="192.0.2.101")
    decoded, end = ofp.decode_match(match.encode() + b"rest", 0)
    assert end == len(match.encode())
    assert decoded.as_dict() == match.as_dict()
    reordered = Match(tuple(reversed(match.fields)))
    assert reordered.as_dict() == match.as_dict() and reordered.encode() != match.encode()


def test_actions() -> None:
    assert Output(ofp.OFPP_NORMAL).encode() == bytes.fromhex("0000 0010 fffffffa ffff 000000000000")
    # set_field ct_mark=1: type 25, len 16, OXM NXM_1 CT_MARK, value, 4 pad bytes
    assert SetField("ct_mark", 1).encode() == bytes.fromhex("0019 0010 0001d604 00000001 00000000")
    ct = Conntrack(64000, commit=True, actions=(SetField("ct_mark", 2),)).encode()
    # nx_action_conntrack: EXPERIMENTER, len 40, NX_VENDOR_ID, NXAST_CT 35, flags COMMIT,
    # zone_src 0, zone 64000, recirc_table NONE (0xff), pad, alg 0, nested actions
    assert ct == bytes.fromhex(
        "ffff 0028 00002320 0023 0001 00000000 fa00 ff 000000 0000"
        "0019 0010 0001d604 00000002 00000000"
    )
    recirc = Conntrack(64000, table=1).encode()
    assert recirc == bytes.fromhex("ffff 0018 00002320 0023 0000 00000000 fa00 01 000000 0000")


def test_flow_mod_layout() -> None:
    flow = Flow(1, 250, Match(), (ofp.GotoTable(2),), cookie=0x64706E7400000001)
    msg = ofp.flow_mod(9, ofp.OFPFC_ADD, flow)
    version, msg_type, length, xid = struct.unpack_from("!BBHI", msg)
    assert (version, msg_type, length, xid) == (4, 14, len(msg), 9)
    cookie, mask, table, command, idle, hard, prio, buf, out_port, out_group, flags = (
        struct.unpack_from("!QQBBHHHIIIH", msg, 8)
    )
    assert (cookie, mask, table, command, prio) == (0x64706E7400000001, 0, 1, 0, 250)
    assert (idle, hard, buf, out_port, out_group, flags) == (
        0,
        0,
        2**32 - 1,
        2**32 - 1,
        2**32 - 1,
        0,
    )
    assert msg[48:56] == bytes.fromhex("0001 0004 00000000")  # empty match
    assert msg[56:] == bytes.fromhex("0001 0008 02 000000")  # goto_table 2
    delete = ofp.flow_mod(3, ofp.OFPFC_DELETE, flow, cookie_mask=2**64 - 1, table=ofp.OFPTT_ALL)
    assert len(delete) == 56 and delete[24] == 0xFF and delete[25] == ofp.OFPFC_DELETE


def test_flow_stats_request_and_reply() -> None:
    req = ofp.flow_stats_request(5, gw.COOKIE, gw.COOKIE_MASK)
    assert req[:8] == bytes.fromhex("04 12 0038 00000005")
    assert req[8:16] == bytes.fromhex("0001 0000 00000000")  # OFPMP_FLOW, no flags
    assert req[16] == 0xFF and req[32:48] == struct.pack("!QQ", gw.COOKIE, gw.COOKIE_MASK)
    match = Match.of(eth_type=0x0800)
    inst = ofp.ApplyActions((Output(3),)).encode()
    body = match.encode() + inst
    entry = struct.pack(
        "!HBxIIHHHH4xQQQ", 48 + len(body), 1, 12, 500_000_000, 200, 0, 0, 0, 77, 5, 300
    )
    reply = ofp.message(ofp.OFPT_MULTIPART_REPLY, 5, struct.pack("!HH4x", 1, 1) + entry + body)
    flows, more = ofp.parse_flow_stats(reply)
    assert more
    [flow] = flows
    assert (flow.table, flow.priority, flow.cookie, flow.duration, flow.packets) == (
        1,
        200,
        77,
        12.5,
        5,
    )
    assert flow.match.as_dict() == match.as_dict() and flow.raw_instructions == inst
    with pytest.raises(ofp.ProtocolError):  # an entry longer than the message
        ofp.parse_flow_stats(reply[:-3])


def test_split_messages_keeps_partial() -> None:
    buffer = bytearray(ofp.hello(1) + ofp.hello(2)[:5])
    assert [m[4:8] for m in ofp.split_messages(buffer)] == [b"\0\0\0\1"]
    assert len(buffer) == 5


@pytest.mark.parametrize(("low", "high"), [(30000, 32767), (0, 65535), (80, 80), (1, 6)])
def test_port_ranges_cover_exactly(low: int, high: int) -> None:
    covered = {
        port
        for value, mask in ofp.port_ranges(low, high)
        for port in range(65536)
        if port & mask == value
    }
    assert covered == set(range(low, high + 1))


def test_bad_values_rejected() -> None:
    with pytest.raises(ValueError):
        Match.of(ip_proto=300)
    with pytest.raises(ValueError):
        Match.of(nonsense=1)
    with pytest.raises(ValueError):
        list(ofp.port_ranges(10, 5))


# ------------------------------------------------------------------ gateway
PORTS = GatewayPorts(uplink=1, host=2, gateway=3)
SPEC = GatewaySpec(IPv4Address("192.0.2.101"), PORTS)


def _outputs(flow: Flow) -> list[int]:
    return [
        a.port
        for i in flow.instructions
        for a in getattr(i, "actions", ())
        if isinstance(a, Output)
    ]


def test_pipeline_cookies_unique_and_owned() -> None:
    flows = gw.pipeline(SPEC)
    assert len({f.cookie for f in flows}) == len(flows)
    assert all(f.cookie & gw.COOKIE_MASK == gw.COOKIE for f in flows)
    assert gw.pipeline(SPEC) == flows  # stable: a restarted agent wants the same cookies


def test_arp_for_node_ip_goes_to_the_host_only() -> None:
    flows = gw.pipeline(SPEC)
    [req] = [f for f in flows if f.match.as_dict().get("arp_op") == (b"\0\1", None)]
    assert _outputs(req) == [2]
    [rep] = [f for f in flows if f.match.as_dict().get("arp_op") == (b"\0\2", None)]
    assert sorted(_outputs(rep)) == [2, 3]
    from_gr = [f for f in flows if f.match.as_dict().get("in_port") == (b"\0\0\0\3", None)]
    arp_from_gr = [f for f in from_gr if f.match.as_dict()["eth_type"] == (b"\x08\x06", None)]
    assert _outputs(arp_from_gr[0]) == [1, ofp.OFPP_LOCAL]  # never to the host


def test_full_node_host_is_local() -> None:
    ports = GatewayPorts(uplink=1, host=ofp.OFPP_LOCAL, gateway=3)
    assert ports.others == (1,)
    flows = gw.pipeline(GatewaySpec(IPv4Address("192.0.2.10"), ports))
    default = [f for f in flows if f.table == gw.TABLE_NODE_IP and f.priority == 0]
    assert _outputs(default[0]) == [ofp.OFPP_LOCAL]


def test_without_patch_port_everything_goes_to_the_host() -> None:
    flows = gw.pipeline(GatewaySpec(SPEC.node_ip, GatewayPorts(1, 2, None)))
    assert all(3 not in _outputs(f) for f in flows)


def test_diff() -> None:
    wanted = gw.pipeline(SPEC)
    assert gw.diff(wanted, wanted) == ([], [])
    delete, add = gw.diff(wanted, wanted[1:])
    assert delete == [] and add == [wanted[0]]
    stale = Flow(0, 1, Match(), cookie=gw.COOKIE | 1)
    assert gw.diff(wanted, [*wanted, stale]) == ([stale.cookie], [])
    # same cookie, other match (a hand-made flow): replaced
    odd = Flow(wanted[0].table, wanted[0].priority, Match.of(in_port=9), cookie=wanted[0].cookie)
    assert gw.diff(wanted, [odd, *wanted[1:]]) == ([wanted[0].cookie], [wanted[0]])
    # a node IP change replaces every flow that names it
    moved = gw.pipeline(GatewaySpec(IPv4Address("192.0.2.102"), PORTS))
    delete, add = gw.diff(moved, wanted)
    assert delete and len(add) == len(delete)


def test_find_ports() -> None:
    ports = [
        BridgePort("brp0", "internal", 65534),
        BridgePort("p0", "", 1),
        BridgePort("pf0hpf", "", 2),
        BridgePort("patch-ext_host1_physnet-to-br-int", "patch", 3),
    ]
    assert gw.find_ports("brp0", ports, "pf0hpf", "p0") == PORTS
    assert gw.find_ports("brp0", ports, "pf0hpf", None) == PORTS
    assert gw.find_ports("brp0", ports[:3], "pf0hpf", "p0") == GatewayPorts(1, 2, None)
    assert "no OpenFlow port" in str(gw.find_ports("brp0", ports, "pf9hpf", "p0"))
    full = [BridgePort("breth0", "internal", 65534), BridgePort("eth1", "", 4)]
    assert gw.find_ports("breth0", full, None, None) == GatewayPorts(4, ofp.OFPP_LOCAL, None)
    assert "cannot tell the uplink" in str(
        gw.find_ports("breth0", [*full, BridgePort("x", "", 5)], None, None)
    )


def test_physnet_bridge_and_gateway_mac() -> None:
    assert gw.physnet_bridge({"ovn-bridge-mappings": "other:brx, physnet:brp0"}) == "brp0"
    assert gw.physnet_bridge({}) is None
    assert gw.parse_gateway_mac(["0A:58:c0:00:02:65 192.0.2.101/24"]) == (
        "0a:58:c0:00:02:65",
        IPv4Address("192.0.2.101"),
    )
    assert gw.parse_gateway_mac(["router"]) is None


def test_ct_clear_layout() -> None:
    # nx_action_header: EXPERIMENTER, len 16, NX_VENDOR_ID, NXAST_CT_CLEAR 43, 6 pad bytes
    assert ofp.CtClear().encode() == bytes.fromhex("ffff 0010 00002320 002b 000000000000")


@pytest.mark.parametrize("bad", ["30000", "32767-30000", "0-10", "1-70000", "a-b", "１-２"])
def test_settings_reject_bad_ranges(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        gw.GatewaySettings(node_port_range=bad)
    assert gw.GatewaySettings(node_port_range="30000-30100").node_ports == (30000, 30100)


def test_nodeports_skip_conntrack_and_egress_never_normal() -> None:
    ports = GatewayPorts(uplink=1, host=2, gateway=3, local_mac="02:00:00:00:00:c9")
    flows = gw.pipeline(GatewaySpec(IPv4Address("192.0.2.101"), ports))
    node_port = [f for f in flows if "tcp_dst" in f.match.as_dict()]
    assert node_port and all(f.table == 0 and f.priority == 250 for f in node_port)
    assert all(_outputs(f) == [3] for f in node_port)
    assert all(ofp.OFPP_NORMAL not in _outputs(f) for f in flows)
    to_local = [f for f in flows if "eth_dst" in f.match.as_dict()]
    assert len(to_local) == 2 and all(_outputs(f) == [ofp.OFPP_LOCAL] for f in to_local)
