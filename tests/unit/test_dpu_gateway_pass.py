"""`GatewayFlows.reconcile`: the external bridge's flows are read back and fixed when the
wanted set changed, and otherwise at most once per `gateway.interval` (the agent passes
after every port change)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from dpunet.dpu.gateway import GatewayFlows
from dpunet.dpu.sb import PortBindingRow, SbSnapshot
from dpunet.hw.sysfs import Sysfs
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowError
from dpunet.openflow.protocol import Flow
from dpunet.ovsdb.local import OvsPort, OvsState


class Switch:
    """Records each time the flows are read back and programmed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.down = False

    def program(self, ovs_db: str, bridge: str, flows: Sequence[Flow]) -> gw.FlowChanges:
        if self.down:
            raise OpenFlowError("no switch")
        self.calls.append((bridge, len(flows)))
        return gw.FlowChanges()


def snapshot(ip: str) -> SbSnapshot:
    row = PortBindingRow("rtoe-GR_host1", type="l3gateway", mac=(f"02:00:00:00:01:00 {ip}/24",))
    return SbSnapshot(synced=True, chassis_uuid=None, bindings=(row,))


STATE = OvsState(
    synced=True,
    external_ids={"ovn-bridge-mappings": "physnet:brp0", "ovn-gw-interface": "p0"},
    bridges=frozenset({"br-int", "brp0"}),
    ports=(
        OvsPort("brp0", "brp0", ofport=65534, type="internal", mac_in_use="02:00:00:00:00:09"),
        OvsPort("p0", "brp0", ofport=1),
        OvsPort("pf0hpf", "brp0", ofport=2),
        OvsPort("patch-brp0-to-br-int", "brp0", ofport=3, type="patch"),
    ),
)


def gateway(tmp_path: Path, switch: Switch, interval: float = 10.0) -> GatewayFlows:
    settings = gw.GatewaySettings(interval=interval)
    return GatewayFlows(
        settings, "/run/ovs/db.sock", "host1", "pf0hpf", None, Sysfs(tmp_path), switch.program
    )


def test_an_unchanged_wanted_set_is_not_read_back_on_every_pass(tmp_path: Path) -> None:
    switch = Switch()
    flows = gateway(tmp_path, switch)
    first = flows.reconcile(snapshot("192.0.2.10"), STATE)
    assert first.problem is None and first.flows > 0 and len(switch.calls) == 1
    again = flows.reconcile(snapshot("192.0.2.10"), STATE)
    assert again.problem is None and again.flows == first.flows
    assert len(switch.calls) == 1  # the same set, checked a moment ago
    flows.reconcile(snapshot("192.0.2.11"), STATE)  # the node IP changed: a new set
    assert len(switch.calls) == 2


def test_the_flows_are_checked_again_once_the_interval_passed(tmp_path: Path) -> None:
    switch = Switch()
    flows = gateway(tmp_path, switch, interval=0.05)
    flows.reconcile(snapshot("192.0.2.10"), STATE)
    time.sleep(0.06)  # a flow deleted by hand meanwhile is found by this check
    flows.reconcile(snapshot("192.0.2.10"), STATE)
    assert len(switch.calls) == 2


def test_a_failed_check_is_retried_on_the_next_pass(tmp_path: Path) -> None:
    switch = Switch()
    flows = gateway(tmp_path, switch)
    switch.down = True
    assert flows.reconcile(snapshot("192.0.2.10"), STATE).problem == "no switch"
    switch.down = False
    assert flows.reconcile(snapshot("192.0.2.10"), STATE).problem is None
    assert len(switch.calls) == 1
