"""Host side: SR-IOV physical functions and their virtual functions.

Facts used: a PF has `sriov_totalvfs`, `sriov_numvfs` and `virtfnN -> ../<vf address>`
links; a VF has `physfn -> ../<pf address>`. VF index = N of the `virtfnN` link that
points at the VF; PF index = PCI function number of the PF (BlueField's `pf<N>`). A VF
has a netdev under `net/` only while that netdev is in this network namespace and the
VF is bound to a kernel network driver.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpunet.hw.netdev import Netdev, netdev_mac, netdev_pci_address, read_netdev
from dpunet.hw.pci import (
    USERSPACE_DRIVERS,
    PciDevice,
    list_pci_devices,
    pci_function,
    read_pci_device,
    virtfn_links,
)
from dpunet.hw.representors import RepresentorKind, parse_phys_port_name
from dpunet.hw.sysfs import Sysfs, list_dir, read_attr


@dataclass(frozen=True)
class PhysicalFunction:
    """An SR-IOV capable PCI function and its netdev (when in this namespace)."""

    address: str
    index: int
    netdev: str | None
    mac: str | None
    operstate: str | None
    carrier: bool | None
    mtu: int | None
    vendor: str | None
    device: str | None
    driver: str | None
    numa_node: int | None
    total_vfs: int
    num_vfs: int


@dataclass(frozen=True)
class VirtualFunction:
    """One VF with its place on its PF and its netdev (when in this namespace)."""

    address: str
    index: int
    pf_address: str
    pf_index: int
    pf_netdev: str | None
    pf_mac: str | None
    netdev: str | None
    mac: str | None
    operstate: str | None
    carrier: bool | None
    vendor: str | None
    device: str | None
    driver: str | None
    numa_node: int | None

    @property
    def netdev_elsewhere(self) -> bool:
        """Bound to a kernel network driver but its netdev is not in this namespace
        (typically moved into a pod)."""
        return (
            self.netdev is None and self.driver is not None and self.driver not in USERSPACE_DRIVERS
        )


def primary_netdev(sysfs: Sysfs, device: PciDevice) -> str | None:
    """The netdev that stands for `device`: its only one, else (switchdev, where the
    representors also hang below the PF) the uplink `p<N>`, else one without a port name."""
    if len(device.netdevs) <= 1:
        return device.netdevs[0] if device.netdevs else None
    net_dir = sysfs.pci_device(device.address) / "net"
    port_names = {name: read_attr(net_dir / name / "phys_port_name") for name in device.netdevs}
    uplinks = [
        name
        for name, port in port_names.items()
        if port and parse_phys_port_name(port).kind is RepresentorKind.UPLINK
    ]
    unnamed = [name for name, port in port_names.items() if not port]
    return (uplinks or unnamed or list(device.netdevs))[0]


def read_pf(sysfs: Sysfs, address: str) -> PhysicalFunction | None:
    """The SR-IOV PF at `address`, or None when there is no such SR-IOV capable function."""
    device = read_pci_device(sysfs, address)
    if device is None or device.total_vfs is None:
        return None
    name = primary_netdev(sysfs, device)
    netdev = read_netdev(sysfs, name) if name else None
    return PhysicalFunction(
        address=device.address,
        index=pci_function(device.address),
        netdev=name,
        mac=netdev.mac if netdev else None,
        operstate=netdev.operstate if netdev else None,
        carrier=netdev.carrier if netdev else None,
        mtu=netdev.mtu if netdev else None,
        vendor=device.vendor,
        device=device.device,
        driver=device.driver,
        numa_node=device.numa_node,
        total_vfs=device.total_vfs,
        num_vfs=device.num_vfs or 0,
    )


def list_pfs(sysfs: Sysfs) -> list[PhysicalFunction]:
    """Every SR-IOV capable PCI function, by address."""
    pfs = (read_pf(sysfs, device.address) for device in list_pci_devices(sysfs))
    return [pf for pf in pfs if pf is not None]


def list_vfs(sysfs: Sysfs, pf: PhysicalFunction) -> list[VirtualFunction]:
    """The VFs of `pf`, by VF index."""
    vfs = (
        _read_vf(sysfs, pf, index, address)
        for index, address in virtfn_links(sysfs, pf.address).items()
    )
    return [vf for vf in vfs if vf is not None]


def list_all_vfs(sysfs: Sysfs) -> list[VirtualFunction]:
    """The VFs of every PF, by PF address then VF index."""
    return [vf for pf in list_pfs(sysfs) for vf in list_vfs(sysfs, pf)]


def find_pf(sysfs: Sysfs, netdev: str) -> PhysicalFunction | None:
    """The PF whose netdev is `netdev`, or None (also for a representor hanging below a PF)."""
    address = netdev_pci_address(sysfs, netdev)
    pf = read_pf(sysfs, address) if address else None
    return pf if pf is not None and pf.netdev == netdev else None


def find_vf_by_pci(sysfs: Sysfs, address: str) -> VirtualFunction | None:
    """The VF at PCI `address`, wherever its netdev is; None when it is not a VF."""
    device = read_pci_device(sysfs, address)
    if device is None or device.physfn is None:
        return None
    pf = read_pf(sysfs, device.physfn)
    if pf is None:
        return None
    index = next((n for n, vf in virtfn_links(sysfs, pf.address).items() if vf == address), None)
    return _read_vf(sysfs, pf, index, address) if index is not None else None


def function_netdev(sysfs: Sysfs, address: str) -> str | None:
    """The netdev of the PCI function at `address` while it is in this namespace, else None
    (a lighter `find_vf_by_pci(...).netdev`: one directory listing in the common case)."""
    names = list_dir(sysfs.pci_device(address) / "net")
    if len(names) <= 1:
        return names[0] if names else None
    device = read_pci_device(sysfs, address)
    return primary_netdev(sysfs, device) if device is not None else None


def find_vf_by_netdev(sysfs: Sysfs, netdev: str) -> VirtualFunction | None:
    """The VF whose netdev (in this namespace) is `netdev`, or None."""
    address = netdev_pci_address(sysfs, netdev)
    return find_vf_by_pci(sysfs, address) if address else None


def find_vf(sysfs: Sysfs, pf_netdev: str, index: int) -> VirtualFunction | None:
    """VF number `index` of the PF whose netdev is `pf_netdev`, or None."""
    pf = find_pf(sysfs, pf_netdev)
    if pf is None:
        return None
    address = virtfn_links(sysfs, pf.address).get(index)
    return _read_vf(sysfs, pf, index, address) if address else None


def pf_mac(sysfs: Sysfs, pf_netdev: str) -> str | None:
    """The MAC address of the PF netdev `pf_netdev` (lower case), or None."""
    return netdev_mac(sysfs, pf_netdev)


def _read_vf(
    sysfs: Sysfs, pf: PhysicalFunction, index: int, address: str
) -> VirtualFunction | None:
    device = read_pci_device(sysfs, address)
    if device is None:
        return None
    name = primary_netdev(sysfs, device)
    netdev: Netdev | None = read_netdev(sysfs, name) if name else None
    return VirtualFunction(
        address=address,
        index=index,
        pf_address=pf.address,
        pf_index=pf.index,
        pf_netdev=pf.netdev,
        pf_mac=pf.mac,
        netdev=name,
        mac=netdev.mac if netdev else None,
        operstate=netdev.operstate if netdev else None,
        carrier=netdev.carrier if netdev else None,
        vendor=device.vendor,
        device=device.device,
        driver=device.driver,
        numa_node=device.numa_node,
    )
