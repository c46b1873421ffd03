"""Netdevs as sysfs shows them: `<root>/class/net/<name>/...` (current network namespace only)."""

from __future__ import annotations

from dataclasses import dataclass

from dpunet.hw.pci import is_pci_address
from dpunet.hw.sysfs import Sysfs, link_name, list_dir, open_dir, read_attr, read_int_attr

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
    with open_dir(sysfs.netdev(name)) as d:
        if d is None:
            return None
        carrier = d.read_int("carrier")
        parent = d.link_name("device")
        return Netdev(
            name=name,
            ifindex=d.read_int("ifindex"),
            mac=_lower(d.read("address")),
            mtu=d.read_int("mtu"),
            operstate=d.read("operstate"),
            carrier=None if carrier is None else carrier == 1,
            link_type=_link_type(d.read_int("type")),
            pci_address=parent if parent is not None and is_pci_address(parent) else None,
            phys_port_name=d.read("phys_port_name") or None,
            phys_switch_id=d.read("phys_switch_id") or None,
        )


def netdev_link_type(sysfs: Sysfs, name: str) -> str | None:
    """The link type of netdev `name` (`ether`, `infiniband`, ...), or None when absent."""
    return _link_type(read_int_attr(sysfs.netdev(name) / "type"))


def _link_type(arphrd: int | None) -> str | None:
    return None if arphrd is None else LINK_TYPE_NAMES.get(arphrd, str(arphrd))


def netdev_mac(sysfs: Sysfs, name: str) -> str | None:
    """The MAC address of netdev `name` (lower case), or None."""
    return _lower(read_attr(sysfs.netdev(name) / "address"))


def netdev_pci_address(sysfs: Sysfs, name: str) -> str | None:
    """The PCI address of the device behind netdev `name`, or None for virtual/absent ones."""
    parent = link_name(sysfs.netdev(name) / "device")
    return parent if parent is not None and is_pci_address(parent) else None


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None
