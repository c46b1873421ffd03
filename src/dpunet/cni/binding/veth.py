"""Veth pairs as pod interfaces: the full node's `Attacher`.

Per attachment one veth pair, named after the container id and interface: the host
end `dpv<hash>` goes into the local br-int with `external_ids:iface-id=<LSP>` (the
attachment's port, `<ns>_<pod>` for the primary),
`iface-id-ver=<pod uid>` and `dpunet-owned=true`; the pod end is created as
`dpt<hash>` and, once the controller answered, moved into the pod's namespace,
renamed and configured there. The host end is plugged before the port request
(`prepare`): on a full node nobody else plugs it, and the controller answers only
once OVN reports the port up. Both ends get tx checksum offload off (userspace
OVS datapath). Unplugging deletes the OVS port and the veth (the pod end goes with
its peer, and with the pod's namespace).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping

from dpunet.cni.claims import Claim
from dpunet.cni.models import AddRequest
from dpunet.cni.sandboxes import SandboxRecord, VethDevice
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.contract.api import PRIMARY_IFNAME
from dpunet.contract.lsp import pod_lsp_name
from dpunet.linux import ethtool, netlink
from dpunet.ovsdb.local import IFACE_ID, IFACE_ID_VER, OWNED_KEY, OWNED_VALUE, LocalOvs, OvsPort

HOST_PREFIX = "dpv"
POD_PREFIX = "dpt"
APPLY_TIMEOUT = 10.0


def veth_names(container_id: str, ifname: str = PRIMARY_IFNAME) -> tuple[str, str]:
    """(host end, pod end's temporary name) of an attachment: 15 chars, stable per
    (container, interface); `eth0`'s are those of a whole sandbox in earlier versions."""
    key = container_id if ifname == PRIMARY_IFNAME else f"{container_id}/{ifname}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return HOST_PREFIX + digest, POD_PREFIX + digest


def lsp_name(record: SandboxRecord) -> str:
    """The attachment's Logical_Switch_Port (`<ns>_<pod>` for the pod's primary)."""
    return pod_lsp_name(record.namespace, record.pod, record.port_network)


def stale(
    ports: Iterable[OvsPort], links: Iterable[str], bridge: str, keep: set[str]
) -> tuple[list[str], list[str]]:
    """(ports, links) left over from sandboxes whose veth names are not in `keep`: owned
    `dpv*` ports on `bridge`, and `dpv*`/`dpt*` links (records removed by hand, lost
    state). Foreign ports and other links are never listed."""
    stale_ports = [
        p.name
        for p in ports
        if p.owned and p.bridge == bridge and p.name.startswith(HOST_PREFIX)
        and p.name not in keep
    ]  # fmt: skip
    stale_links = [
        name for name in links if name.startswith((HOST_PREFIX, POD_PREFIX)) and name not in keep
    ]
    return stale_ports, stale_links


class VethAttacher:
    """Plugs veth pairs into the local br-int (see module docstring)."""

    kind = "veth"

    def __init__(self, ovs: LocalOvs, bridge: str = "br-int") -> None:
        self.ovs = ovs
        self.bridge = bridge
        # prepare() and sweep() exclude each other: a sweep never sees a fresh veth
        # whose sandbox record it has not read yet.
        self._lock = threading.Lock()

    def claim(self, req: AddRequest, claim: Claim) -> VethDevice:
        """The veth names of this attachment (refused on a hash clash with a held one)."""
        host, pod = veth_names(req.container_id, req.ifname)
        if not claim.take(host):
            raise CniError(ErrorCode.NO_DEVICE, f"veth name {host} is taken by another attachment")
        return VethDevice(veth=host, peer=pod)

    def prepare(self, record: SandboxRecord) -> None:
        """Create the pair and plug the host end into br-int (replacing leftovers)."""
        host, pod = _pair(record)
        ids = {
            IFACE_ID: lsp_name(record),
            IFACE_ID_VER: record.pod_uid,
            OWNED_KEY: OWNED_VALUE,
        }
        with self._lock:
            netlink.delete_link(host)
            netlink.delete_link(pod)
            netlink.add_veth(host, pod)
            for end in (host, pod):
                try:
                    ethtool.disable_tx_checksum(end)
                except ethtool.EthtoolError as exc:
                    raise netlink.LinuxError(str(exc)) from exc
            self._apply(f"plug {host} into {self.bridge}", remove=[host], add={host: ids})
        error = next((p.error for p in self.ovs.state().ports if p.name == host), None)
        if error:
            raise netlink.LinuxError(f"OVS cannot use {host}: {error}")

    def stage(self, record: SandboxRecord) -> None:
        """Nothing: `prepare` made the pair, `plug` moves its pod end."""

    def plug(self, record: SandboxRecord, cfg: netlink.InterfaceConfig) -> None:
        """Move the pod end into the pod and configure it; the host end takes the MTU."""
        host, pod = _pair(record)
        netlink.set_mtu(host, cfg.mtu)
        netlink.move_link(pod, pod, None, record.netns)
        netlink.configure(record.netns, pod, cfg)

    def unplug(self, record: SandboxRecord) -> None:
        """Delete the OVS port and the veth (idempotent)."""
        host, pod = _pair(record)
        self._apply(f"unplug {host}", remove=[host])
        netlink.delete_link(host)
        netlink.delete_link(pod)

    def sweep(self, kept: Callable[[], Iterable[str]]) -> list[str]:
        """Remove what `stale` finds apart from the veth names `kept()` lists (those of
        the attachments recorded); the names removed."""
        with self._lock:
            ports = self.ovs.state().ports
            links = list(netlink.link_names().values())
            keep = set(kept())
            stale_ports, stale_links = stale(ports, links, self.bridge, keep)
            if stale_ports:
                self._apply("remove stale ports", remove=stale_ports)
            removed = set(stale_ports)
            for name in stale_links:
                if netlink.delete_link(name):
                    removed.add(name)
        return sorted(removed)

    def _apply(
        self, what: str, remove: list[str], add: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        """One OVS transaction, waited for until ovs-vswitchd applied it."""
        try:
            next_cfg = self.ovs.apply(self.bridge, remove=remove, add=add)
        except Exception as exc:  # ovsdbapp raises many kinds; the step's name says enough
            raise netlink.LinuxError(f"{what}: {exc}") from exc
        if next_cfg is not None and not self.ovs.wait_applied(next_cfg, APPLY_TIMEOUT):
            raise netlink.LinuxError(f"{what}: ovs-vswitchd did not apply it in {APPLY_TIMEOUT}s")


def _pair(record: SandboxRecord) -> tuple[str, str]:
    """(host end, pod end) of the record's veth (a full node's records hold nothing else)."""
    if not isinstance(record.device, VethDevice):
        raise netlink.LinuxError(f"sandbox {record.container_id} holds no veth: {record.device}")
    return record.device.veth, record.device.peer
