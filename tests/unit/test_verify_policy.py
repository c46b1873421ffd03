"""`dpunet verify policy`'s pure parts: the port argument, reading ovn-trace's text (the
format of ovn-trace 23.03 --detailed), which stages are ACL stages."""

from __future__ import annotations

import pytest

from dpunet.verify.policy import PortEnd, is_acl_stage, microflow, parse_port, parse_trace

TRACE = """\
ingress(dp="cp", inport="a_db")
-------------------------------
 0. ls_in_check_port_sec (northd.c:8432): 1, priority 50, uuid 9c5ce1be
    reg0[15] = check_in_port_sec();
    next;
 9. ls_in_acl_after_lb (northd.c:6470): reg0[7] == 1 && (inport == @a522 && ip4.dst == $a28), priority 2001, uuid 1f2e3d4c
    reg0[1] = 1;
    next;

egress(dp="host1", inport="stor-host1", outport="a_web")
--------------------------------------------------------
 0. ls_out_pre_acl (northd.c:5924): ip, priority 100, uuid 9109b756
    reg0[0] = 1;
 3. ls_out_acl_hint (northd.c:6228): !ct.new && ct.est, priority 4, uuid e2e8b325
    reg0[8] = 1;
 4. ls_out_acl (northd.c:6571): reg0[10] == 1 && (outport == @a167), priority 2000, uuid 17a3749a
    drop;
 9. ls_out_apply_port_sec (northd.c:5777): 1, priority 0, uuid 0598d58c
    output;
    /* output to "a_web", type "" */
"""  # noqa: E501


def test_a_trace_reads_as_flows_and_outputs() -> None:
    flows, outputs = parse_trace(TRACE)
    assert flows[1] == ("cp", "ls_in_acl_after_lb", 2001, "1f2e3d4c", "reg0[1] = 1;")
    assert flows[4] == ("host1", "ls_out_acl", 2000, "17a3749a", "drop;")
    assert len(flows) == 6 and outputs == [("a_web", "")]
    assert [f[1] for f in flows if is_acl_stage(f[1])] == ["ls_in_acl_after_lb", "ls_out_acl"]


@pytest.mark.parametrize(
    "stage,acl",
    [("ls_in_acl", True), ("ls_out_acl_eval", True), ("ls_in_acl_after_lb_action", True),
     ("ls_in_acl_hint", False), ("ls_out_pre_acl", False), ("lr_in_admission", False)],
)  # fmt: skip
def test_acl_stages(stage: str, acl: bool) -> None:
    assert is_acl_stage(stage) is acl


def test_ports_parse_or_are_refused_with_a_reason() -> None:
    assert parse_port("8080") == ("tcp", 8080)
    assert parse_port("53/UDP") == ("udp", 53)
    assert parse_port("80/sctp") == ("sctp", 80)
    for bad, reason in (("0", "1-65535"), ("70000/tcp", "1-65535"), ("80/icmp", "not one of"),
                        ("http", "NUMBER"), ("", "NUMBER")):  # fmt: skip
        with pytest.raises(ValueError, match=reason):
            parse_port(bad)


def test_the_microflow_is_the_first_packet_of_a_connection() -> None:
    src = PortEnd("a_db", "cp", "0a:58:c6:12:00:03", "198.18.0.3")
    flow = microflow(src, "0a:58:c6:12:00:01", "198.18.1.3", "udp", 53)
    assert flow == (
        'inport == "a_db" && eth.src == 0a:58:c6:12:00:03 && eth.dst == 0a:58:c6:12:00:01 && '
        "ip4.src == 198.18.0.3 && ip4.dst == 198.18.1.3 && ip.ttl == 64 && "
        "udp && udp.src == 40000 && udp.dst == 53"
    )
