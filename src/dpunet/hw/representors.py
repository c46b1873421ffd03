"""DPU side: switchdev representors and the host PF MACs behind them.

A representor is a netdev with a non-empty `phys_switch_id`; its `phys_port_name` says
what it represents (the netdev name may change, e.g. `pf0vf0` renamed `ovn-k8s-mp0`):
`p<N>` the uplink (physical port N), `pf<N>` the host PF N (netdev `pf<N>hpf`),
`pf<N>vf<M>` VF M of host PF N, and the same with a controller prefix (`c1pf0`,
`c1pf0vf3`) on kernels that mark the host as an external controller. Lookups always
list the netdevs again, so they return the current names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from dpunet.hw.netdev import list_netdev_names, read_netdev
from dpunet.hw.sysfs import Sysfs, read_attr

_UPLINK_RE = re.compile(r"^p(?P<port>\d+)$")
_FUNCTION_RE = re.compile(r"^(?:c(?P<controller>\d+))?pf(?P<pf>\d+)(?:vf(?P<vf>\d+))?$")


class RepresentorKind(StrEnum):
    """What a representor stands for, from its `phys_port_name`."""

    UPLINK = "uplink"
    HOST_PF = "pf"
    VF = "vf"
    OTHER = "other"


@dataclass(frozen=True)
class PortName:
    """A parsed `phys_port_name`."""

    kind: RepresentorKind
    port_index: int | None = None
    controller: int | None = None
    pf_index: int | None = None
    vf_index: int | None = None


def parse_phys_port_name(text: str) -> PortName:
    """Classify a `phys_port_name` (`p0`, `pf1`, `pf0vf3`, `c1pf0vf3`; anything else OTHER)."""
    if match := _UPLINK_RE.match(text):
        return PortName(RepresentorKind.UPLINK, port_index=int(match["port"]))
    if match := _FUNCTION_RE.match(text):
        controller = int(match["controller"]) if match["controller"] is not None else None
        if match["vf"] is None:
            return PortName(
                RepresentorKind.HOST_PF, controller=controller, pf_index=int(match["pf"])
            )
        return PortName(
            RepresentorKind.VF,
            controller=controller,
            pf_index=int(match["pf"]),
            vf_index=int(match["vf"]),
        )
    return PortName(RepresentorKind.OTHER)


@dataclass(frozen=True)
class Representor:
    """One switchdev representor under its current netdev name."""

    netdev: str
    phys_port_name: str | None
    phys_switch_id: str
    kind: RepresentorKind
    port_index: int | None
    controller: int | None
    pf_index: int | None
    vf_index: int | None
    host_pf_mac: str | None
    mac: str | None
    mtu: int | None
    operstate: str | None
    pci_address: str | None


class AmbiguousRepresentorError(LookupError):
    """More than one representor answers a lookup (e.g. several external controllers)."""


def parse_smart_nic_config(text: str) -> dict[str, str]:
    """The `Key : value` lines of a BlueField `smart_nic/*/config` file as a dict."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            entries[key.strip()] = value.strip()
    return entries


def read_smart_nic_pf_mac(sysfs: Sysfs, uplink_netdev: str) -> str | None:
    """The host PF MAC from `<uplink>/smart_nic/pf/config` (BlueField), or None."""
    text = read_attr(sysfs.netdev(uplink_netdev) / "smart_nic" / "pf" / "config")
    mac = parse_smart_nic_config(text).get("MAC") if text else None
    return mac.lower() if mac else None


def list_representors(sysfs: Sysfs) -> list[Representor]:
    """All representors in this network namespace, by netdev name."""
    netdevs = [
        netdev
        for netdev in (read_netdev(sysfs, name) for name in list_netdev_names(sysfs))
        if netdev is not None and netdev.phys_switch_id
    ]
    ports = {netdev.name: parse_phys_port_name(netdev.phys_port_name or "") for netdev in netdevs}
    host_macs = {
        port.port_index: read_smart_nic_pf_mac(sysfs, name)
        for name, port in ports.items()
        if port.kind is RepresentorKind.UPLINK
    }
    representors = []
    for netdev in netdevs:
        port = ports[netdev.name]
        pf_index = port.port_index if port.kind is RepresentorKind.UPLINK else port.pf_index
        representors.append(
            Representor(
                netdev=netdev.name,
                phys_port_name=netdev.phys_port_name,
                phys_switch_id=netdev.phys_switch_id or "",
                kind=port.kind,
                port_index=port.port_index,
                controller=port.controller,
                pf_index=port.pf_index,
                vf_index=port.vf_index,
                host_pf_mac=host_macs.get(pf_index) if pf_index is not None else None,
                mac=netdev.mac,
                mtu=netdev.mtu,
                operstate=netdev.operstate,
                pci_address=netdev.pci_address,
            )
        )
    return representors


def host_pf_macs(sysfs: Sysfs) -> dict[int, str]:
    """PF index N -> MAC of host PF N, read through uplink `p<N>`."""
    return {
        rep.port_index: rep.host_pf_mac
        for rep in list_representors(sysfs)
        if rep.kind is RepresentorKind.UPLINK
        and rep.port_index is not None
        and rep.host_pf_mac is not None
    }


def find_vf_representor(sysfs: Sysfs, pf_index: int, vf_index: int) -> Representor | None:
    """The representor of VF `vf_index` of host PF `pf_index` under its current name."""
    return _pick(
        [
            rep
            for rep in list_representors(sysfs)
            if rep.kind is RepresentorKind.VF
            and rep.pf_index == pf_index
            and rep.vf_index == vf_index
        ],
        f"VF {vf_index} of PF {pf_index}",
    )


def find_vf_representor_by_pf_mac(sysfs: Sysfs, pf_mac: str, vf_index: int) -> Representor | None:
    """The representor of VF `vf_index` of the host PF whose MAC is `pf_mac`."""
    wanted = pf_mac.lower()
    return _pick(
        [
            rep
            for rep in list_representors(sysfs)
            if rep.kind is RepresentorKind.VF
            and rep.host_pf_mac == wanted
            and rep.vf_index == vf_index
        ],
        f"VF {vf_index} of the PF with MAC {wanted}",
    )


def find_host_pf_representor(sysfs: Sysfs, pf_index: int) -> Representor | None:
    """The representor of host PF `pf_index` (`pf<N>hpf`) under its current name."""
    return _pick(
        [
            rep
            for rep in list_representors(sysfs)
            if rep.kind is RepresentorKind.HOST_PF and rep.pf_index == pf_index
        ],
        f"host PF {pf_index}",
    )


def find_uplink(sysfs: Sysfs, port_index: int) -> Representor | None:
    """The uplink representor of physical port `port_index` (`p<N>`)."""
    return _pick(
        [
            rep
            for rep in list_representors(sysfs)
            if rep.kind is RepresentorKind.UPLINK and rep.port_index == port_index
        ],
        f"uplink port {port_index}",
    )


def _pick(candidates: list[Representor], what: str) -> Representor | None:
    """The one candidate, preferring the external-controller form (`c<K>...`), which on
    kernels that have both is the host's; error when that still leaves several."""
    external = [rep for rep in candidates if rep.controller is not None]
    chosen = external or candidates
    if len(chosen) > 1:
        names = ", ".join(f"{rep.netdev} ({rep.phys_port_name})" for rep in chosen)
        raise AmbiguousRepresentorError(f"several representors for {what}: {names}")
    return chosen[0] if chosen else None
