"""The DPU agent's reconcile: pure selection/resolution/diff, and whole passes against an
in-memory OVS, an in-memory netlink and a BlueField-2 sysfs fixture tree."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from hw_sysfs_tree import DPU_HOST_PF_MACS, SysfsTree, bluefield2_dpu

from dpunet.dpu.config import DpuAgentConfig, Identity, MgmtPortConfig
from dpunet.dpu.metrics import Metrics
from dpunet.dpu.plug import (
    DesiredPort,
    MgmtSpec,
    PlugRequest,
    Reason,
    Reconciler,
    Refusal,
    binding_mac,
    is_ours,
    parse_request,
    plan_links,
    plan_ports,
    resolve,
    wanted,
)
from dpunet.dpu.sb import PortBindingRow, SbSnapshot
from dpunet.hw.representors import list_representors
from dpunet.linux.netlink import Link
from dpunet.ovsdb.local import OvsPort, OvsState
from dpunet.ovsdb.vswitch import IdsChange

PF0_MAC = DPU_HOST_PF_MACS[0]
PF1_MAC = DPU_HOST_PF_MACS[1]
CHASSIS_UUID = "6b4d9323-da0a-4c9c-bef3-e27067b70334"
NAMES = frozenset({"dpu1", "dpu1.example"})


def binding(
    lport: str,
    vf: int | str | None = 1,
    pf_mac: str | None = PF0_MAC,
    chassis: str | None = "dpu1",
    *,
    requested_uuid: str | None = None,
    plug: str | None = "representor",
    mac: Sequence[str] = ("0a:58:c6:12:00:05 198.18.0.5",),
    extra: Mapping[str, str] | None = None,
) -> PortBindingRow:
    options = {"iface-id-ver": f"uid-{lport}"}
    if chassis is not None:
        options["requested-chassis"] = chassis
    if plug is not None:
        options["dpunet-plug"] = plug
    if pf_mac is not None:
        options["dpunet-plug:pf-mac"] = pf_mac
    if vf is not None:
        options["dpunet-plug:vf-num"] = str(vf)
    options.update(extra or {})
    return PortBindingRow(
        logical_port=lport,
        options=options,
        mac=tuple(mac),
        requested_chassis=requested_uuid,
        external_ids={"dpunet:namespace": "ns", "dpunet:pod": lport},
    )


def snapshot(*rows: PortBindingRow, synced: bool = True) -> SbSnapshot:
    return SbSnapshot(synced=synced, chassis_uuid=CHASSIS_UUID, bindings=rows)


# ------------------------------------------------------------------ selection
def test_binding_mac_takes_the_first_ethernet_address() -> None:
    assert binding_mac(["0A:58:C6:12:00:05 198.18.0.5"]) == "0a:58:c6:12:00:05"
    assert binding_mac(["unknown", "router"]) is None
    assert binding_mac([]) is None


def test_a_binding_is_ours_by_option_name_hostname_or_reference() -> None:
    assert is_ours(binding("a", chassis="dpu1"), NAMES, CHASSIS_UUID)
    assert is_ours(binding("a", chassis="dpu1.example"), NAMES, CHASSIS_UUID)
    assert is_ours(binding("a", chassis="dpu1,dpu2"), NAMES, CHASSIS_UUID)  # main chassis
    assert not is_ours(binding("a", chassis="dpu2,dpu1"), NAMES, CHASSIS_UUID)
    assert not is_ours(binding("a", chassis="dpu2"), NAMES, CHASSIS_UUID)
    assert not is_ours(binding("a", chassis=None), NAMES, CHASSIS_UUID)
    assert is_ours(binding("a", chassis=None, requested_uuid=CHASSIS_UUID), NAMES, CHASSIS_UUID)
    assert not is_ours(binding("a", chassis=None, requested_uuid=CHASSIS_UUID), NAMES, None)


def test_wanted_keeps_representor_bindings_of_this_chassis() -> None:
    rows = (
        binding("ns_a", vf=1),
        binding("ns_other_chassis", chassis="dpu2"),
        binding("ns_plain_vif", plug=None),
        binding("ns_ovn_plugged", plug="ovn"),
        binding("ns_bad", vf="x"),
    )
    requests, refusals = wanted(snapshot(*rows), NAMES)
    assert [r.logical_port for r in requests] == ["ns_a"]
    assert requests[0] == PlugRequest(
        logical_port="ns_a",
        pf_mac=PF0_MAC,
        vf_num=1,
        iface_id_ver="uid-ns_a",
        attached_mac="0a:58:c6:12:00:05",
        pod="ns/ns_a",
    )
    assert [(r.logical_port, r.reason) for r in refusals] == [("ns_bad", Reason.BAD_OPTIONS)]


@pytest.mark.parametrize(
    ("vf", "pf_mac", "extra", "fragment"),
    [
        (None, PF0_MAC, {}, "dpunet-plug:vf-num=None"),
        ("-1", PF0_MAC, {}, "is not a VF index"),
        (1, "not-a-mac", {}, "is not a MAC"),
        (1, None, {}, "dpunet-plug:pf-mac=None"),
        (1, PF0_MAC, {"dpunet-plug-mtu-request": "9x"}, "is not an MTU"),
        (1, PF0_MAC, {"dpunet-plug-mtu-request": "40"}, "is not an MTU"),
        ("²", PF0_MAC, {}, "is not a VF index"),  # str.isdigit() is true, int() raises
        ("٣", PF0_MAC, {}, "is not a VF index"),  # int() reads it as 3
        ("9" * 5000, PF0_MAC, {}, "is not a VF index"),  # over int()'s digit limit
        (1, PF0_MAC, {"dpunet-plug-mtu-request": "¹⁴⁰⁰"}, "is not an MTU"),
    ],
)
def test_parse_request_refuses_bad_options(
    vf: str | int | None, pf_mac: str | None, extra: dict[str, str], fragment: str
) -> None:
    parsed = parse_request(binding("ns_a", vf=vf, pf_mac=pf_mac, extra=extra))
    assert isinstance(parsed, Refusal)
    assert parsed.reason is Reason.BAD_OPTIONS and fragment in parsed.detail


def test_parse_request_normalises_the_pf_mac_and_reads_the_mtu() -> None:
    parsed = parse_request(
        binding("ns_a", pf_mac=PF0_MAC.upper(), extra={"dpunet-plug-mtu-request": "1400"})
    )
    assert isinstance(parsed, PlugRequest)
    assert parsed.pf_mac == PF0_MAC and parsed.mtu == 1400


# ----------------------------------------------------------------- resolution
@pytest.fixture
def tree(tmp_path: Path) -> SysfsTree:
    return bluefield2_dpu(tmp_path, vfs_per_pf=3)


def req(lport: str, vf: int, pf_mac: str = PF0_MAC) -> PlugRequest:
    return PlugRequest(
        lport, pf_mac, vf, iface_id_ver=f"uid-{lport}", attached_mac="0a:58:00:00:00:01"
    )


MGMT = MgmtSpec(pf_index=0, vf_index=0, name="ovn-k8s-mp0", iface_id="k8s-host1")


def test_resolve_maps_pf_mac_and_vf_to_the_current_representor(tree: SysfsTree) -> None:
    tree.rename_netdev("pf1vf2", "renamed7")
    desired, refusals = resolve(
        [req("ns_a", 1), req("ns_b", 2, PF1_MAC)], list_representors(tree.sysfs), None, {}
    )
    assert refusals == []
    assert desired["pf0vf1"].iface_id == "ns_a"
    assert desired["renamed7"].iface_id == "ns_b"
    assert desired["pf0vf1"].external_ids() == {
        "iface-id": "ns_a",
        "iface-id-ver": "uid-ns_a",
        "attached-mac": "0a:58:00:00:00:01",
        "dpunet-owned": "true",
    }


def test_resolve_refuses_unknown_pf_missing_vf_and_the_mgmt_vf(tree: SysfsTree) -> None:
    reps = list_representors(tree.sysfs)
    desired, refusals = resolve(
        [req("ns_pf", 1, "02:00:00:00:00:99"), req("ns_vf", 9), req("ns_mgmt", 0)],
        reps,
        MGMT,
        {},
    )
    assert desired == {}  # the mgmt representor is not yet renamed: not desired either
    assert {r.logical_port: r.reason for r in refusals} == {
        "ns_pf": Reason.UNKNOWN_PF,
        "ns_vf": Reason.NO_REPRESENTOR,
        "ns_mgmt": Reason.MGMT_VF,
    }
    assert "02:00:00:00:00:99" in refusals[0].detail and PF0_MAC in refusals[0].detail


def test_resolve_conflict_keeps_the_binding_already_plugged(tree: SysfsTree) -> None:
    reps = list_representors(tree.sysfs)
    requests = [req("ns_new", 1), req("ns_old", 1)]
    desired, refusals = resolve(requests, reps, None, {"pf0vf1": "ns_old"})
    assert desired["pf0vf1"].iface_id == "ns_old"
    assert [(r.logical_port, r.reason) for r in refusals] == [("ns_new", Reason.CONFLICT)]
    desired, refusals = resolve(requests, reps, None, {})
    assert desired == {}
    assert sorted(r.logical_port for r in refusals) == ["ns_new", "ns_old"]


def test_resolve_prefers_external_controller_representors(tmp_path: Path) -> None:
    tree = bluefield2_dpu(tmp_path, vfs_per_pf=2, controller=1)
    desired, refusals = resolve([req("ns_a", 1)], list_representors(tree.sysfs), None, {})
    assert refusals == [] and list(desired) == ["pf0vf1"]


def test_resolve_mgmt_port_once_renamed(tree: SysfsTree) -> None:
    tree.rename_netdev("pf0vf0", "ovn-k8s-mp0")
    mgmt = MgmtSpec(0, 0, "ovn-k8s-mp0", "k8s-host1", attached_mac="0a:58:c6:12:00:02", mtu=1400)
    desired, refusals = resolve([], list_representors(tree.sysfs), mgmt, {})
    assert refusals == []
    assert desired["ovn-k8s-mp0"] == DesiredPort(
        "ovn-k8s-mp0", "k8s-host1", attached_mac="0a:58:c6:12:00:02", mtu=1400, mgmt=True
    )


# ------------------------------------------------------------------- planning
def port(name: str, owned: bool = True, bridge: str = "br-int", **ids: str) -> OvsPort:
    external_ids = {k.replace("_", "-"): v for k, v in ids.items()}
    if owned:
        external_ids["dpunet-owned"] = "true"
    return OvsPort(name, bridge, external_ids, ofport=5)


def want(name: str, lport: str, ver: str | None = None, mac: str | None = None) -> DesiredPort:
    return DesiredPort(name, lport, iface_id_ver=ver, attached_mac=mac)


def test_plan_ports_adds_removes_and_fixes_ids() -> None:
    ports = [
        port("pf0vf1", iface_id="ns_a", iface_id_ver="1", attached_mac="m1", ovn_installed="true"),
        port("pf0vf2", iface_id="ns_gone"),
        port("pf0vf3", iface_id="ns_c", iface_id_ver="old", attached_mac="m3"),
        port("ovn-cp-0", owned=False),
        port("br-int", owned=False),
        port("foreign", owned=False, iface_id="ns_x"),
    ]
    desired = {
        "pf0vf1": want("pf0vf1", "ns_a", "1", "m1"),
        "pf0vf3": want("pf0vf3", "ns_c", "new"),
        "pf0vf4": want("pf0vf4", "ns_d", "4", "m4"),
    }
    plan = plan_ports(desired, ports, "br-int")
    assert plan.remove == ["pf0vf2"]
    assert list(plan.add) == ["pf0vf4"]
    assert plan.update == [IdsChange("pf0vf3", {"iface-id-ver": "new"}, ("attached-mac",))]
    assert plan.refusals == [] and not plan.again


def test_plan_ports_never_touches_ports_it_does_not_own() -> None:
    ports = [port("pf0vf1", owned=False, iface_id="someone-else"), port("x", owned=False)]
    plan = plan_ports({"pf0vf1": want("pf0vf1", "ns_a")}, ports, "br-int")
    assert plan.empty
    assert plan.blocked == {"pf0vf1"}
    assert [(r.logical_port, r.reason) for r in plan.refusals] == [("ns_a", Reason.NOT_OWNED)]


def test_plan_ports_moves_an_owned_port_off_another_bridge_in_two_passes() -> None:
    ports = [port("pf0vf1", bridge="br-other", iface_id="ns_a")]
    plan = plan_ports({"pf0vf1": want("pf0vf1", "ns_a")}, ports, "br-int")
    assert plan.remove == ["pf0vf1"] and plan.add == {} and plan.again


def test_plan_ports_keep_freezes_owned_ports() -> None:
    ports = [port("pf0vf1", iface_id="ns_a"), port("pf0vf2", iface_id="ns_b")]
    plan = plan_ports(
        {"pf0vf2": want("pf0vf2", "ns_b", "new"), "mp0": want("mp0", "k8s-h")},
        ports,
        "br-int",
        keep=["pf0vf1", "pf0vf2"],
    )
    assert plan.remove == [] and plan.update == [] and list(plan.add) == ["mp0"]


def test_plan_links_sets_mtu_and_up_only_where_needed() -> None:
    desired = {
        "a": DesiredPort("a", "la", mtu=1400),
        "b": DesiredPort("b", "lb", mtu=1500),
        "c": DesiredPort("c", "lc"),
        "gone": DesiredPort("gone", "lg", mtu=1400),
    }
    links = {
        "a": Link("a", 10, None, 1500, True),
        "b": Link("b", 11, None, 1500, False),
        "c": Link("c", 12, None, 9000, True),
        "gone": None,
    }
    fixes = plan_links(desired, links)
    assert [(f.name, f.index, f.mtu, f.up) for f in fixes] == [
        ("a", 10, 1400, False),
        ("b", 11, None, True),
    ]


# ---------------------------------------------------------- whole passes (fakes)
class FakeOvs:
    """An in-memory Open_vSwitch database with LocalOvs' interface."""

    def __init__(self, bridges: Iterable[str] = ("br-int", "brp0"), synced: bool = True) -> None:
        self.bridges = set(bridges)
        self.ports: dict[str, OvsPort] = {}
        self.synced = synced
        self.transactions = 0
        self.next_ofport = 1

    def plug(self, name: str, bridge: str = "br-int", **ids: str) -> None:
        self.ports[name] = OvsPort(name, bridge, dict(ids), ofport=self.next_ofport)
        self.next_ofport += 1

    def state(self) -> OvsState:
        return OvsState(
            synced=self.synced,
            external_ids={"system-id": "dpu1"},
            bridges=frozenset(self.bridges),
            ports=tuple(sorted(self.ports.values(), key=lambda p: p.name)),
        )

    def apply(
        self,
        bridge: str,
        remove: Iterable[str] = (),
        add: Mapping[str, Mapping[str, str]] | None = None,
        update: Sequence[IdsChange] = (),
    ) -> int | None:
        remove, add = list(remove), dict(add or {})
        if not (remove or add or update):
            return None
        for name in remove:
            del self.ports[name]
        for name, ids in add.items():
            assert name not in self.ports
            self.plug(name, bridge, **ids)
        for change in update:
            p = self.ports[change.name]
            ids = {k: v for k, v in p.external_ids.items() if k not in change.remove}
            ids.update(change.set)
            self.ports[change.name] = OvsPort(p.name, p.bridge, ids, p.ofport)
        self.transactions += 1
        return self.transactions

    def wait_applied(self, next_cfg: int, timeout: float) -> bool:
        return True


class FakeLinks:
    """Netlink over the fixture tree: renames rename the sysfs entry too."""

    def __init__(self, tree: SysfsTree) -> None:
        self.tree = tree
        self.by_name = {
            name: Link(name, i + 1, None, 1500, name != "pf0vf2")
            for i, name in enumerate(sorted(p.name for p in tree.sysfs.class_net.iterdir()))
        }
        self.calls: list[tuple[str, ...]] = []

    def names(self) -> dict[int, str]:
        return {s.index: s.name for s in self.by_name.values()}

    def state(self, name: str) -> Link | None:
        return self.by_name.get(name)

    def brief(self, name: str) -> Link | None:
        return self.by_name.get(name)

    def _by_index(self, index: int) -> Link:
        return next(s for s in self.by_name.values() if s.index == index)

    def set_mtu(self, index: int, mtu: int) -> None:
        s = self._by_index(index)
        self.by_name[s.name] = Link(s.name, index, None, mtu, s.up)
        self.calls.append(("mtu", s.name, str(mtu)))

    def set_up(self, index: int) -> None:
        s = self._by_index(index)
        self.by_name[s.name] = Link(s.name, index, None, s.mtu, True)
        self.calls.append(("up", s.name))

    def rename(self, index: int, new_name: str) -> None:
        s = self.by_name.pop(self._by_index(index).name)
        self.by_name[new_name] = Link(new_name, index, None, s.mtu, True)
        self.tree.rename_netdev(s.name, new_name)
        self.calls.append(("rename", s.name, new_name))

    def close(self) -> None:
        self.calls.append(("close",))


IDENTITY = Identity("dpu1", "dpu1.example", "host1", ("tcp:192.0.2.10:6642",))


def make(tree: SysfsTree, ovs: FakeOvs, **cfg: object) -> tuple[Reconciler, FakeLinks, Metrics]:
    links = FakeLinks(tree)
    metrics = Metrics()
    rec = Reconciler(
        DpuAgentConfig.model_validate(cfg),
        IDENTITY,
        ovs,  # type: ignore[arg-type]
        tree.sysfs,
        metrics,
        links_factory=lambda: links,  # type: ignore[arg-type,return-value]
    )
    return rec, links, metrics


def owned(ovs: FakeOvs) -> dict[str, dict[str, str]]:
    return {n: dict(p.external_ids) for n, p in ovs.ports.items() if p.owned}


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def test_first_pass_plugs_pods_and_renames_the_mgmt_port(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    ovs.plug("ovn-cp-0", iface_id="x")  # tunnel-like foreign port
    rec, links, metrics = make(tree, ovs)
    sb = snapshot(
        binding("ns_a", vf=1, extra={"dpunet-plug-mtu-request": "1400"}),
        binding("ns_b", vf=2, pf_mac=PF1_MAC),
        binding("ns_bad", vf=9),
        PortBindingRow("k8s-host1", mac=("0a:58:c6:12:00:02 198.18.0.2",)),
    )
    result = rec.reconcile(sb)
    assert ("rename", "pf0vf0", "ovn-k8s-mp0") in links.calls
    assert owned(ovs) == {
        "ovn-k8s-mp0": {
            "iface-id": "k8s-host1",
            "attached-mac": "0a:58:c6:12:00:02",
            "dpunet-owned": "true",
        },
        "pf0vf1": {
            "iface-id": "ns_a",
            "iface-id-ver": "uid-ns_a",
            "attached-mac": "0a:58:c6:12:00:05",
            "dpunet-owned": "true",
        },
        "pf1vf2": {
            "iface-id": "ns_b",
            "iface-id-ver": "uid-ns_b",
            "attached-mac": "0a:58:c6:12:00:05",
            "dpunet-owned": "true",
        },
    }
    assert ("mtu", "pf0vf1", "1400") in links.calls
    assert result.actions == {"rename": 1, "add": 3, "mtu": 1}
    assert [(r.logical_port, r.reason) for r in result.refusals] == [
        ("ns_bad", Reason.NO_REPRESENTOR)
    ]
    assert result.retry and result.owned == 3
    assert sample(metrics, "dpunet_dpu_ports_owned") == 3
    assert sample(metrics, "dpunet_dpu_reconcile_actions_total", action="add") == 3
    assert sample(metrics, "dpunet_dpu_refused_bindings", reason="no-representor") == 1
    assert sample(metrics, "dpunet_dpu_plug_latency_seconds_count") == 3

    # second pass: converged, nothing to do, the refusal is not counted again
    again = rec.reconcile(sb, rescan=False)
    assert again.actions == {} and ovs.transactions == 1
    assert sample(metrics, "dpunet_dpu_refusals_total", reason="no-representor") == 1


def test_a_binding_with_unparsable_options_is_refused_and_the_others_are_plugged(
    tree: SysfsTree,
) -> None:
    ovs = FakeOvs()
    rec, _, metrics = make(tree, ovs)
    sb = snapshot(
        binding("ns_a", vf=1),
        binding("ns_bad", vf="²"),
        binding("ns_b", vf=2),
        PortBindingRow(
            "k8s-host1",
            options={"dpunet-plug-mtu-request": "²"},
            mac=("0a:58:c6:12:00:02 198.18.0.2",),
        ),
    )
    result = rec.reconcile(sb)
    assert set(owned(ovs)) == {"ovn-k8s-mp0", "pf0vf1", "pf0vf2"}
    assert [(r.logical_port, r.reason) for r in result.refusals] == [
        ("k8s-host1", Reason.BAD_OPTIONS),
        ("ns_bad", Reason.BAD_OPTIONS),
    ]
    assert sample(metrics, "dpunet_dpu_refusals_total", reason="bad-options") == 2


def test_restart_after_the_rename_is_idempotent(tree: SysfsTree) -> None:
    tree.rename_netdev("pf0vf0", "ovn-k8s-mp0")
    ovs = FakeOvs()
    ovs.ports["ovn-k8s-mp0"] = OvsPort(
        "ovn-k8s-mp0", "br-int", {"iface-id": "k8s-host1", "dpunet-owned": "true"}, 1
    )
    rec, links, _ = make(tree, ovs)
    result = rec.reconcile(snapshot())
    assert result.actions == {} and not any(c[0] == "rename" for c in links.calls)


def test_mgmt_port_plugged_under_its_old_name_is_unplugged_renamed_and_replugged(
    tree: SysfsTree,
) -> None:
    ovs = FakeOvs()
    ovs.ports["pf0vf0"] = OvsPort(
        "pf0vf0", "br-int", {"iface-id": "k8s-host1", "dpunet-owned": "true"}, 1
    )
    rec, _, _ = make(tree, ovs)
    result = rec.reconcile(snapshot())
    assert list(owned(ovs)) == ["ovn-k8s-mp0"]
    assert result.actions == {"remove": 1, "rename": 1, "add": 1}


def test_mgmt_rename_refused_when_the_old_name_is_someone_elses_port(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    ovs.ports["pf0vf0"] = OvsPort("pf0vf0", "br-int", {"iface-id": "theirs"}, 1)
    rec, links, _ = make(tree, ovs)
    result = rec.reconcile(snapshot())
    assert "pf0vf0" in ovs.ports and not owned(ovs)
    assert [(r.logical_port, r.reason) for r in result.refusals] == [
        ("k8s-host1", Reason.NOT_OWNED)
    ]
    assert not any(c[0] == "rename" for c in links.calls)


def test_unsynced_sb_changes_and_removes_nothing(tree: SysfsTree) -> None:
    tree.rename_netdev("pf0vf0", "ovn-k8s-mp0")
    ovs = FakeOvs()
    ovs.ports["pf0vf1"] = OvsPort(
        "pf0vf1", "br-int", {"iface-id": "ns_a", "dpunet-owned": "true"}, 2
    )
    rec, _, _ = make(tree, ovs)
    result = rec.reconcile(SbSnapshot(synced=False, chassis_uuid=None))
    assert set(owned(ovs)) == {"pf0vf1", "ovn-k8s-mp0"}  # mgmt added, pod port kept
    assert result.waiting_for == "sb" and result.retry


def test_bindings_gone_or_moved_are_unplugged_foreign_ports_stay(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    ovs.plug("foreign", iface_id="ns_a")
    rec, _, _ = make(tree, ovs, mgmt_port={"enabled": False})
    rec.reconcile(snapshot(binding("ns_a", vf=1), binding("ns_b", vf=2)))
    assert set(owned(ovs)) == {"pf0vf1", "pf0vf2"}
    rec.reconcile(snapshot(binding("ns_a", vf=1, chassis="dpu2")), rescan=False)
    assert set(owned(ovs)) == set() and "foreign" in ovs.ports


def test_a_renamed_representor_is_replugged_under_its_new_name(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    rec, links, _ = make(tree, ovs, mgmt_port={"enabled": False})
    sb = snapshot(binding("ns_a", vf=1))
    rec.reconcile(sb)
    links.rename(links.state("pf0vf1").index, "eth9")  # type: ignore[union-attr]
    rec.reconcile(sb, rescan=False)  # cached representors follow the rename
    assert list(owned(ovs)) == ["eth9"]


def test_plug_mode_ovn_only_keeps_the_mgmt_port(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    ovs.ports["pf0vf1"] = OvsPort(
        "pf0vf1", "br-int", {"iface-id": "ns_a", "dpunet-owned": "true"}, 2
    )
    rec, _, _ = make(tree, ovs, plug_mode="ovn")
    rec.reconcile(snapshot(binding("ns_a", vf=1)))
    assert list(owned(ovs)) == ["ovn-k8s-mp0"]


def test_waits_for_ovs_and_for_br_int_without_changing_anything(tree: SysfsTree) -> None:
    rec, links, _ = make(tree, FakeOvs(synced=False))
    assert rec.reconcile(snapshot(binding("ns_a"))).waiting_for == "ovs"
    ovs = FakeOvs(bridges=["brp0"])
    rec, links, _ = make(tree, ovs)
    result = rec.reconcile(snapshot(binding("ns_a")))
    assert result.waiting_for == "bridge br-int" and result.retry
    assert ovs.ports == {} and links.calls == []


def test_mgmt_port_config(tree: SysfsTree) -> None:
    ovs = FakeOvs()
    rec, links, _ = make(
        tree, ovs, mgmt_port=MgmtPortConfig(vf_index=2, name="mgmt0", mtu=1400).model_dump()
    )
    rec.reconcile(snapshot())
    assert ("rename", "pf0vf2", "mgmt0") in links.calls
    assert ("mtu", "mgmt0", "1400") in links.calls
    assert owned(ovs)["mgmt0"]["iface-id"] == "k8s-host1"


def test_the_mgmt_binding_with_plug_options_is_served_as_the_management_port(
    tree: SysfsTree,
) -> None:
    ovs = FakeOvs()
    rec, _, _ = make(tree, ovs)
    mgmt_row = binding(
        "k8s-host1",
        vf=0,
        mac=("0a:58:c6:12:00:02 198.18.0.2",),
        extra={"dpunet-plug-mtu-request": "1400", "iface-id-ver": "v7"},
    )
    result = rec.reconcile(snapshot(mgmt_row))
    assert result.refusals == []
    assert owned(ovs) == {
        "ovn-k8s-mp0": {
            "iface-id": "k8s-host1",
            "iface-id-ver": "v7",
            "attached-mac": "0a:58:c6:12:00:02",
            "dpunet-owned": "true",
        }
    }
    # without a management port of its own, the agent plugs that binding like any other
    ovs = FakeOvs()
    rec, _, _ = make(tree, ovs, mgmt_port={"enabled": False})
    rec.reconcile(snapshot(mgmt_row))
    assert owned(ovs)["ovn-k8s-mp0"]["iface-id"] == "k8s-host1"


class BackloggedLinks(FakeLinks):
    """FakeLinks that, like pyroute2's IPRoute, keeps something of every request in a
    queue nobody reads, for as long as the session is open."""

    opened: ClassVar[list[BackloggedLinks]] = []

    def __init__(self, tree: SysfsTree) -> None:
        super().__init__(tree)
        self.backlog: list[str] = []
        self.closed = False
        BackloggedLinks.opened.append(self)

    def names(self) -> dict[int, str]:
        self.backlog.append("names")
        return super().names()

    def state(self, name: str) -> Link | None:
        self.backlog.append(name)
        return super().state(name)

    def brief(self, name: str) -> Link | None:
        self.backlog.append(name)
        return super().brief(name)

    def close(self) -> None:
        self.closed = True


def test_no_netlink_session_outlives_its_pass(tree: SysfsTree) -> None:
    """What a netlink session accumulates stays bounded by one pass: 200 pod add/delete
    cycles (a pass each way) leave no session open and none that saw more than a pass."""
    BackloggedLinks.opened = []
    ovs = FakeOvs()
    rec = Reconciler(
        DpuAgentConfig.model_validate({}),
        IDENTITY,
        ovs,  # type: ignore[arg-type]
        tree.sysfs,
        Metrics(),
        links_factory=lambda: BackloggedLinks(tree),  # type: ignore[arg-type,return-value]
    )
    mgmt = PortBindingRow("k8s-host1", mac=("0a:58:c6:12:00:02 198.18.0.2",))
    for cycle in range(200):
        rec.reconcile(snapshot(mgmt, binding(f"ns_p{cycle}", vf=1)), rescan=False)
        assert owned(ovs)["pf0vf1"]["iface-id"] == f"ns_p{cycle}"
        rec.reconcile(snapshot(mgmt), rescan=False)
    assert len(BackloggedLinks.opened) == 400
    assert all(s.closed for s in BackloggedLinks.opened)
    assert max(len(s.backlog) for s in BackloggedLinks.opened) <= 10  # one pass's requests
    assert "pf0vf1" not in owned(ovs)  # the last pod went


def test_a_failed_pass_closes_its_netlink_session_too(tree: SysfsTree) -> None:
    class Broken(FakeLinks):
        def names(self) -> dict[int, str]:
            raise RuntimeError("netlink went away")

    links = Broken(tree)
    rec = Reconciler(
        DpuAgentConfig.model_validate({}),
        IDENTITY,
        FakeOvs(),  # type: ignore[arg-type]
        tree.sysfs,
        Metrics(),
        links_factory=lambda: links,  # type: ignore[arg-type,return-value]
    )
    with pytest.raises(RuntimeError):
        rec.reconcile(snapshot())
    assert links.calls == [("close",)] and rec._links is None
