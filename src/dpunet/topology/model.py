"""The live picture of dpu-host/DPU pairs: host -> VFs -> pods, DPU -> representors ->
br-int -> tunnels, and the external bridge -> uplink.

Gathered from the same sources dpunet uses (sysfs, OVSDB, the host agent's sandbox
records, netlink for addresses); either side may be missing (on a real machine only one
is local), and the picture shows what there is.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from dpunet.verify.ovsview import OvsView, pod_of_lsp, read_ovs
from dpunet.verify.targets import DpuTarget, HostTarget

TUNNEL_TYPES = frozenset({"geneve", "vxlan", "stt"})


@dataclass(frozen=True)
class VfEntry:
    """One VF of the host's PF and what uses it."""

    index: int
    pci: str
    netdev: str | None
    pod: str | None = None
    pod_ip: str | None = None
    mgmt: bool = False


@dataclass(frozen=True)
class HostSide:
    """A dpu-host node."""

    name: str
    pf: str
    pf_pci: str | None
    vfs: tuple[VfEntry, ...] = ()
    mgmt_addresses: tuple[str, ...] = ()
    dpu: str | None = None
    pf_addresses: tuple[str, ...] = ()  # the node IP, shared with GR_<node>


@dataclass(frozen=True)
class PortEntry:
    """One port of a DPU bridge, classified."""

    name: str
    kind: str  # vf-rep, pf-rep, uplink, internal, patch, tunnel, other
    vf_index: int | None = None
    lsp: str | None = None
    pod: str | None = None
    peer: str | None = None  # patch peer
    remote: str | None = None  # tunnel: "<chassis>@<ip>" or the remote ip


@dataclass(frozen=True)
class BridgeEntry:
    """One OVS bridge of the DPU."""

    name: str
    datapath_type: str
    fail_mode: str | None
    ports: tuple[PortEntry, ...] = ()
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class DpuSide:
    """A DPU (or a node running OVS)."""

    name: str
    bridges: tuple[BridgeEntry, ...] = ()
    hw_offload: bool = False
    host: str | None = None


@dataclass
class Picture:
    """Every side found."""

    hosts: list[HostSide] = field(default_factory=list)
    dpus: list[DpuSide] = field(default_factory=list)


def classify_ports(
    ovs: OvsView, bridge: str, rep_kinds: dict[str, tuple[str, int | None]]
) -> tuple[PortEntry, ...]:
    """The ports of `bridge` with their roles (`rep_kinds`: netdev -> (kind, VF index))."""
    out = []
    for iface in ovs.bridge_ifaces(bridge):
        kind, vf_index = rep_kinds.get(iface.name, ("other", None))
        remote = None
        peer = None
        if iface.type == "internal":
            kind = "internal"
        elif iface.type == "patch":
            kind, peer = "patch", iface.options.get("peer")
        elif iface.type in TUNNEL_TYPES:
            kind = "tunnel"
            remote = iface.port_external_ids.get("ovn-chassis-id") or iface.options.get("remote_ip")
        elif kind == "vf":
            kind = "vf-rep"
        elif kind == "pf":
            kind = "pf-rep"
        out.append(
            PortEntry(
                iface.name,
                kind,
                vf_index,
                iface.iface_id,
                pod_of_lsp(iface.iface_id),
                peer,
                remote,
            )
        )
    return tuple(out)


def gather_dpu(target: DpuTarget) -> DpuSide:
    """A DPU's bridges, ports and representors."""
    from dpunet.hw.representors import list_representors
    from dpunet.hw.sysfs import Sysfs

    ovs = read_ovs(target.ovs_db)
    try:
        reps = {
            r.netdev: (r.kind.value, r.vf_index)
            for r in list_representors(Sysfs(target.sysfs_root))
        }
    except OSError:
        reps = {}
    bridges = tuple(
        BridgeEntry(
            b.name,
            b.datapath_type,
            b.fail_mode,
            classify_ports(ovs, b.name, reps),
            _addresses(target.netns, b.name),
        )
        for b in sorted(ovs.bridges.values(), key=lambda b: (b.name != "br-int", b.name))
    )
    return DpuSide(target.name, bridges, ovs.hw_offload, ovs.external_ids.get("host-k8s-nodename"))


def gather_host(target: HostTarget) -> HostSide:
    """A dpu-host's PF, VFs and the pods holding them."""
    from dpunet.hw.host import find_pf, list_vfs
    from dpunet.hw.sysfs import Sysfs

    sysfs = Sysfs(target.sysfs_root)
    pf = find_pf(sysfs, target.pf)
    mgmt = _addresses(target.netns, target.mgmt_ifname)
    pf_addresses = _addresses(target.netns, target.pf)
    if pf is None:
        return HostSide(target.name, target.pf, None, (), mgmt, target.dpu, pf_addresses)
    records = {r.device.key: r for r in target.sandboxes()}
    vfs = []
    for vf in list_vfs(sysfs, pf):
        record = records.get(vf.address)
        ips = record.port.ips if record and record.port else []
        vfs.append(
            VfEntry(
                vf.index,
                vf.address,
                vf.netdev,
                f"{record.namespace}/{record.pod}" if record else None,
                ips[0] if ips else None,
                vf.index == target.mgmt_vf,
            )
        )
    return HostSide(target.name, target.pf, pf.address, tuple(vfs), mgmt, target.dpu, pf_addresses)


def _addresses(netns: str | None, ifname: str) -> tuple[str, ...]:
    """IPv4 addresses of a netdev in a namespace (empty when it does not exist there)."""
    from dpunet.linux.netns import iproute_at

    try:
        with iproute_at(netns) as ipr:
            indexes = ipr.link_lookup(ifname=ifname)
            if not indexes:
                return ()
            return tuple(
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ipr.get_addr(index=indexes[0], family=socket.AF_INET)
            )
    except OSError:
        return ()


def gather(dpus: list[DpuTarget], hosts: list[HostTarget]) -> Picture:
    """Every side of the given targets."""
    return Picture([gather_host(h) for h in hosts], [gather_dpu(d) for d in dpus])
