"""A small evaluator of OVN ACLs for unit tests: parses the match subset dpunet writes
(`==`/`!=`/`>=`/`<=` on fields, `{...}` sets, `@port_group`, `$address_set`, CIDRs,
`&&`, `||`, parentheses, protocol flags) and decides a packet the way an OVN logical
switch does: from-lport ACLs of the source port, then to-lport ACLs of the destination
port; in each stage the highest-priority matching ACL decides, none matching allows.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"\s*(&&|\|\||==|!=|>=|<=|[(){},]|[@$]?[A-Za-z0-9_.:/]+)")


@dataclass(frozen=True)
class Packet:
    """The fields a match may read."""

    inport: str
    outport: str
    src: str
    dst: str
    protocol: str  # "tcp" | "udp" | "sctp" | "arp"
    port: int = 0


@dataclass(frozen=True)
class EvalAcl:
    """An ACL where it applies: `ports` is the set of LSPs it is attached to."""

    ports: frozenset[str]
    direction: str
    priority: int
    match: str
    action: str


class _Parser:
    def __init__(
        self,
        text: str,
        pkt: Packet,
        groups: Mapping[str, frozenset[str]],
        sets: Mapping[str, frozenset[str]],
    ) -> None:
        self.tokens = _TOKEN.findall(text)
        assert "".join(self.tokens) == re.sub(r"\s+", "", text), f"unparsed text in {text!r}"
        self.pos = 0
        self.pkt, self.groups, self.sets = pkt, groups, sets

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.tokens[self.pos]
        assert want is None or tok == want, f"expected {want}, got {tok}"
        self.pos += 1
        return tok

    def expr(self) -> bool:
        value = self.conj()
        while self.peek() == "||":
            self.take()
            value = self.conj() or value
        return value

    def conj(self) -> bool:
        value = self.atom()
        while self.peek() == "&&":
            self.take()
            value = self.atom() and value
        return value

    def atom(self) -> bool:
        if self.peek() == "(":
            self.take()
            value = self.expr()
            self.take(")")
            return value
        name = self.take()
        if self.peek() not in ("==", "!=", ">=", "<="):
            return self.flag(name)
        op = self.take()
        items = self.values()
        field = self.field(name)
        if op in (">=", "<="):
            (bound,) = items
            return field >= int(bound) if op == ">=" else field <= int(bound)
        hit = any(self.equal(field, item) for item in items)
        return hit if op == "==" else not hit

    def values(self) -> list[str]:
        if self.peek() != "{":
            return self.expand(self.take())
        self.take("{")
        out = self.expand(self.take())
        while self.peek() == ",":
            self.take()
            out += self.expand(self.take())
        self.take("}")
        return out

    def expand(self, tok: str) -> list[str]:
        if tok.startswith("@"):
            return sorted(self.groups.get(tok[1:], frozenset()))
        if tok.startswith("$"):
            return sorted(self.sets.get(tok[1:], frozenset()))
        return [tok]

    def field(self, name: str) -> Any:
        pkt = self.pkt
        values = {"inport": pkt.inport, "outport": pkt.outport, "ip4.src": pkt.src,
                  "ip4.dst": pkt.dst}  # fmt: skip
        if name in values:
            return values[name]
        proto, _, what = name.partition(".")
        assert what == "dst" and proto in ("tcp", "udp", "sctp"), f"unknown field {name}"
        return pkt.port if pkt.protocol == proto else -1

    @staticmethod
    def equal(field: Any, item: str) -> bool:
        if isinstance(field, int):
            return field == int(item)
        if re.fullmatch(r"[0-9.]+(/[0-9]+)?", item) and re.fullmatch(r"[0-9.]+", field):
            return ipaddress.ip_address(field) in ipaddress.ip_network(item)
        return bool(field == item)

    def flag(self, name: str) -> bool:
        if name in ("tcp", "udp", "sctp", "arp"):
            return self.pkt.protocol == name
        assert name == "nd", f"unknown flag {name}"
        return False


def matches(
    match: str,
    pkt: Packet,
    groups: Mapping[str, frozenset[str]],
    sets: Mapping[str, frozenset[str]],
) -> bool:
    """Whether `match` holds for `pkt`."""
    parser = _Parser(match, pkt, groups, sets)
    value = parser.expr()
    assert parser.peek() is None, f"trailing tokens in {match!r}"
    return value


def allowed(
    pkt: Packet,
    acls: list[EvalAcl],
    groups: Mapping[str, frozenset[str]],
    sets: Mapping[str, frozenset[str]],
) -> bool:
    """Whether the switch pipeline passes a new connection's first packet."""
    for direction, port in (("from-lport", pkt.inport), ("to-lport", pkt.outport)):
        hits = [
            a
            for a in acls
            if a.direction == direction and port in a.ports and matches(a.match, pkt, groups, sets)
        ]
        if hits and max(hits, key=lambda a: a.priority).action in ("drop", "reject"):
            return False
    return True
