"""Host side: PFs and VFs on sysfs fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest
from hw_sysfs_tree import SEED_PF, SEED_PF_ADDRESS, SEED_PF_MAC, SysfsTree, ari_address, seed_host

from dpunet.hw.host import (
    find_pf,
    find_vf,
    find_vf_by_netdev,
    find_vf_by_pci,
    list_all_vfs,
    list_pfs,
    list_vfs,
    pf_mac,
)
from dpunet.hw.netdev import read_netdev
from dpunet.hw.pci import normalize_pci_address, pci_function, read_pci_device


@pytest.fixture
def host(tmp_path: Path) -> SysfsTree:
    return seed_host(tmp_path)


def test_seed_host_pf(host: SysfsTree) -> None:
    [pf] = list_pfs(host.sysfs)
    assert pf.address == SEED_PF_ADDRESS
    assert pf.netdev == SEED_PF
    assert pf.index == 0
    assert (pf.total_vfs, pf.num_vfs) == (16, 3)
    assert pf.mac == SEED_PF_MAC
    assert (pf.vendor, pf.device, pf.driver) == ("15b3", "101d", "mlx5_core")
    assert pf.operstate == "up"
    assert pf.carrier is True


def test_seed_host_vfs(host: SysfsTree) -> None:
    [pf] = list_pfs(host.sysfs)
    vfs = list_vfs(host.sysfs, pf)
    assert [vf.address for vf in vfs] == ["0000:02:00.3", "0000:02:00.4", "0000:02:00.5"]
    assert [vf.index for vf in vfs] == [0, 1, 2]
    assert [vf.netdev for vf in vfs] == ["enp2s0f0v0", "enp2s0f0v1", "enp2s0f0v2"]
    for vf in vfs:
        assert (vf.vendor, vf.device, vf.driver, vf.numa_node) == ("15b3", "101e", "mlx5_core", 0)
        assert (vf.pf_address, vf.pf_index, vf.pf_netdev, vf.pf_mac) == (
            SEED_PF_ADDRESS,
            0,
            SEED_PF,
            SEED_PF_MAC,
        )
        assert vf.operstate == "up"
        assert not vf.netdev_elsewhere
    assert list_all_vfs(host.sysfs) == vfs


def test_find_vf_three_ways(host: SysfsTree) -> None:
    by_pci = find_vf_by_pci(host.sysfs, "0000:02:00.4")
    assert by_pci is not None
    assert (by_pci.index, by_pci.netdev) == (1, "enp2s0f0v1")
    assert find_vf_by_netdev(host.sysfs, "enp2s0f0v1") == by_pci
    assert find_vf(host.sysfs, SEED_PF, 1) == by_pci


def test_find_misses_are_none(host: SysfsTree) -> None:
    assert find_vf_by_pci(host.sysfs, SEED_PF_ADDRESS) is None  # a PF, not a VF
    assert find_vf_by_pci(host.sysfs, "0000:09:00.0") is None
    assert find_vf_by_netdev(host.sysfs, "eno1") is None
    assert find_vf_by_netdev(host.sysfs, "lo") is None
    assert find_vf_by_netdev(host.sysfs, "nope") is None
    assert find_vf(host.sysfs, SEED_PF, 3) is None
    assert find_vf(host.sysfs, "eno1", 0) is None
    assert find_pf(host.sysfs, "enp2s0f0v0") is None


def test_pf_mac(host: SysfsTree) -> None:
    assert pf_mac(host.sysfs, SEED_PF) == SEED_PF_MAC
    assert pf_mac(host.sysfs, "nope") is None


def test_vf_bound_to_vfio_has_no_netdev(tmp_path: Path) -> None:
    tree = seed_host(tmp_path, num_vfs=2)
    tree.vf(SEED_PF_ADDRESS, 2, "0000:02:00.5", driver="vfio-pci")
    vf = find_vf(tree.sysfs, SEED_PF, 2)
    assert vf is not None
    assert (vf.driver, vf.netdev, vf.mac, vf.operstate) == ("vfio-pci", None, None, None)
    assert not vf.netdev_elsewhere


def test_vf_netdev_in_other_netns(host: SysfsTree) -> None:
    host.move_to_other_netns("enp2s0f0v1")
    assert not (host.device_dir("0000:02:00.4") / "net").exists()
    vf = find_vf_by_pci(host.sysfs, "0000:02:00.4")
    assert vf is not None
    assert (vf.index, vf.netdev, vf.driver) == (1, None, "mlx5_core")
    assert vf.netdev_elsewhere
    assert find_vf_by_netdev(host.sysfs, "enp2s0f0v1") is None
    assert [v.index for v in list_all_vfs(host.sysfs)] == [0, 1, 2]


def test_ari_addresses_cross_device_boundary(tmp_path: Path) -> None:
    assert [ari_address(SEED_PF_ADDRESS, 3, 1, n) for n in (0, 4, 5)] == [
        "0000:02:00.3",
        "0000:02:00.7",
        "0000:02:01.0",
    ]
    tree = seed_host(tmp_path, num_vfs=6)
    vf5 = find_vf(tree.sysfs, SEED_PF, 5)
    assert vf5 is not None
    assert vf5.address == "0000:02:01.0"
    assert find_vf_by_pci(tree.sysfs, "0000:02:01.0") == vf5


def test_second_pf_index_is_its_pci_function(tmp_path: Path) -> None:
    tree = seed_host(tmp_path, num_vfs=1)
    tree.sriov_pf("0000:02:00.1", "enp2s0f1np1", total_vfs=16)
    tree.vf("0000:02:00.1", 0, "0000:02:02.0", netdev="enp2s0f1v0")
    pfs = list_pfs(tree.sysfs)
    assert [(pf.netdev, pf.index, pf.num_vfs) for pf in pfs] == [
        (SEED_PF, 0, 1),
        ("enp2s0f1np1", 1, 1),
    ]
    vf = find_vf(tree.sysfs, "enp2s0f1np1", 0)
    assert vf is not None
    assert (vf.pf_index, vf.address) == (1, "0000:02:02.0")


def test_numa_node_minus_one_means_unknown(host: SysfsTree) -> None:
    (host.device_dir("0000:02:00.3") / "numa_node").write_text("-1\n")
    device = read_pci_device(host.sysfs, "0000:02:00.3")
    assert device is not None
    assert device.numa_node is None


def test_netdev_read_from_class_net(host: SysfsTree) -> None:
    netdev = read_netdev(host.sysfs, SEED_PF)
    assert netdev is not None
    assert netdev.pci_address == SEED_PF_ADDRESS
    assert (netdev.mtu, netdev.link_type, netdev.phys_port_name, netdev.phys_switch_id) == (
        1500,
        "ether",
        None,
        None,
    )
    lo = read_netdev(host.sysfs, "lo")
    assert lo is not None
    assert (lo.pci_address, lo.link_type, lo.carrier) == (None, "loopback", None)
    assert read_netdev(host.sysfs, "absent") is None


def test_down_link_has_no_carrier_file(host: SysfsTree) -> None:
    host.netdev("enp9s0", operstate="down")
    netdev = read_netdev(host.sysfs, "enp9s0")
    assert netdev is not None
    assert (netdev.operstate, netdev.carrier) == ("down", None)


def test_pci_address_helpers() -> None:
    assert normalize_pci_address(" 0000:3B:02.6 ") == "0000:3b:02.6"
    assert pci_function("0000:02:00.1") == 1
    for bad in ("02:00.0", "0000:02:00", "0000:02:20.0", "0000:02:00.8", "eth0"):
        with pytest.raises(ValueError, match="not a PCI address"):
            normalize_pci_address(bad)
