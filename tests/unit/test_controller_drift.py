"""The reconcile pass's drift check: a port found in place is not compared again while
its kept row and its node are the same objects, and that memo never hides a drift (a
changed row, a re-registered node)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from dpunet.controller.config import ControllerConfig
from dpunet.controller.metrics import Metrics
from dpunet.controller.nbcommands import NbSnapshot, PortRow, lsp_columns
from dpunet.controller.reconcile import Reconciler
from dpunet.controller.state import ClusterState, LoadReport
from dpunet.controller.topology import NodeRecord, NodeRole, PodPort, pod_lsp

CFG = ControllerConfig()
NODE = NodeRecord(
    name="n1", role=NodeRole.FULL, chassis="ch1", node_ip=IPv4Interface("192.0.2.5/24"),
    next_hop=IPv4Address("192.0.2.254"), subnet=IPv4Network("10.233.64.0/24"),
    join_ip=IPv4Address("100.64.0.5"), gateway_mac="0a:58:c0:00:02:05",
)  # fmt: skip


class _Writes:
    """An NB stand-in that only records the writes it is asked for."""

    def __init__(self) -> None:
        self.writes: list[Any] = []

    async def write(self, make: Any, *, coalesce: bool = False) -> Any:
        self.writes.append(make)
        return None


def _row(k: int, node: NodeRecord = NODE) -> PortRow:
    port = PodPort(
        "ns", f"p{k}", f"u{k}", f"s{k}", node=node.name, ip=IPv4Address(f"10.233.64.{k}")
    )
    columns = lsp_columns(pod_lsp(CFG, node, port))
    return PortRow(port.name, uuid.uuid4(), node.name, True, port.uid, port, columns)


def _pass(rec: Reconciler, rows: list[PortRow]) -> int:
    return asyncio.run(rec._drifted_ports(NbSnapshot(ports=rows), LoadReport()))


def _reconciler(nb: _Writes, node: NodeRecord = NODE) -> Reconciler:
    state = ClusterState(CFG)
    state.nodes[node.name] = node
    return Reconciler(CFG, nb, state, Metrics(state.node_stats))  # type: ignore[arg-type]


def test_ports_in_place_are_not_rewritten_and_a_changed_row_is_checked_again() -> None:
    nb = _Writes()
    rec = _reconciler(nb)
    rows = [_row(k) for k in range(3, 8)]
    assert _pass(rec, rows) == 0 and _pass(rec, rows) == 0
    drifted = replace(rows[1], columns=rows[1].columns | {"options": {}})  # a new kept row
    assert _pass(rec, [rows[0], drifted, *rows[2:]]) == 1
    assert len(nb.writes) == 1


def test_a_re_registered_node_rechecks_ports_found_in_place_before() -> None:
    nb = _Writes()
    rec = _reconciler(nb)
    rows = [_row(k) for k in range(3, 6)]
    assert _pass(rec, rows) == 0
    rec.state.nodes[NODE.name] = replace(NODE, chassis="ch2")  # the DPU was replaced
    assert _pass(rec, rows) == 3  # same rows, but requested-chassis must change
    assert len(nb.writes) == 3
