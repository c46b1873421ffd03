"""`dpu setup` plan computation: DPU state in, steps out (no root, no OVS)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from dpunet.linux.netlink import Address, KernelRoute, Link
from dpunet.ovsdb.local import BridgeRow, OvsSnapshot
from dpunet.setup.dpu import DpuSetupConfig, DpuState, bridge_hwaddr, plan_dpu
from dpunet.setup.plan import Outcome, Plan, SetupError, Step

UPLINK_MAC = "0c:42:a1:11:22:33"
ADDR = Address("192.168.41.127", 22, "192.168.43.255")
DEFAULT = KernelRoute(dst=None, dst_len=0, gateway="192.168.40.254", proto=3)
CONNECTED = KernelRoute(
    dst="192.168.40.0", dst_len=22, gateway=None, proto=2, scope=253, prefsrc=ADDR.address
)


def cfg(**overrides: object) -> DpuSetupConfig:
    values: dict[str, object] = {
        "host_node": "dpu-host",
        "uplink": "p0",
        "gw_nexthop": "192.168.40.254",
        "ovs_db": "unix:/run/ovs/db.sock",
        **overrides,
    }
    return DpuSetupConfig.model_validate(values)


def fresh(kernel_datapath: bool = True, **overrides: object) -> DpuState:
    """The seed's DPU before the procedure: p0 holds the address, no bridge."""
    state = DpuState(
        ovs=OvsSnapshot(other_config={}, external_ids={}, bridges={}),
        uplink=Link("p0", 5, UPLINK_MAC, None, True, (ADDR,), (DEFAULT, CONNECTED)),
        host_pf_rep=Link("pf0hpf", 6, "0c:42:a1:11:22:34", None, False),
        bridge_link=None,
        bridge_tx_checksum=None,
        uplink_arp_ignore=0,
        kernel_datapath=kernel_datapath,
        vswitchd_running=True,
        system_hostname="dpu",
    )
    return dataclasses.replace(state, **overrides)  # type: ignore[arg-type]


def converged(datapath: str = "system") -> DpuState:
    """The state `plan_dpu(cfg(), fresh())` leads to."""
    ids = {
        "host-k8s-nodename": "dpu-host",
        "ovn-gw-interface": "p0",
        "ovn-gw-nexthop": "192.168.40.254",
        "ovn-encap-ip": ADDR.address,
        "ovn-encap-type": "geneve",
        "ovn-remote": "tcp:192.168.40.111:6642",
        "system-id": "dpu",
        "hostname": "dpu",
        "ovn-bridge-mappings": "physnet:brp0",
    }
    if datapath == "netdev":
        ids["ovn-bridge-datapath-type"] = "netdev"
    bridge = BridgeRow(
        "brp0",
        "" if datapath == "system" else datapath,
        {"hwaddr": bridge_hwaddr(UPLINK_MAC, datapath)},
        ("brp0", "p0", "pf0hpf"),
    )
    return fresh(
        kernel_datapath=datapath == "system",
        ovs=OvsSnapshot(
            other_config={"hw-offload": "true"}, external_ids=ids, bridges={"brp0": bridge}
        ),
        uplink=Link("p0", 5, UPLINK_MAC, None, True, (), ()),
        host_pf_rep=Link("pf0hpf", 6, "0c:42:a1:11:22:34", None, True),
        bridge_link=Link(
            "brp0",
            7,
            bridge_hwaddr(UPLINK_MAC, datapath),
            None,
            True,
            (ADDR,),
            (DEFAULT, CONNECTED),
        ),
        bridge_tx_checksum=datapath == "system",  # the kernel datapath's port keeps it
        uplink_arp_ignore=8 if datapath == "netdev" else 0,
    )


def by_key(plan: Plan) -> dict[tuple[str, str], Step]:
    return {(s.kind, s.target): s for s in plan.steps}


def test_fresh_dpu_gets_every_seed_step() -> None:
    plan = plan_dpu(cfg(ovn_remote="tcp:192.168.40.111:6642"), fresh())
    steps = by_key(plan)
    assert [s.what for s in plan.steps if not s.pending] == ["p0 up"]
    assert steps[("other_config", "hw-offload")].desired == "true"
    desired_ids = {t: s.desired for (k, t), s in steps.items() if k == "external_ids"}
    assert desired_ids == {
        "host-k8s-nodename": "dpu-host",
        "ovn-gw-interface": "p0",
        "ovn-gw-nexthop": "192.168.40.254",
        "ovn-encap-ip": "192.168.41.127",
        "ovn-encap-type": "geneve",
        "ovn-remote": "tcp:192.168.40.111:6642",
        "system-id": "dpu",
        "hostname": "dpu",
        "ovn-bridge-mappings": "physnet:brp0",
    }
    assert plan.datapath_type == "system"
    assert steps[("bridge", "brp0")].current == "absent"
    assert steps[("hwaddr", "brp0")].desired == UPLINK_MAC
    assert steps[("addresses", "brp0")].current == "p0: 192.168.41.127/22"
    assert steps[("addresses", "brp0")].desired == "brp0: 192.168.41.127/22"
    assert plan.addresses == [ADDR]
    # connected routes come back with the address; only the others are moved
    assert plan.routes == [DEFAULT]
    assert steps[("routes", "brp0")].desired == "default via 192.168.40.254 dev brp0"
    assert [s.target for s in plan.steps if s.kind == "port"] == ["p0", "pf0hpf"]
    assert ("arp_ignore", "p0") not in steps
    assert ("tx_checksum", "brp0") not in steps
    assert any("ovs-vswitchd restart" in n for n in plan.notes)
    # the order the apply step follows: config, bridge, links, addresses, ports, routes
    kinds = [s.kind for s in plan.steps]
    assert (
        kinds.index("bridge")
        < kinds.index("addresses")
        < kinds.index("port")
        < kinds.index("routes")
    )


@pytest.mark.parametrize("datapath", ["system", "netdev"])
def test_converged_dpu_needs_nothing(datapath: str) -> None:
    plan = plan_dpu(cfg(), converged(datapath))
    assert [s for s in plan.steps if s.outcome is not Outcome.NO_CHANGE] == []
    assert not plan.changes_anything
    assert plan.datapath_type == datapath
    assert not any("restart" in n for n in plan.notes)


def test_auto_datapath_without_kernel_module_is_netdev() -> None:
    plan = plan_dpu(cfg(), fresh(kernel_datapath=False))
    steps = by_key(plan)
    assert plan.datapath_type == "netdev"
    assert steps[("datapath_type", "brp0")].desired == "netdev"
    assert steps[("external_ids", "ovn-bridge-datapath-type")].desired == "netdev"
    # userspace datapath: bridge MAC differs from the uplink's, and p0 stops answering ARP
    assert steps[("hwaddr", "brp0")].desired == "0e:42:a1:11:22:33"
    assert steps[("arp_ignore", "p0")].desired == "8"
    # and the bridge's tap, made with checksum offload by OVS 3.5, gets it turned off
    assert (steps[("tx_checksum", "brp0")].current, steps[("tx_checksum", "brp0")].desired) == (
        "-",
        "off",
    )
    assert any("netdev" in n and "auto" in n for n in plan.notes)
    assert any("no hardware" in n for n in plan.notes)


def test_explicit_datapath_overrides_auto_and_existing_bridge() -> None:
    state = converged("netdev")
    plan = plan_dpu(cfg(datapath_type="system"), state)
    steps = by_key(plan)
    assert steps[("datapath_type", "brp0")].current == "netdev"
    assert steps[("datapath_type", "brp0")].desired == "system"
    # a netdev ovn-bridge-datapath-type left behind is corrected, not kept
    assert steps[("external_ids", "ovn-bridge-datapath-type")].desired == "system"
    # auto keeps what the existing bridge uses, whatever the kernel has
    assert (
        plan_dpu(cfg(), dataclasses.replace(state, kernel_datapath=True)).datapath_type == "netdev"
    )


def test_existing_values_are_kept_or_merged() -> None:
    state = fresh(
        ovs=OvsSnapshot(
            other_config={"unrelated": "x"},
            external_ids={
                "system-id": "chassis-7",
                "hostname": "dpu-a",
                "ovn-remote": "tcp:192.168.40.111:6642",
                "ovn-bridge-mappings": "other:br-x,physnet:br-old",
            },
            bridges={},
        )
    )
    plan = plan_dpu(cfg(), state)
    steps = by_key(plan)
    assert plan.system_id == "chassis-7" and plan.hostname == "dpu-a"
    assert steps[("external_ids", "system-id")].outcome is Outcome.NO_CHANGE
    assert steps[("external_ids", "ovn-remote")].outcome is Outcome.NO_CHANGE
    assert steps[("external_ids", "ovn-bridge-mappings")].desired == "other:br-x,physnet:brp0"
    assert not plan.warnings
    # explicit values win; system-id defaults to the (given) hostname when none exists
    plan = plan_dpu(cfg(hostname="dpu1"), fresh())
    assert (plan.hostname, plan.system_id) == ("dpu1", "dpu1")
    assert any("ovn-remote is not set" in w for w in plan.warnings)


def test_encap_ip_defaults_to_the_bridge_address_after_the_move_and_warns_when_foreign() -> None:
    state = converged()
    assert plan_dpu(cfg(), state).encap_ip == ADDR.address
    plan = plan_dpu(cfg(encap_ip="198.51.100.9"), state)
    assert plan.encap_ip == "198.51.100.9"
    assert any("198.51.100.9 is not an address" in w for w in plan.warnings)
    plan = plan_dpu(cfg(gw_nexthop="198.51.100.1"), state)
    assert any("not in a subnet" in w for w in plan.warnings)


def test_partially_moved_address_is_finished() -> None:
    state = dataclasses.replace(
        converged(), uplink=Link("p0", 5, UPLINK_MAC, None, True, (ADDR,), (CONNECTED,))
    )
    step = by_key(plan_dpu(cfg(ovn_remote="tcp:192.168.40.111:6642"), state))[("addresses", "brp0")]
    assert step.outcome is Outcome.PENDING
    assert step.desired == "brp0: 192.168.41.127/22"


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (fresh(uplink=None), "uplink netdev 'p0' not found"),
        (fresh(host_pf_rep=None), "'pf0hpf' not found"),
        (
            fresh(bridge_link=Link("brp0", 9, "02:00:00:00:00:01", None, True)),
            "is not an OVS bridge",
        ),
        (
            fresh(ovs=OvsSnapshot(bridges={"br-x": BridgeRow("br-x", "", {}, ("br-x", "p0"))})),
            "p0 is already a port of OVS bridge br-x",
        ),
        (fresh(uplink=Link("p0", 5, UPLINK_MAC, None, True)), "pass --address or --encap-ip"),
        (fresh(vswitchd_running=False), "ovs-vswitchd is not running"),
    ],
)
def test_states_it_refuses(state: DpuState, message: str) -> None:
    with pytest.raises(SetupError, match=message):
        plan_dpu(cfg(), state)


def test_userspace_bridge_tap_with_checksum_offload_gets_it_off() -> None:
    # ovs-vswitchd made the tap anew (a restart, a boot) with the offload on: only that
    restarted = dataclasses.replace(converged("netdev"), bridge_tx_checksum=True)
    plan = plan_dpu(cfg(), restarted)
    [pending] = plan.pending
    assert (pending.kind, pending.target, pending.current, pending.desired) == (
        "tx_checksum",
        "brp0",
        "on",
        "off",
    )
    # a bridge moving to the userspace datapath gets a new tap: whatever the old one had
    moving = dataclasses.replace(converged("system"), bridge_tx_checksum=False)
    step = by_key(plan_dpu(cfg(datapath_type="netdev"), moving))[("tx_checksum", "brp0")]
    assert step.pending and step.current == "-"


def test_vswitchd_not_needed_when_only_config_changes() -> None:
    state = dataclasses.replace(converged(), vswitchd_running=False)
    plan = plan_dpu(cfg(host_node="other-host"), state)
    assert [s.target for s in plan.pending] == ["host-k8s-nodename"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gw_nexthop", "192.168.40.300"),
        ("gw_nexthop", "2001:db8::1"),
        ("encap_ip", "not-an-ip"),
        ("uplink", "a/b"),
        ("uplink", "much-too-long-name0"),
        ("ovn_remote", "192.168.40.111:6642"),
        ("ovn_remote", "tcp:192.168.40.111"),
        ("ovs_db", "/run/openvswitch/db.sock"),
        ("host_node", " "),
        ("datapath_type", "dpdk"),
    ],
)
def test_bad_input_is_rejected(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        cfg(**{field: value})


def test_good_remotes_are_accepted() -> None:
    assert cfg(ovn_remote="tcp:192.0.2.1:6642,ssl:192.0.2.2:6642").ovn_remote
    assert cfg(ovs_db="tcp:[2001:db8::1]:6640").ovs_db == "tcp:[2001:db8::1]:6640"


def test_bridge_hwaddr() -> None:
    assert bridge_hwaddr("0C:42:A1:11:22:33", "system") == "0c:42:a1:11:22:33"
    assert bridge_hwaddr("0c:42:a1:11:22:33", "netdev") == "0e:42:a1:11:22:33"
    assert bridge_hwaddr("a6:d5:c4:27:44:61", "netdev") == "a4:d5:c4:27:44:61"
    for mac in ("00:00:00:00:00:01", "fe:ff:ff:ff:ff:ff"):
        assert int(bridge_hwaddr(mac, "netdev")[:2], 16) & 0x01 == 0  # stays unicast


def test_address_is_assigned_to_the_bridge_when_the_uplink_has_none() -> None:
    """The seed's `ip addr add 192.168.41.127/22 dev brp0` on a DPU whose p0 has no address."""
    bare_uplink = Link("p0", 5, UPLINK_MAC, None, True, (), ())
    plan = plan_dpu(cfg(address="192.168.41.127/22"), fresh(uplink=bare_uplink))
    step = by_key(plan)[("addresses", "brp0")]
    assert (step.current, step.desired, step.outcome) == (
        "-",
        "brp0: 192.168.41.127/22",
        Outcome.PENDING,
    )
    assert plan.assign == ADDR and plan.addresses == []
    assert plan.encap_ip == "192.168.41.127"  # the Geneve endpoint defaults to it
    assert not any("not in a subnet" in w for w in plan.warnings)
    # once on the bridge, nothing to do (the converged state has it there)
    again = plan_dpu(cfg(address="192.168.41.127/22"), dataclasses.replace(converged()))
    assert again.assign is None
    assert not by_key(again)[("addresses", "brp0")].pending


def test_address_already_on_the_uplink_is_moved_not_added_twice() -> None:
    plan = plan_dpu(cfg(address="192.168.41.127/22"), fresh())
    assert plan.addresses == [ADDR] and plan.assign is None
    assert by_key(plan)[("addresses", "brp0")].desired == "brp0: 192.168.41.127/22"


def test_another_address_joins_the_moved_ones() -> None:
    plan = plan_dpu(cfg(address="192.168.41.200/22"), fresh())
    assert plan.addresses == [ADDR]
    assert plan.assign == Address("192.168.41.200", 22, "192.168.43.255")
    assert by_key(plan)[("addresses", "brp0")].desired == (
        "brp0: 192.168.41.127/22, 192.168.41.200/22"
    )


def test_address_must_be_a_cidr() -> None:
    for bad in ("192.168.41.127/33", "not-an-ip", "2001:db8::1/64"):
        with pytest.raises(ValidationError):
            cfg(address=bad)
