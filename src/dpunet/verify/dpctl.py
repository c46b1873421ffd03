"""Datapath flows as `ovs-appctl dpctl/dump-flows [-m]` prints them, parsed.

Format (ovs-vswitchd's `format_dpif_flow`): an optional `ufid:<uuid>, ` (verbose), the
match keys (`key(args)` joined by `,`), then `, packets:N, bytes:N, used:<secs>s|never`,
optionally `, flags:<tcp flags>`, with `-m` `, offloaded:yes|partial` and `, dp:<layer>`
(`ovs`, `tc`, `dpdk`), then `, actions:<actions>`; OVS 3.x appends
`, dp-extra-info:...` after the actions on the userspace datapath. Short lines name
ports by datapath port number (`in_port(2)`, `actions:3`), verbose ones by name.

A flow is in hardware when it says `offloaded:yes` (`dp:tc`); `dp:tc` without it is a
tc software rule; anything else runs in the OVS datapath (kernel module or userspace).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

# ct_state bits (OVS_CS_F_*), as dpctl prints them by name in short lines
CT_FLAGS = {
    "new": 0x01,
    "est": 0x02,
    "rel": 0x04,
    "rpl": 0x08,
    "inv": 0x10,
    "trk": 0x20,
    "snat": 0x40,
    "dnat": 0x80,
}
_NUMERIC = re.compile(r"^(0x[0-9a-fA-F]+|\d+)(/(0x[0-9a-fA-F]+|\d+))?$")
_USED = re.compile(r"^(?P<secs>\d+(\.\d+)?)s$")
_DP_PORT = re.compile(r"^\s*port (?P<no>\d+): (?P<name>\S+)")
# actions whose arguments hold further actions
_NESTED_ACTIONS = frozenset({"clone", "check_pkt_len", "gt", "le", "sample", "actions"})
# actions that neither output nor stop the flow
_NON_OUTPUT = frozenset(
    {
        "drop",
        "ct_clear",
        "pop_vlan",
        "pop_eth",
        "pop_mpls",
        "pop_nsh",
        "push_vlan",
        "push_eth",
        "push_mpls",
        "push_nsh",
        "set",
        "set_masked",
        "ct",
        "recirc",
        "hash",
        "meter",
        "trunc",
        "userspace",
        "tnl_pop",
        "dec_ttl",
        "lb_output",
        "add_mpls",
    }
)


class Layer(StrEnum):
    """Where a datapath flow is executed."""

    HARDWARE = "hardware"  # offloaded:yes, dp:tc
    PARTIAL = "partial"  # offloaded:partial (userspace datapath with flow marks)
    TC_SOFTWARE = "tc-software"  # dp:tc without offloaded:yes
    OVS = "ovs"  # the OVS datapath (kernel module or userspace)


class ParseError(ValueError):
    """A line is not a datapath flow."""


@dataclass(frozen=True)
class DpFlow:
    """One datapath flow."""

    match: Mapping[str, str]
    packets: int
    bytes: int
    used: float | None  # seconds since last hit; None for `never`
    actions: tuple[str, ...]
    ufid: str | None = None
    offloaded: str | None = None  # "yes", "partial" or None
    dp: str | None = None  # "ovs", "tc", "dpdk" or None (short lines)
    tcp_flags: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def layer(self) -> Layer:
        """Hardware, tc software or the OVS datapath."""
        if self.offloaded == "yes":
            return Layer.HARDWARE
        if self.offloaded == "partial":
            return Layer.PARTIAL
        if self.dp == "tc":
            return Layer.TC_SOFTWARE
        return Layer.OVS

    @property
    def in_port(self) -> str | None:
        """The `in_port(...)` value (a name in verbose lines, a number in short ones)."""
        return self.match.get("in_port")

    def outputs(self) -> list[str]:
        """Every port the actions send to, nested ones (clone, check_pkt_len) included;
        a tunnel push counts as its `out_port`."""
        return list(_outputs(self.actions))

    def ct_state(self) -> tuple[int, int] | None:
        """(value, mask) of the `ct_state` match, None when absent or fully wildcarded."""
        raw = self.match.get("ct_state")
        if raw is None:
            return None
        value, mask = parse_ct_state(raw)
        return (value, mask) if mask else None

    def action_names(self) -> list[str]:
        """The names of the actions, nested ones included (`ct`, `userspace`, ...)."""
        return list(_action_names(self.actions))


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split `text` at `sep` outside parentheses, brackets and braces."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return [p for p in parts if p != ""]


def split_call(token: str) -> tuple[str, str | None]:
    """`name(args)` -> (name, args); a bare word -> (word, None)."""
    paren = token.find("(")
    if paren < 0 or not token.endswith(")"):
        return token, None
    return token[:paren], token[paren + 1 : -1]


def parse_match(text: str) -> dict[str, str]:
    """`key(args),key(args)` -> {key: args} (a key without args maps to "")."""
    out: dict[str, str] = {}
    for token in split_top(text.strip()):
        name, args = split_call(token.strip())
        out[name] = args if args is not None else ""
    return out


def parse_ct_state(text: str) -> tuple[int, int]:
    """`0x21/0x2f`, `0x21` (exact) or `+trk-new` -> (value, mask)."""
    text = text.strip()
    if m := _NUMERIC.match(text):
        value = int(m.group(1), 0)
        mask = int(m.group(3), 0) if m.group(3) else 0xFF
        return value, mask
    value = mask = 0
    for sign, name in re.findall(r"([+-])([a-z]+)", text):
        bit = CT_FLAGS.get(name)
        if bit is None:
            raise ParseError(f"unknown ct_state flag {name!r}")
        mask |= bit
        if sign == "+":
            value |= bit
    return value, mask


def _int_field(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ParseError(f"{what} is not a number: {value!r}") from None


def parse_flow(line: str) -> DpFlow:
    """One `dump-flows` line (short or verbose) -> DpFlow; ParseError otherwise."""
    fields = split_top(line.strip(), ", ")
    ufid = None
    if fields and fields[0].startswith("ufid:"):
        ufid = fields.pop(0)[len("ufid:") :]
    if not fields:
        raise ParseError(f"not a datapath flow: {line!r}")
    match = parse_match(fields.pop(0))
    stats: dict[str, str] = {}
    actions: list[str] | None = None
    extra: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition(":")
        if actions is not None and not (sep and key == "dp-extra-info"):
            actions.extend(split_top(item))  # defensive: ", " inside the action list
            continue
        if not sep:
            raise ParseError(f"unexpected field {item!r} in {line!r}")
        if key == "actions":
            actions = split_top(value)
        elif key in ("packets", "bytes", "used", "flags", "offloaded", "dp"):
            stats[key] = value
        else:
            extra[key] = value
    if actions is None or "packets" not in stats or "bytes" not in stats:
        raise ParseError(f"not a datapath flow (no packets/bytes/actions): {line!r}")
    used_text = stats.get("used", "never")
    used_match = _USED.match(used_text)
    return DpFlow(
        match=match,
        packets=_int_field(stats["packets"], "packets"),
        bytes=_int_field(stats["bytes"], "bytes"),
        used=float(used_match["secs"]) if used_match else None,
        actions=tuple(actions),
        ufid=ufid,
        offloaded=stats.get("offloaded"),
        dp=stats.get("dp"),
        tcp_flags=stats.get("flags"),
        extra=extra,
    )


def parse_dump(text: str) -> list[DpFlow]:
    """Every flow of a `dump-flows` output; section headers (`flow-dump from ...`) and
    blank lines are skipped."""
    flows = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("flow-dump from") or stripped.endswith(":"):
            continue
        flows.append(parse_flow(stripped))
    return flows


def parse_dp_ports(text: str) -> dict[str, str]:
    """`dpctl/show` -> {datapath port number: port name}."""
    return {m["no"]: m["name"] for m in map(_DP_PORT.match, text.splitlines()) if m}


def _outputs(actions: tuple[str, ...] | list[str]) -> Iterator[str]:
    for action in actions:
        name, args = split_call(action)
        if args is None:
            if name not in _NON_OUTPUT:
                yield name
        elif name in _NESTED_ACTIONS:
            for part in split_top(args):
                inner_name, inner_args = split_call(part)
                if inner_args is not None and inner_name in _NESTED_ACTIONS:
                    yield from _outputs([part])
                elif inner_args is None and "=" in part:
                    continue  # a parameter such as size=1500 or probability=...
                else:
                    yield from _outputs([part])
        elif name == "tnl_push":
            for part in split_top(args):
                inner_name, inner_args = split_call(part)
                if inner_name == "out_port" and inner_args is not None:
                    yield inner_args


def _action_names(actions: tuple[str, ...] | list[str]) -> Iterator[str]:
    for action in actions:
        name, args = split_call(action)
        if args is None:
            yield "output" if name not in _NON_OUTPUT else name
            continue
        yield name
        if name in _NESTED_ACTIONS:
            for part in split_top(args):
                if "=" not in part or "(" in part:
                    yield from _action_names([part])


def rename_ports(flow: DpFlow, names: Mapping[str, str]) -> DpFlow:
    """A short-format flow with datapath port numbers replaced by names (`dpctl/show`)."""
    if not names:
        return flow
    match = dict(flow.match)
    if flow.in_port in names:
        match["in_port"] = names[flow.in_port or ""]
    actions = tuple(_rename_action(a, names) for a in flow.actions)
    return DpFlow(
        match=match,
        packets=flow.packets,
        bytes=flow.bytes,
        used=flow.used,
        actions=actions,
        ufid=flow.ufid,
        offloaded=flow.offloaded,
        dp=flow.dp,
        tcp_flags=flow.tcp_flags,
        extra=flow.extra,
    )


def _rename_action(action: str, names: Mapping[str, str]) -> str:
    name, args = split_call(action)
    if args is None:
        return names.get(name, name)
    if name in _NESTED_ACTIONS:
        parts = [
            p if ("=" in p and "(" not in p) else _rename_action(p, names) for p in split_top(args)
        ]
        return f"{name}({','.join(parts)})"
    if name == "tnl_push":
        parts = []
        for part in split_top(args):
            inner, inner_args = split_call(part)
            if inner == "out_port" and inner_args is not None:
                part = f"out_port({names.get(inner_args, inner_args)})"
            parts.append(part)
        return f"{name}({','.join(parts)})"
    return action
