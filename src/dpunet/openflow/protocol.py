"""OpenFlow 1.3 messages, encoded and decoded by hand (the layouts of the OpenFlow 1.3.5
specification and Open vSwitch's Nicira extensions; no code of other projects).

A flow is a `Flow`: table, priority, cookie, a `Match` (OXM TLVs) and a tuple of
instructions (`GotoTable`, `ApplyActions` holding `Output`, `SetField`, `Conntrack`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

VERSION = 0x04  # OpenFlow 1.3

# message types
OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPT_FLOW_MOD = 14
OFPT_MULTIPART_REQUEST = 18
OFPT_MULTIPART_REPLY = 19
OFPT_BARRIER_REQUEST = 20
OFPT_BARRIER_REPLY = 21

OFPMP_FLOW = 1
OFPMPF_REPLY_MORE = 1

# flow_mod commands
OFPFC_ADD = 0
OFPFC_DELETE = 3
OFPFC_DELETE_STRICT = 4

OFPTT_ALL = 0xFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFPP_NORMAL = 0xFFFFFFFA
OFPP_LOCAL = 0xFFFFFFFE
OFPP_IN_PORT = 0xFFFFFFF8
OFPCML_NO_BUFFER = 0xFFFF

# OXM classes and fields
OFPXMC_NXM_1 = 0x0001
OFPXMC_OPENFLOW_BASIC = 0x8000
_BASIC_FIELDS = {  # name: (field number, value length)
    "in_port": (0, 4),
    "eth_dst": (3, 6),
    "eth_src": (4, 6),
    "eth_type": (5, 2),
    "ip_proto": (10, 1),
    "ipv4_src": (11, 4),
    "ipv4_dst": (12, 4),
    "tcp_src": (13, 2),
    "tcp_dst": (14, 2),
    "udp_src": (15, 2),
    "udp_dst": (16, 2),
    "arp_op": (21, 2),
    "arp_spa": (22, 4),
    "arp_tpa": (23, 4),
}
_NXM_FIELDS = {"ct_state": (105, 4), "ct_zone": (106, 2), "ct_mark": (107, 4)}
FIELDS: dict[str, tuple[int, int, int]] = {
    **{name: (OFPXMC_OPENFLOW_BASIC, num, size) for name, (num, size) in _BASIC_FIELDS.items()},
    **{name: (OFPXMC_NXM_1, num, size) for name, (num, size) in _NXM_FIELDS.items()},
}
"""OXM field name -> (class, field number, value length in bytes)."""
_BY_CODE = {(cls, num): name for name, (cls, num, _) in FIELDS.items()}

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# ct_state bits (Nicira)
CS_NEW = 0x01
CS_EST = 0x02
CS_REL = 0x04
CS_RPL = 0x08
CS_INV = 0x10
CS_TRK = 0x20

# instructions and actions
OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
NX_VENDOR_ID = 0x00002320
NXAST_CT = 35
NXAST_CT_CLEAR = 43
NX_CT_F_COMMIT = 0x01
NX_CT_RECIRC_NONE = 0xFF

_HEADER = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_MULTIPART = struct.Struct("!HH4x")
_FLOW_STATS_REQUEST = struct.Struct("!B3xII4xQQ")
_CT = struct.Struct("!HHIHHIHB3xH")


class ProtocolError(Exception):
    """A message that does not parse, or an OpenFlow error from the switch."""


def _pad8(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def _value_bytes(name: str, value: int | str | IPv4Address) -> bytes:
    size = FIELDS[name][2]
    if isinstance(value, IPv4Address):
        return value.packed
    if isinstance(value, str):
        if ":" in value:  # a MAC address
            raw = bytes(int(part, 16) for part in value.split(":"))
        else:
            raw = IPv4Address(value).packed
        if len(raw) != size:
            raise ValueError(f"{name}: {value!r} is not {size} bytes")
        return raw
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"{name}: {value} does not fit {size} bytes")
    return value.to_bytes(size, "big")


@dataclass(frozen=True)
class MatchField:
    """One OXM TLV: a field, its value and an optional mask (raw bytes)."""

    name: str
    value: bytes
    mask: bytes | None = None

    def encode(self) -> bytes:
        """The TLV: class(16) field(7) hasmask(1) length(8), value, mask."""
        cls, num, size = FIELDS[self.name]
        has_mask = self.mask is not None
        length = size * (2 if has_mask else 1)
        header = struct.pack("!HBB", cls, (num << 1) | int(has_mask), length)
        return header + self.value + (self.mask or b"")

    def __str__(self) -> str:
        value = int.from_bytes(self.value, "big")
        if self.mask is None:
            return f"{self.name}={value:#x}"
        return f"{self.name}={value:#x}/{int.from_bytes(self.mask, 'big'):#x}"


@dataclass(frozen=True)
class Match:
    """An OXM match: fields in the order given (prerequisites first)."""

    fields: tuple[MatchField, ...] = ()

    @classmethod
    def of(cls, **values: int | str | IPv4Address | tuple[int, int]) -> Match:
        """A match from `name=value` or `name=(value, mask)` pairs, in argument order."""
        out = []
        for name, value in values.items():
            if name not in FIELDS:
                raise ValueError(f"unknown match field {name}")
            if isinstance(value, tuple):
                out.append(
                    MatchField(name, _value_bytes(name, value[0]), _value_bytes(name, value[1]))
                )
            else:
                out.append(MatchField(name, _value_bytes(name, value)))
        return cls(tuple(out))

    def encode(self) -> bytes:
        """`ofp_match` of type OXM, padded to 8 bytes."""
        body = b"".join(f.encode() for f in self.fields)
        return _pad8(struct.pack("!HH", 1, 4 + len(body)) + body)

    def as_dict(self) -> dict[str, tuple[bytes, bytes | None]]:
        """Field name -> (value, mask): what two matches compare by, whatever the order."""
        return {f.name: (f.value, f.mask) for f in self.fields}

    def __str__(self) -> str:
        return ",".join(str(f) for f in self.fields) or "any"


def decode_match(data: bytes, offset: int) -> tuple[Match, int]:
    """The match at `offset` and the offset just past its padding."""
    if len(data) < offset + 4:
        raise ProtocolError("truncated match")
    mtype, length = struct.unpack_from("!HH", data, offset)
    if mtype != 1 or length < 4 or len(data) < offset + length:
        raise ProtocolError(f"match of type {mtype}, length {length}: not an OXM match")
    pos, end, out = offset + 4, offset + length, []
    while pos < end:
        if end - pos < 4:
            raise ProtocolError("truncated OXM header")
        cls, fieldbyte, size = struct.unpack_from("!HBB", data, pos)
        num, has_mask = fieldbyte >> 1, fieldbyte & 1
        raw = data[pos + 4 : pos + 4 + size]
        if len(raw) != size:
            raise ProtocolError("truncated OXM value")
        pos += 4 + size
        name = _BY_CODE.get((cls, num), f"oxm-{cls:#06x}-{num}")
        if has_mask:
            half = size // 2
            out.append(MatchField(name, raw[:half], raw[half:]))
        else:
            out.append(MatchField(name, raw))
    return Match(tuple(out)), offset + length + (-length % 8)


# ------------------------------------------------------------------- actions
@dataclass(frozen=True)
class Output:
    """OFPAT_OUTPUT to a port number (or OFPP_NORMAL, OFPP_LOCAL, ...)."""

    port: int

    def encode(self) -> bytes:
        """type, len 16, port, max_len, pad."""
        return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, self.port, OFPCML_NO_BUFFER)


@dataclass(frozen=True)
class SetField:
    """OFPAT_SET_FIELD of one field (e.g. ct_mark inside a commit)."""

    name: str
    value: int

    def encode(self) -> bytes:
        """type, len, the OXM TLV, padded to 8."""
        tlv = MatchField(self.name, _value_bytes(self.name, self.value)).encode()
        length = 4 + len(tlv) + (-(4 + len(tlv)) % 8)
        return _pad8(struct.pack("!HH", OFPAT_SET_FIELD, length) + tlv)


@dataclass(frozen=True)
class Conntrack:
    """Nicira `ct`: send through conntrack in `zone`; `commit` stores the connection (with
    `actions` such as a SetField of ct_mark); `table` recirculates the packet there."""

    zone: int
    commit: bool = False
    table: int | None = None
    actions: tuple[SetField, ...] = ()

    def encode(self) -> bytes:
        """nx_action_conntrack (24 bytes) followed by the nested actions."""
        nested = b"".join(a.encode() for a in self.actions)
        return (
            _CT.pack(
                OFPAT_EXPERIMENTER,
                _CT.size + len(nested),
                NX_VENDOR_ID,
                NXAST_CT,
                NX_CT_F_COMMIT if self.commit else 0,
                0,  # zone_src 0: the zone is the immediate value
                self.zone,
                NX_CT_RECIRC_NONE if self.table is None else self.table,
                0,  # alg
            )
            + nested
        )


@dataclass(frozen=True)
class CtClear:
    """Nicira `ct_clear`: forget the packet's conntrack state (and, in the userspace
    datapath, its cached connection) before it enters another bridge's zones."""

    def encode(self) -> bytes:
        """nx_action_header (16 bytes): EXPERIMENTER, len, NX_VENDOR_ID, NXAST_CT_CLEAR."""
        return struct.pack("!HHIH6x", OFPAT_EXPERIMENTER, 16, NX_VENDOR_ID, NXAST_CT_CLEAR)


@dataclass(frozen=True)
class GotoTable:
    """OFPIT_GOTO_TABLE."""

    table: int

    def encode(self) -> bytes:
        """type, len 8, table, pad."""
        return struct.pack("!HHB3x", OFPIT_GOTO_TABLE, 8, self.table)


@dataclass(frozen=True)
class ApplyActions:
    """OFPIT_APPLY_ACTIONS with its action list."""

    actions: tuple[Output | SetField | Conntrack | CtClear, ...]

    def encode(self) -> bytes:
        """type, len, pad, actions."""
        body = b"".join(a.encode() for a in self.actions)
        return struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(body)) + body


Instruction = GotoTable | ApplyActions


@dataclass(frozen=True)
class Flow:
    """A flow as dpunet wants it (or as the switch reported it: then `raw_instructions`
    holds the switch's encoding and `duration` its age)."""

    table: int
    priority: int
    match: Match
    instructions: tuple[Instruction, ...] = ()
    cookie: int = 0
    raw_instructions: bytes | None = field(default=None, compare=False)
    duration: float = field(default=0.0, compare=False)
    packets: int = field(default=0, compare=False)

    def encoded_instructions(self) -> bytes:
        """The instructions as sent in a flow_mod."""
        if self.raw_instructions is not None:
            return self.raw_instructions
        return b"".join(i.encode() for i in self.instructions)


# ------------------------------------------------------------------ messages
def header(msg_type: int, length: int, xid: int) -> bytes:
    """`ofp_header`."""
    return _HEADER.pack(VERSION, msg_type, length, xid)


def message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    """A whole message: header and body."""
    return header(msg_type, 8 + len(body), xid) + body


def hello(xid: int) -> bytes:
    """OFPT_HELLO offering OpenFlow 1.3 (a version bitmap element with bit 4 set)."""
    return message(OFPT_HELLO, xid, struct.pack("!HHI", 1, 8, 1 << VERSION))


def flow_mod(
    xid: int,
    command: int,
    flow: Flow,
    *,
    cookie_mask: int = 0,
    table: int | None = None,
) -> bytes:
    """OFPT_FLOW_MOD for `flow` (ADD: cookie, table, priority, match, instructions;
    DELETE: the flows whose cookie matches under `cookie_mask`, in `table` or all)."""
    body = _FLOW_MOD.pack(
        flow.cookie,
        cookie_mask,
        flow.table if table is None else table,
        command,
        0,  # idle timeout
        0,  # hard timeout
        flow.priority,
        OFP_NO_BUFFER,
        OFPP_ANY,
        OFPG_ANY,
        0,  # flags
    )
    instructions = flow.encoded_instructions() if command == OFPFC_ADD else b""
    return message(OFPT_FLOW_MOD, xid, body + flow.match.encode() + instructions)


def flow_stats_request(xid: int, cookie: int, cookie_mask: int) -> bytes:
    """OFPMP_FLOW request for every table's flows whose cookie matches under the mask."""
    body = _MULTIPART.pack(OFPMP_FLOW, 0) + _FLOW_STATS_REQUEST.pack(
        OFPTT_ALL, OFPP_ANY, OFPG_ANY, cookie, cookie_mask
    )
    return message(OFPT_MULTIPART_REQUEST, xid, body + Match().encode())


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """(version, type, length, xid) of a message header."""
    if len(data) < _HEADER.size:
        raise ProtocolError("truncated OpenFlow header")
    return _HEADER.unpack_from(data)


def parse_flow_stats(msg: bytes) -> tuple[list[Flow], bool]:
    """The flows of one OFPMP_FLOW reply and whether more replies follow."""
    mp_type, flags = _MULTIPART.unpack_from(msg, 8)
    if mp_type != OFPMP_FLOW:
        raise ProtocolError(f"multipart reply of type {mp_type}, wanted flow stats")
    flows, pos = [], 8 + _MULTIPART.size
    while pos < len(msg):
        if len(msg) - pos < _FLOW_STATS.size:
            raise ProtocolError("truncated flow stats entry")
        (length, table, sec, nsec, priority, _idle, _hard, _flags, cookie, packets, _bytes) = (
            _FLOW_STATS.unpack_from(msg, pos)
        )
        if length < _FLOW_STATS.size or pos + length > len(msg):
            raise ProtocolError(f"flow stats entry of length {length}")
        match, inst_at = decode_match(msg, pos + _FLOW_STATS.size)
        flows.append(
            Flow(
                table=table,
                priority=priority,
                match=match,
                cookie=cookie,
                raw_instructions=msg[inst_at : pos + length],
                duration=sec + nsec / 1e9,
                packets=packets,
            )
        )
        pos += length
    return flows, bool(flags & OFPMPF_REPLY_MORE)


def parse_error(msg: bytes) -> str:
    """`type/code` of an OFPT_ERROR, for the exception text."""
    if len(msg) < 12:
        return "truncated error"
    err_type, code = struct.unpack_from("!HH", msg, 8)
    return f"OpenFlow error type {err_type} code {code}"


def port_ranges(low: int, high: int) -> Iterator[tuple[int, int]]:
    """(value, mask) pairs that together match exactly the ports low..high."""
    if not 0 <= low <= high <= 0xFFFF:
        raise ValueError(f"port range {low}-{high} is not inside 0-65535")
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        yield low, 0xFFFF & ~(size - 1)
        low += size


def split_messages(buffer: bytearray) -> Iterator[bytes]:
    """Whole messages taken off the front of `buffer` (partial ones stay)."""
    while len(buffer) >= _HEADER.size:
        length = struct.unpack_from("!H", buffer, 2)[0]
        if length < _HEADER.size:
            raise ProtocolError(f"message length {length}")
        if len(buffer) < length:
            return
        msg = bytes(buffer[:length])
        del buffer[:length]
        yield msg
