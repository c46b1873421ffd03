"""PCI functions under `<root>/bus/pci/devices/<address>`: identity, driver, SR-IOV links."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dpunet.hw.sysfs import Sysfs, list_dir, open_dir

PCI_ADDRESS_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$")
NETWORK_CLASS_PREFIX = "0x02"
# Drivers that hand the device to user space: such a function never has a netdev.
USERSPACE_DRIVERS = frozenset({"vfio-pci", "uio_pci_generic", "igb_uio", "pci-stub"})
_VIRTFN_RE = re.compile(r"^virtfn(\d+)$")


def is_pci_address(text: str) -> bool:
    """True for a full PCI address in the kernel's form, e.g. `0000:02:00.3`."""
    return PCI_ADDRESS_RE.match(text) is not None


def normalize_pci_address(text: str) -> str:
    """`text` in the kernel's lower-case form; ValueError when it is not a full PCI address."""
    candidate = text.strip().lower()
    if not is_pci_address(candidate):
        raise ValueError(f"{text!r} is not a PCI address like 0000:02:00.3")
    return candidate


def pci_function(address: str) -> int:
    """The function number of a PCI address (`0000:02:00.1` -> 1): a PF's index."""
    return int(address.rsplit(".", 1)[1], 16)


@dataclass(frozen=True)
class PciDevice:
    """What sysfs says about one PCI function."""

    address: str
    vendor: str | None
    device: str | None
    class_code: str | None
    driver: str | None
    numa_node: int | None
    netdevs: tuple[str, ...]
    physfn: str | None
    total_vfs: int | None
    num_vfs: int | None
    is_rdma: bool

    @property
    def is_sriov_pf(self) -> bool:
        """The function can create VFs (it has `sriov_totalvfs`)."""
        return self.total_vfs is not None

    @property
    def is_vf(self) -> bool:
        """The function is a VF (it has a `physfn` link)."""
        return self.physfn is not None

    @property
    def is_network(self) -> bool:
        """A network controller: class 0x02xxxx, or without a readable class an SR-IOV
        PF/VF or a function with netdevs."""
        if self.class_code is not None:
            return self.class_code.lower().startswith(NETWORK_CLASS_PREFIX)
        return self.is_sriov_pf or self.is_vf or bool(self.netdevs)

    @property
    def has_userspace_driver(self) -> bool:
        """Bound to vfio-pci or a uio driver (so it has no netdev by design)."""
        return self.driver in USERSPACE_DRIVERS


def read_pci_device(sysfs: Sysfs, address: str) -> PciDevice | None:
    """The PCI function at `address`, or None when there is none."""
    with open_dir(sysfs.pci_device(address)) as d:
        if d is None:
            return None
        numa_node = d.read_int("numa_node")
        return PciDevice(
            address=address,
            vendor=_hex_id(d.read("vendor")),
            device=_hex_id(d.read("device")),
            class_code=d.read("class") or None,
            driver=d.link_name("driver"),
            numa_node=numa_node if numa_node is not None and numa_node >= 0 else None,
            netdevs=tuple(d.list("net")),
            physfn=d.link_name("physfn"),
            total_vfs=d.read_int("sriov_totalvfs"),
            num_vfs=d.read_int("sriov_numvfs"),
            is_rdma=bool(d.list("infiniband")),
        )


def list_pci_devices(sysfs: Sysfs) -> list[PciDevice]:
    """Every PCI function under the root, by address."""
    devices = (read_pci_device(sysfs, address) for address in list_dir(sysfs.pci_devices))
    return [device for device in devices if device is not None]


def virtfn_links(sysfs: Sysfs, pf_address: str) -> dict[int, str]:
    """VF index -> VF PCI address, from the PF's `virtfnN` links, by index."""
    links: dict[int, str] = {}
    with open_dir(sysfs.pci_device(pf_address)) as pf_dir:
        if pf_dir is None:
            return links
        for entry in pf_dir.list("."):
            match = _VIRTFN_RE.match(entry)
            target = pf_dir.link_name(entry) if match else None
            if match and target:
                links[int(match.group(1))] = target
    return dict(sorted(links.items()))


def _hex_id(text: str | None) -> str | None:
    """`0x15b3` -> `15b3` (the form lspci and the device plugin config use)."""
    if not text:
        return None
    text = text.lower()
    return text[2:] if text.startswith("0x") else text
