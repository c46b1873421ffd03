"""Decoding tc flower filters from netlink attributes (linux/pkt_cls.h, linux/gen_stats.h).

The fixtures are built attribute by attribute in the kernel's layout and carry the
numbers of the documented `tc -s filter show dev pf0vf1 ingress` example:

    filter protocol ip pref 2 flower chain 0 handle 0x1
      in_hw in_hw_count 1
        action order 1: mirred (Egress Redirect to device pf0vf2) stolen
        Sent 980 bytes 10 pkt (dropped 0, overlimits 0 requeues 0)
        Sent software 98 bytes 1 pkt
        Sent hardware 882 bytes 9 pkt
"""

from __future__ import annotations

import struct

import pytest

from dpunet.verify import tc

NLA_F_NESTED = 0x8000


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    header = struct.pack("=HH", 4 + len(payload), kind | (NLA_F_NESTED if nested else 0))
    return header + payload + b"\0" * (-len(payload) % 4)


def basic(byte_count: int, packets: int) -> bytes:
    """`struct gnet_stats_basic` as the kernel copies it (16 bytes with padding)."""
    return struct.pack("=QI4x", byte_count, packets)


def action(order: int, kind: str, total: tuple[int, int], hw: tuple[int, int] | None) -> bytes:
    stats = attr(tc.TCA_STATS_BASIC, basic(*total))
    if hw is not None:
        stats += attr(tc.TCA_STATS_BASIC_HW, basic(*hw))
    body = attr(tc.TCA_ACT_KIND, kind.encode() + b"\0") + attr(tc.TCA_ACT_STATS, stats, True)
    return attr(order, body, True)


def flower(flags: int, in_hw_count: int | None, actions: bytes) -> bytes:
    out = attr(tc.TCA_FLOWER_FLAGS, struct.pack("=I", flags))
    if in_hw_count is not None:
        out += attr(tc.TCA_FLOWER_IN_HW_COUNT, struct.pack("=I", in_hw_count))
    out += attr(4, bytes(6)) + attr(8, struct.pack("!H", 0x0800))  # eth dst, eth type
    return out + attr(tc.TCA_FLOWER_ACT, actions, True)


IN_HW = flower(
    tc.TCA_CLS_FLAGS_IN_HW,
    1,
    action(1, "mirred", (980, 10), (882, 9)),
)
NOT_IN_HW = flower(
    tc.TCA_CLS_FLAGS_NOT_IN_HW,
    0,
    action(1, "ct", (5000, 50), None) + action(2, "gact", (5000, 50), None),
)


def test_in_hw_filter_with_hardware_counters() -> None:
    f = tc.parse_flower(1, 2, IN_HW)
    assert f.in_hw and not f.not_in_hw and not f.skip_hw
    assert f.in_hw_count == 1
    assert [a.kind for a in f.actions] == ["mirred"]
    hw, sw = f.counters
    assert hw == tc.Counters(9, 882)
    assert sw == tc.Counters(1, 98)


def test_not_in_hw_filter_counts_everything_as_software() -> None:
    f = tc.parse_flower(2, 3, NOT_IN_HW)
    assert f.not_in_hw and not f.in_hw
    assert [a.kind for a in f.actions] == ["ct", "gact"]
    assert f.counters == (tc.Counters(), tc.Counters(50, 5000))


def test_device_totals() -> None:
    dev = tc.DeviceFilters(
        "pf0vf1", (tc.parse_flower(1, 2, IN_HW), tc.parse_flower(2, 3, NOT_IN_HW))
    )
    assert (dev.in_hw, dev.not_in_hw) == (1, 1)
    assert dev.hardware == tc.Counters(9, 882)
    assert dev.software == tc.Counters(51, 5098)


def test_pkt64_overrides_the_32_bit_packet_count() -> None:
    stats = attr(tc.TCA_STATS_BASIC, basic(10, 0xFFFFFFFF)) + attr(
        tc.TCA_STATS_PKT64, struct.pack("=Q", 5_000_000_000)
    )
    total, hw = tc.parse_action_stats(stats)
    assert total == tc.Counters(5_000_000_000, 10)
    assert hw == tc.Counters()


def test_actions_sorted_by_order_and_unknown_attributes_skipped() -> None:
    acts = action(2, "gact", (1, 1), None) + action(1, "mirred", (2, 2), None) + attr(99, b"x")
    parsed = tc.parse_actions(acts)
    assert [a.kind for a in parsed] == ["mirred", "gact"]


def test_malformed_attribute() -> None:
    with pytest.raises(ValueError):
        list(tc.iter_attrs(struct.pack("=HH", 40, 1) + b"short"))


def test_priority_from_info() -> None:
    assert tc.filter_priority((2 << 16) | 0x0008) == 2
