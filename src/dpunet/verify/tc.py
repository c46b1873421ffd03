"""tc flower filters of a representor and their hardware/software counters, via netlink.

What `tc -s filter show dev <rep> ingress` prints comes from RTM_GETTFILTER answers:
`TCA_KIND` "flower" and `TCA_OPTIONS` holding `TCA_FLOWER_FLAGS` (`skip_hw`,
`skip_sw`, `in_hw`, `not_in_hw`), `TCA_FLOWER_IN_HW_COUNT` and `TCA_FLOWER_ACT`: one
nested attribute per action with `TCA_ACT_KIND` and `TCA_ACT_STATS`, where
`TCA_STATS_BASIC` counts every packet the action saw and `TCA_STATS_BASIC_HW` those the
hardware handled (tc prints the difference as "Sent software"). The Linux layer fetches
the messages (`dpunet.linux.netlink.ingress_filters`); nothing decodes flower there, so
`TCA_OPTIONS` arrives as raw bytes and is decoded here (enum values from linux/pkt_cls.h
and linux/gen_stats.h).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# linux/pkt_cls.h
TCA_FLOWER_ACT = 3
TCA_FLOWER_FLAGS = 22
TCA_FLOWER_IN_HW_COUNT = 86
TCA_CLS_FLAGS_SKIP_HW = 1 << 0
TCA_CLS_FLAGS_SKIP_SW = 1 << 1
TCA_CLS_FLAGS_IN_HW = 1 << 2
TCA_CLS_FLAGS_NOT_IN_HW = 1 << 3
TCA_ACT_KIND = 1
TCA_ACT_STATS = 4
# linux/gen_stats.h
TCA_STATS_BASIC = 1
TCA_STATS_BASIC_HW = 7
TCA_STATS_PKT64 = 8

_NLA_HEADER = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


@dataclass(frozen=True)
class Counters:
    """Packets and bytes."""

    packets: int = 0
    bytes: int = 0

    def __add__(self, other: Counters) -> Counters:
        return Counters(self.packets + other.packets, self.bytes + other.bytes)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(max(self.packets - other.packets, 0), max(self.bytes - other.bytes, 0))


@dataclass(frozen=True)
class TcAction:
    """One action of a filter with its counters."""

    kind: str
    total: Counters
    hardware: Counters

    @property
    def software(self) -> Counters:
        """What the kernel handled (total minus hardware), as tc's "Sent software"."""
        return self.total - self.hardware


@dataclass(frozen=True)
class FlowerFilter:
    """One flower filter of a device."""

    handle: int
    priority: int
    flags: int
    in_hw_count: int | None
    actions: tuple[TcAction, ...] = field(default_factory=tuple)

    @property
    def in_hw(self) -> bool:
        """The kernel reports the rule as installed in hardware."""
        return bool(self.flags & TCA_CLS_FLAGS_IN_HW)

    @property
    def not_in_hw(self) -> bool:
        """The kernel reports the rule as software only."""
        return bool(self.flags & TCA_CLS_FLAGS_NOT_IN_HW)

    @property
    def skip_hw(self) -> bool:
        """The rule asked not to be offloaded."""
        return bool(self.flags & TCA_CLS_FLAGS_SKIP_HW)

    @property
    def counters(self) -> tuple[Counters, Counters]:
        """(hardware, software) counters of the first action (the one every hit passes)."""
        if not self.actions:
            return Counters(), Counters()
        first = self.actions[0]
        return first.hardware, first.software


@dataclass(frozen=True)
class DeviceFilters:
    """The flower filters of one device, summed up."""

    device: str
    filters: tuple[FlowerFilter, ...] = ()
    error: str | None = None

    @property
    def in_hw(self) -> int:
        """Filters the kernel installed in hardware."""
        return sum(f.in_hw for f in self.filters)

    @property
    def not_in_hw(self) -> int:
        """Filters that stayed in tc software."""
        return sum(not f.in_hw for f in self.filters)

    @property
    def hardware(self) -> Counters:
        """Packets and bytes the hardware handled over all filters."""
        return sum((f.counters[0] for f in self.filters), Counters())

    @property
    def software(self) -> Counters:
        """Packets and bytes tc handled in software over all filters."""
        return sum((f.counters[1] for f in self.filters), Counters())


def iter_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in `data` (4-byte aligned TLVs)."""
    offset = 0
    while offset + _NLA_HEADER.size <= len(data):
        length, kind = _NLA_HEADER.unpack_from(data, offset)
        if length < _NLA_HEADER.size or offset + length > len(data):
            raise ValueError(f"malformed netlink attribute at offset {offset}")
        yield kind & _NLA_TYPE_MASK, data[offset + _NLA_HEADER.size : offset + length]
        offset += (length + 3) & ~3


def _u32(payload: bytes) -> int:
    return int(struct.unpack_from("=I", payload)[0])


def _basic(payload: bytes) -> Counters:
    """`struct gnet_stats_basic { __u64 bytes; __u32 packets; }`."""
    byte_count, packets = struct.unpack_from("=QI", payload)
    return Counters(int(packets), int(byte_count))


def parse_action_stats(payload: bytes) -> tuple[Counters, Counters]:
    """`TCA_ACT_STATS` -> (total, hardware)."""
    total = hardware = Counters()
    pkt64: int | None = None
    for kind, value in iter_attrs(payload):
        if kind == TCA_STATS_BASIC:
            total = _basic(value)
        elif kind == TCA_STATS_BASIC_HW:
            hardware = _basic(value)
        elif kind == TCA_STATS_PKT64:
            pkt64 = int(struct.unpack_from("=Q", value)[0])
    if pkt64 is not None:
        total = Counters(pkt64, total.bytes)
    return total, hardware


def parse_actions(payload: bytes) -> tuple[TcAction, ...]:
    """`TCA_FLOWER_ACT` (one nested attribute per action, typed by its order); entries
    without an action kind are skipped."""
    out = []
    for _order, action in sorted(iter_attrs(payload), key=lambda item: item[0]):
        kind = ""
        total = hardware = Counters()
        for attr, value in iter_attrs(action):
            if attr == TCA_ACT_KIND:
                kind = value.split(b"\0", 1)[0].decode("ascii", "replace")
            elif attr == TCA_ACT_STATS:
                total, hardware = parse_action_stats(value)
        if kind:
            out.append(TcAction(kind, total, hardware))
    return tuple(out)


def parse_flower(handle: int, priority: int, options: bytes) -> FlowerFilter:
    """A flower filter from its `TCA_OPTIONS` payload."""
    flags, in_hw_count = 0, None
    actions: tuple[TcAction, ...] = ()
    for kind, value in iter_attrs(options):
        if kind == TCA_FLOWER_FLAGS:
            flags = _u32(value)
        elif kind == TCA_FLOWER_IN_HW_COUNT:
            in_hw_count = _u32(value)
        elif kind == TCA_FLOWER_ACT:
            actions = parse_actions(value)
    return FlowerFilter(handle, priority, flags, in_hw_count, actions)


def filter_priority(info: int) -> int:
    """The priority in a tcmsg's `info` (upper 16 bits; the lower hold the protocol)."""
    return info >> 16


def dump_filters(netns: str | None, device: str) -> DeviceFilters:
    """The ingress flower filters of `device` in namespace `netns` (a path; None: here)."""
    from dpunet.linux.netlink import LinuxError, ingress_filters

    try:
        dumped = ingress_filters(device, netns)
    except LinuxError as exc:
        return DeviceFilters(device, error=f"no ingress filters ({exc})")
    if dumped is None:
        return DeviceFilters(device, error="no such device")
    filters = tuple(
        parse_flower(f.handle, filter_priority(f.info), f.options)
        for f in dumped
        if f.kind == "flower" and f.options
    )
    return DeviceFilters(device, filters)
