"""DPU side: representors and host PF MACs on BlueField-2 fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hw_sysfs_tree import DPU_HOST_PF_MACS, DPU_SWITCH_IDS, SysfsTree, bluefield2_dpu, seed_host

from dpunet.hw.host import find_pf, list_pfs
from dpunet.hw.representors import (
    AmbiguousRepresentorError,
    PortName,
    RepresentorKind,
    find_host_pf_representor,
    find_uplink,
    find_vf_representor,
    find_vf_representor_by_pf_mac,
    host_pf_macs,
    list_representors,
    parse_phys_port_name,
    parse_smart_nic_config,
)


@pytest.fixture
def dpu(tmp_path: Path) -> SysfsTree:
    return bluefield2_dpu(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p0", PortName(RepresentorKind.UPLINK, port_index=0)),
        ("p1", PortName(RepresentorKind.UPLINK, port_index=1)),
        ("pf0", PortName(RepresentorKind.HOST_PF, pf_index=0)),
        ("c1pf0", PortName(RepresentorKind.HOST_PF, controller=1, pf_index=0)),
        ("pf1vf7", PortName(RepresentorKind.VF, pf_index=1, vf_index=7)),
        ("c1pf0vf3", PortName(RepresentorKind.VF, controller=1, pf_index=0, vf_index=3)),
        ("pf0sf4", PortName(RepresentorKind.OTHER)),
        ("", PortName(RepresentorKind.OTHER)),
        ("p0vf1", PortName(RepresentorKind.OTHER)),
    ],
)
def test_parse_phys_port_name(text: str, expected: PortName) -> None:
    assert parse_phys_port_name(text) == expected


def test_two_pf_dpu_representors(dpu: SysfsTree) -> None:
    reps = {rep.netdev: rep for rep in list_representors(dpu.sysfs)}
    assert sorted(reps) == [
        "p0",
        "p1",
        "pf0hpf",
        "pf0vf0",
        "pf0vf1",
        "pf0vf2",
        "pf1hpf",
        "pf1vf0",
        "pf1vf1",
        "pf1vf2",
    ]  # tmfifo_net0 has no phys_switch_id: not a representor
    assert (reps["p1"].kind, reps["p1"].port_index, reps["p1"].phys_switch_id) == (
        RepresentorKind.UPLINK,
        1,
        DPU_SWITCH_IDS[1],
    )
    assert (reps["pf1hpf"].kind, reps["pf1hpf"].pf_index) == (RepresentorKind.HOST_PF, 1)
    assert (reps["pf1vf2"].kind, reps["pf1vf2"].pf_index, reps["pf1vf2"].vf_index) == (
        RepresentorKind.VF,
        1,
        2,
    )
    assert reps["pf1vf2"].pci_address == "0000:03:00.1"
    assert reps["pf0vf1"].host_pf_mac == DPU_HOST_PF_MACS[0]
    assert reps["pf1vf1"].host_pf_mac == DPU_HOST_PF_MACS[1]


def test_dpu_pfs_are_the_uplinks_not_representors(dpu: SysfsTree) -> None:
    assert [(pf.address, pf.netdev, pf.index) for pf in list_pfs(dpu.sysfs)] == [
        ("0000:03:00.0", "p0", 0),
        ("0000:03:00.1", "p1", 1),
    ]
    assert find_pf(dpu.sysfs, "pf0hpf") is None


def test_host_pf_macs_from_smart_nic_config(dpu: SysfsTree) -> None:
    assert host_pf_macs(dpu.sysfs) == DPU_HOST_PF_MACS


def test_parse_smart_nic_config_format() -> None:
    text = "MAC        : 0c:42:a1:de:cf:7c\nMaxTxRate  : 0\nState      : Follow\n"
    assert parse_smart_nic_config(text) == {
        "MAC": "0c:42:a1:de:cf:7c",
        "MaxTxRate": "0",
        "State": "Follow",
    }


def test_resolve_vf_representor_by_index_and_by_pf_mac(dpu: SysfsTree) -> None:
    rep = find_vf_representor(dpu.sysfs, 1, 2)
    assert rep is not None
    assert rep.netdev == "pf1vf2"
    by_mac = find_vf_representor_by_pf_mac(dpu.sysfs, DPU_HOST_PF_MACS[1].upper(), 2)
    assert by_mac == rep
    assert find_vf_representor(dpu.sysfs, 0, 9) is None
    assert find_vf_representor_by_pf_mac(dpu.sysfs, "02:00:00:00:00:99", 0) is None


def test_host_pf_and_uplink_lookup(dpu: SysfsTree) -> None:
    host_pf = find_host_pf_representor(dpu.sysfs, 0)
    uplink = find_uplink(dpu.sysfs, 1)
    assert host_pf is not None
    assert uplink is not None
    assert (host_pf.netdev, uplink.netdev) == ("pf0hpf", "p1")
    assert find_uplink(dpu.sysfs, 2) is None


def test_renamed_representor_resolves_to_current_name(dpu: SysfsTree) -> None:
    dpu.rename_netdev("pf0vf0", "ovn-k8s-mp0")
    rep = find_vf_representor_by_pf_mac(dpu.sysfs, DPU_HOST_PF_MACS[0], 0)
    assert rep is not None
    assert (rep.netdev, rep.phys_port_name) == ("ovn-k8s-mp0", "pf0vf0")
    assert find_vf_representor(dpu.sysfs, 0, 0) == rep


def test_controller_naming(tmp_path: Path) -> None:
    dpu = bluefield2_dpu(tmp_path, controller=1)
    rep = find_vf_representor(dpu.sysfs, 0, 2)
    assert rep is not None
    assert (rep.netdev, rep.phys_port_name, rep.controller) == ("pf0vf2", "c1pf0vf2", 1)
    host_pf = find_host_pf_representor(dpu.sysfs, 1)
    assert host_pf is not None
    assert host_pf.phys_port_name == "c1pf1"


def test_c1pf0vf3_preferred_over_local_pf0vf3(dpu: SysfsTree) -> None:
    # Newer kernels show the host's VF 3 as c1pf0vf3 and the DPU's own VF 3 as pf0vf3.
    switch = DPU_SWITCH_IDS[0]
    dpu.netdev("pf0vf3", pci="0000:03:00.0", phys_port_name="pf0vf3", phys_switch_id=switch)
    dpu.netdev("eth9", pci="0000:03:00.0", phys_port_name="c1pf0vf3", phys_switch_id=switch)
    rep = find_vf_representor(dpu.sysfs, 0, 3)
    assert rep is not None
    assert (rep.netdev, rep.controller, rep.host_pf_mac) == ("eth9", 1, DPU_HOST_PF_MACS[0])


def test_two_external_controllers_are_ambiguous(dpu: SysfsTree) -> None:
    switch = DPU_SWITCH_IDS[0]
    dpu.netdev("rep_a", pci="0000:03:00.0", phys_port_name="c1pf0vf5", phys_switch_id=switch)
    dpu.netdev("rep_b", pci="0000:03:00.0", phys_port_name="c2pf0vf5", phys_switch_id=switch)
    with pytest.raises(AmbiguousRepresentorError, match=r"rep_a \(c1pf0vf5\), rep_b"):
        find_vf_representor(dpu.sysfs, 0, 5)


def test_missing_smart_nic_config_means_no_host_pf_mac(tmp_path: Path) -> None:
    tree = SysfsTree(tmp_path)
    tree.sriov_pf("0000:03:00.0", None, total_vfs=8)
    tree.netdev("p0", pci="0000:03:00.0", phys_port_name="p0", phys_switch_id="aa")
    tree.netdev("pf0vf0", pci="0000:03:00.0", phys_port_name="pf0vf0", phys_switch_id="aa")
    assert host_pf_macs(tree.sysfs) == {}
    rep = find_vf_representor(tree.sysfs, 0, 0)
    assert rep is not None
    assert rep.host_pf_mac is None


def test_host_side_has_no_representors(tmp_path: Path) -> None:
    assert list_representors(seed_host(tmp_path).sysfs) == []
