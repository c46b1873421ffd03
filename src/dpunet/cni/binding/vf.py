"""VFs as pod interfaces: the dpu-host node's `Attacher`.

A VF comes from the network config (`deviceID`/`pciBusID`, injected by multus
from the device plugin's allocation), else (Kubernetes without multus) from
kubelet's PodResources API through a resolver, else from this node's
own pools (the sriov-network-device-plugin `config.json` format). While the
controller sets up the port, the VF moves into the pod's namespace under a
temporary name (so nothing clashes); once the port is up it is renamed and
configured there. Unplugging finds the VF wherever it is — still
in the pod, or returned to the host by the kernel as `eth0` or `devN` after the
pod's namespace died (waiting up to `VF_RETURN_WAIT` for the kernel to finish tearing
that namespace down) — and restores its host name, MAC and MTU.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Collection, Container

from dpunet.cni.claims import Claim
from dpunet.cni.models import AddRequest
from dpunet.cni.sandboxes import HostLink, SandboxRecord, VfDevice
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.hw.host import find_vf_by_pci, function_netdev
from dpunet.hw.pools import (
    ManagementVf,
    PoolAssignment,
    PoolConfig,
    PoolDevice,
    assign_pools,
    discover_pool_devices,
    read_default_route_netdevs,
)
from dpunet.hw.sysfs import Sysfs
from dpunet.linux import netlink

# How old the pool discovery behind the reconcile's pool gauges may get (a full discovery
# reads much of sysfs: tens of milliseconds on a kernel, far more on the lab's emulated one).
POOL_REDISCOVERY_SECONDS = 30.0
# The kernel returns a VF to the host when its pod's namespace dies, once it has torn that
# namespace down, asynchronously: a DEL right after the namespace vanished waits this long
# for the VF, looking every VF_RETURN_POLL seconds.
VF_RETURN_WAIT = 2.0
VF_RETURN_POLL = 0.02


def returned_netdev(sysfs: Sysfs, pci: str, wait: float = VF_RETURN_WAIT) -> str | None:
    """The netdev of VF `pci` once it is back in this namespace, None if not within `wait`."""
    deadline = time.monotonic() + wait
    while (netdev := function_netdev(sysfs, pci)) is None and time.monotonic() < deadline:
        time.sleep(VF_RETURN_POLL)
    return netdev


def temp_name(pci: str) -> str:
    """A name for the VF while it crosses namespaces: unique per VF, at most 15 chars."""
    return "dpn" + "".join(c for c in pci.split(":", 1)[-1] if c.isalnum())[-10:]


class VfAttacher:
    """Hands out the VFs of this node's pools (see module docstring)."""

    kind = "vf"

    def __init__(
        self,
        sysfs: Sysfs,
        pools: PoolConfig,
        management_vfs: tuple[ManagementVf, ...] = (),
        resolver: Callable[[AddRequest, Container[str]], str | None] | None = None,
        rediscover_after: float = POOL_REDISCOVERY_SECONDS,
    ) -> None:
        """`resolver` names the pod's VF when the config does not (Kubernetes: kubelet's
        PodResources); None from it means "take one from the pool". `pool_usage` runs a
        new discovery once the last one is `rediscover_after` seconds old."""
        self.sysfs = sysfs
        self.pools = pools
        self.management_vfs = management_vfs
        self.resolver = resolver
        self._assignment: PoolAssignment | None = None
        self._devices: dict[str, PoolDevice] = {}  # of the last discovery, by PCI address
        self._pf_macs: dict[str, str] = {}  # PF netdev -> MAC, read once per discovery
        self._discovered_at = 0.0
        self.rediscover_after = rediscover_after
        self._discovery = threading.Lock()  # one discovery at a time (claims run at once)

    def assignment(self, refresh: bool = True, claim: Claim | None = None) -> PoolAssignment:
        """The node's VFs sorted into pools. Discovery reads much of sysfs, so an ADD takes
        pool membership from the last result (`refresh=False`), checks its candidate VF
        live, and rediscovers only when that finds none; the reconcile loop refreshes it.
        The time `claim` waits for another caller's discovery counts as its wait."""
        assignment = self._assignment
        if not refresh and assignment is not None:
            return assignment
        asked = time.monotonic()
        with claim.wait() if claim is not None else contextlib.nullcontext():
            self._discovery.acquire()
        try:
            if self._assignment is not None and self._discovered_at >= asked:
                return self._assignment  # another claim's discovery began after we asked
            started = time.monotonic()
            devices = discover_pool_devices(self.sysfs)
            assignment = assign_pools(
                self.pools,
                devices,
                default_route_netdevs=read_default_route_netdevs(),
                management_vfs=self.management_vfs,
            )
            self._devices = {d.address: d for d in devices}
            self._pf_macs = {}
            self._assignment, self._discovered_at = assignment, started
        finally:
            self._discovery.release()
        return assignment

    def pool_usage(self, taken: Collection[str]) -> dict[str, tuple[int, int]]:
        """resource -> (VFs in use, VFs in the pool) given the PCI addresses `taken`, from a
        discovery at most `rediscover_after` seconds old (a claim rediscovers at once when
        it finds no VF)."""
        stale = time.monotonic() - self._discovered_at >= self.rediscover_after
        return {
            pool.resource: (sum(d.address in taken for d in pool.devices), len(pool.devices))
            for pool in self.assignment(refresh=stale).pools
        }

    def claim(self, req: AddRequest, claim: Claim) -> VfDevice:
        """The VF named by the config, else the resolver's, else a free one of the requested
        (or first) pool. The candidate is reserved (`claim.take`) before its sysfs and
        netlink look, so claims of other ADDs go on meanwhile."""
        wanted = req.config.vf_pci_address
        if self.resolver is not None:  # also checks a deviceID against kubelet's allocation
            wanted = self.resolver(req, claim)  # asked once: kubelet's answer does not change
        try:
            return self._claim(req, wanted, claim, self.assignment(False, claim))
        except CniError:  # VFs may have come, gone or returned since the last discovery
            return self._claim(req, wanted, claim, self.assignment(True, claim))

    def _claim(
        self, req: AddRequest, wanted: str | None, claim: Claim, assignment: PoolAssignment
    ) -> VfDevice:
        members = {d.address: pool.resource for pool in assignment.pools for d in pool.devices}
        if wanted is not None:
            if wanted not in members:
                why = next(
                    (e.reason for e in assignment.excluded if e.device.address == wanted), None
                )
                raise CniError(
                    ErrorCode.NO_DEVICE, f"VF {wanted} is not one this node hands out",
                    why or "no such VF on this node",
                )  # fmt: skip
            if not claim.take(wanted):
                raise CniError(
                    ErrorCode.NO_DEVICE, f"VF {wanted} is already in use by another sandbox"
                )
            try:
                return self._describe(wanted, members[wanted])
            except CniError:
                claim.give_back(wanted)
                raise
        resource = req.config.resource_name
        pools = [
            p for p in assignment.pools if resource in (None, p.resource, p.resource.split("/")[-1])
        ]
        if not pools:
            known = ", ".join(p.resource for p in assignment.pools) or "none"
            raise CniError(
                ErrorCode.NO_DEVICE, f"no VF pool {resource!r} on this node", f"pools: {known}"
            )
        pool = pools[0]
        for device in sorted(pool.devices, key=lambda d: (d.pf_address or "", d.vf_index or 0)):
            if not claim.take(device.address):
                continue
            try:
                return self._describe(device.address, pool.resource)
            except CniError:  # its netdev is away from the host right now
                claim.give_back(device.address)
        raise CniError(
            ErrorCode.NO_DEVICE,
            f"no free VF in pool {pool.resource}",
            f"all {len(pool.devices)} VFs are in use or away from the host",
        )

    def _describe(self, pci: str, resource: str) -> VfDevice:
        """The claim of VF `pci`, checked live: pool membership, VF index, PF (and its MAC,
        read once per discovery) come from the last discovery; the VF's netdev from its
        sysfs `net/` directory and its link from netlink (instead of re-walking the PF)."""
        known = self._devices.get(pci)
        if known is None or known.vf_index is None or known.pf_netdev is None:
            return self._describe_from_sysfs(pci, resource)
        netdev = function_netdev(self.sysfs, pci)
        if netdev is None:
            raise CniError(ErrorCode.NO_DEVICE, f"VF {pci} has no netdev in the host namespace")
        pf_mac = self._pf_macs.get(known.pf_netdev)
        if pf_mac is None:
            pf_link = netlink.get_link(known.pf_netdev)
            if pf_link is None or not pf_link.mac:
                raise CniError(ErrorCode.NO_DEVICE, f"the PF of VF {pci} has no readable MAC")
            pf_mac = self._pf_macs[known.pf_netdev] = pf_link.mac.lower()
        return self._claimed(pci, resource, netdev, pf_mac, known.vf_index)

    def _describe_from_sysfs(self, pci: str, resource: str) -> VfDevice:
        vf = find_vf_by_pci(self.sysfs, pci)
        if vf is None or vf.netdev is None:
            raise CniError(ErrorCode.NO_DEVICE, f"VF {pci} has no netdev in the host namespace")
        if vf.pf_mac is None:
            raise CniError(ErrorCode.NO_DEVICE, f"the PF of VF {pci} has no readable MAC")
        return self._claimed(pci, resource, vf.netdev, vf.pf_mac, vf.index)

    @staticmethod
    def _claimed(pci: str, resource: str, netdev: str, pf_mac: str, vf_num: int) -> VfDevice:
        link = netlink.get_link(netdev)
        if link is None or link.mac is None or link.mtu is None:
            raise CniError(ErrorCode.NO_DEVICE, f"VF {pci} netdev {netdev} vanished")
        host = HostLink(name=link.name, mac=link.mac, mtu=link.mtu, up=link.up)
        return VfDevice(pci=pci, resource=resource, pf_mac=pf_mac, vf_num=vf_num, host_link=host)

    def prepare(self, record: SandboxRecord) -> None:
        """Nothing: the DPU plugs the VF's representor."""

    def stage(self, record: SandboxRecord) -> None:
        """Move the VF into the pod under its temporary name (during the port request)."""
        vf = _vf(record)
        netlink.move_link(vf.host_link.name, temp_name(vf.pci), None, record.netns)

    def plug(self, record: SandboxRecord, cfg: netlink.InterfaceConfig) -> None:
        """Configure the VF `stage` moved into the pod."""
        netlink.configure(record.netns, temp_name(_vf(record).pci), cfg)

    def unplug(self, record: SandboxRecord) -> None:
        """Bring the VF back to the host as it was, from wherever it is.

        The host namespace is looked at first, by PCI address: a VF that never left it
        (a move that failed half-way leaves it renamed and down there) or that the kernel
        returned when the pod's namespace died is restored without entering the pod's
        namespace, whose path may exist and yet not be enterable (an empty file, or a
        runtime's mount this daemon cannot see). A VF in neither place is in a namespace
        the kernel is tearing down: it is waited for (`returned_netdev`)."""
        vf = _vf(record)
        host, pci = vf.host_link, vf.pci
        netdev = function_netdev(self.sysfs, pci)
        if netdev is None and os.path.exists(record.netns):
            tmp = temp_name(pci)
            for name in (record.ifname, tmp):
                if netlink.link_exists(name, record.netns):
                    netlink.move_link(name, tmp, record.netns, None)
                    netlink.restore(tmp, host.name, host.mac, host.mtu, host.up)
                    return
        if netdev is None:  # in neither: its namespace is being torn down
            netdev = returned_netdev(self.sysfs, pci)
        if netdev is not None:
            netlink.restore(netdev, host.name, host.mac, host.mtu, host.up)
            return
        raise netlink.LinuxError(
            f"VF {pci} is neither in the host nor as {record.ifname} in {record.netns}"
        )


def _vf(record: SandboxRecord) -> VfDevice:
    """The record's VF (a dpu-host node's records hold nothing else)."""
    if not isinstance(record.device, VfDevice):
        raise netlink.LinuxError(f"sandbox {record.container_id} holds no VF: {record.device}")
    return record.device
