"""Netdevs as sysfs shows them: `<root>/class/net/<name>/...` (current network namespace only)."""

from __future__ import annotations

from dataclasses import dataclass

from dpunet.hw.pci import is_pci_address
from dpunet.hw.sysfs import Sysfs, link_name, list_dir, read_attr, read_int_attr

# ARPHRD_* numbers of `<netdev>/type`, named as netlink/iproute2 name them.
LINK_TYPE_NAMES = {1: "ether", 32: "infiniband", 772: "loopback", 65534: "none"}


@dataclass(frozen=True)
class Netdev:
    """One netdev's identity and link state."""

    name: str
    ifindex: int | None
    mac: str | None
    mtu: int | None
    operstate: str | None
    carrier: bool | None
    link_type: str | None
    pci_address: str | None
    phys_port_name: str | None
    phys_switch_id: str | None


def list_netdev_names(sysfs: Sysfs) -> list[str]:
    """Names of all netdevs in this network namespace, sorted."""
    return list_dir(sysfs.class_net)


def read_netdev(sysfs: Sysfs, name: str) -> Netdev | None:
    """The netdev `name`, or None when it is not in this network namespace."""
    path = sysfs.netdev(name)
    if not path.exists():
        return None
    carrier = read_int_attr(path / "carrier")
    arphrd = read_int_attr(path / "type")
    return Netdev(
        name=name,
        ifindex=read_int_attr(path / "ifindex"),
        mac=_lower(read_attr(path / "address")),
        mtu=read_int_attr(path / "mtu"),
        operstate=read_attr(path / "operstate"),
        carrier=None if carrier is None else carrier == 1,
        link_type=None if arphrd is None else LINK_TYPE_NAMES.get(arphrd, str(arphrd)),
        pci_address=netdev_pci_address(sysfs, name),
        phys_port_name=read_attr(path / "phys_port_name") or None,
        phys_switch_id=read_attr(path / "phys_switch_id") or None,
    )


def netdev_mac(sysfs: Sysfs, name: str) -> str | None:
    """The MAC address of netdev `name` (lower case), or None."""
    return _lower(read_attr(sysfs.netdev(name) / "address"))


def netdev_pci_address(sysfs: Sysfs, name: str) -> str | None:
    """The PCI address of the device behind netdev `name`, or None for virtual/absent ones."""
    parent = link_name(sysfs.netdev(name) / "device")
    return parent if parent is not None and is_pci_address(parent) else None


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None
