"""The emulated SR-IOV NIC of the lab: one host PF with VFs, switched on one DPU.

Every PCI function of the host is a veth pair: the host end (``enp2s0f0np0``,
``enp2s0f0v<N>``) lives in the host node's netns, its peer (``pf0hpf``,
``pf0vf<N>``) is the representor in the DPU node's netns. Each end carries a
marker in its ifalias (``dpunet-lab:<lab>:<host>:[rep:]pf|vf:<N>``) so that it
is recognised after renames and netns moves.

The model here is driven by one engine thread (``dpunet.lab.nicd``): it alone
changes links. Views of both namespaces are kept from netlink events, applied
under the engine's lock by whichever thread drains the event sockets.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import socket
import struct
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from dpunet.lab.nic_config import NicPairConfig, PciAddress
from dpunet.linux import ethtool
from dpunet.linux.netns import socket_in_netns

VENDOR_MELLANOX = 0x15B3
DEVICE_CX6DX_PF = 0x101D
DEVICE_CX6DX_VF = 0x101E
DEVICE_BF2_ECPF = 0xA2D6
CLASS_ETHERNET = 0x020000
DRIVER = "mlx5_core"
VF_OFFSET = 3
VF_STRIDE = 1

PF = -1
"""Slot number of the PF; VF N has slot N."""

_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_IFF_PROMISC = 0x100
_KERNEL_CLOSE = _IFF_UP | _IFF_RUNNING
"""``ifi_change`` of the RTM_NEWLINK that dev_close() sends (unregister, netns
move); an administrative ``ip link set down`` sends ``IFF_UP`` only."""
_SOL_NETLINK = 270
_NETLINK_LISTEN_ALL_NSID = 8
_EVENT_RCVBUF = 8 * 1024 * 1024
_SO_RCVBUFFORCE = 33

_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def parse_kstrtou16(data: bytes) -> int:
    """Parse a sysfs write the way the kernel's ``kstrtou16(buf, 0, ...)`` does.

    Accepts an optional ``+``, a ``0x`` (hex) or ``0`` (octal) prefix and one
    trailing newline; raises ValueError on anything else or above 65535.
    """
    text = data.decode("latin-1")
    if text.endswith("\n"):
        text = text[:-1]
    if text.startswith("+"):
        text = text[1:]
    base = 10
    if text.startswith("0"):
        if text[1:2] in ("x", "X") and text[2:3] != "" and text[2:3] in _DIGITS[16]:
            base, text = 16, text[2:]
        else:
            base = 8
    if not text or any(c not in _DIGITS[base] for c in text):
        raise ValueError(f"not a number: {data!r}")
    value = int(text, base)
    if value > 0xFFFF:
        raise ValueError(f"out of range: {data!r}")
    return value


def vf_address(pf: PciAddress, vf: int) -> PciAddress:
    """PCI address of VF ``vf`` of ``pf`` (First VF Offset 3, VF Stride 1)."""
    return pf.plus(VF_OFFSET + vf * VF_STRIDE)


def sibling_mac(mac: str) -> str:
    """A distinct locally administered MAC derived from ``mac`` (for representors)."""
    octets = mac.split(":")
    first = (int(octets[0], 16) | 0x02) & ~0x01
    return ":".join([f"{first ^ 0x04:02x}", *octets[1:]])


def log_event(log: logging.Logger, event: str, **fields: object) -> None:
    """Log one ``event=... key=value`` line."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = str(value)
        if text == "" or any(c in text for c in ' "='):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    log.info(" ".join(parts))


def os_error(exc: NetlinkError) -> OSError:
    """The OSError equivalent of a netlink error."""
    return OSError(exc.code, os.strerror(exc.code))


@dataclass(frozen=True)
class Link:
    """A netdev as last reported by netlink."""

    index: int
    name: str
    alias: str
    mac: str
    broadcast: str
    mtu: int
    flags: int
    operstate: str
    carrier: int
    type: int
    peer_index: int | None
    peer_nsid: int | None
    """The id this netns knows the peer's netns by; None if it has none (the kernel's -1:
    a namespace without an id here, such as one being torn down)."""

    @classmethod
    def from_msg(cls, msg: Any) -> Link:
        """Build from a pyroute2 ``ifinfmsg``."""
        nsid = msg.get("IFLA_LINK_NETNSID")
        return cls(
            index=msg["index"],
            name=msg.get("ifname") or "",
            alias=msg.get("ifalias") or "",
            mac=msg.get("address") or "00:00:00:00:00:00",
            broadcast=msg.get("broadcast") or "00:00:00:00:00:00",
            mtu=msg.get("mtu") or 0,
            flags=msg["flags"],
            operstate=(msg.get("operstate") or "unknown").lower(),
            carrier=msg.get("carrier") or 0,
            type=msg["ifi_type"],
            peer_index=msg.get("link"),
            peer_nsid=nsid if nsid is not None and nsid >= 0 else None,
        )

    @property
    def up(self) -> bool:
        """Administratively up."""
        return bool(self.flags & _IFF_UP)


def _as_set(previous: Link | None, link: Link, change: int) -> Link:
    """``link`` with the admin state it was given.

    Only an explicit up/down (``IFF_UP`` in ``ifi_change``) changes it: a close
    by the kernel on the way to deletion or a netns move (``IFF_UP|IFF_RUNNING``)
    and the events that follow it (linkwatch, ``ifi_change`` 0) do not.
    """
    explicit = change & _IFF_UP and change != _KERNEL_CLOSE
    if previous is not None and previous.up and not link.up and not explicit:
        return replace(link, flags=link.flags | _IFF_UP)
    return link


@dataclass(frozen=True)
class EndSpec:
    """How to create one end of a pair."""

    name: str
    mac: str
    mtu: int
    up: bool


@dataclass
class FunctionTrack:
    """Last known state of both ends of one PCI function's pair."""

    host_end: Link | None = None
    host_end_home: bool = True
    rep: Link | None = None


class NetnsSide:
    """One netns of a NIC: its netlink sockets and the view of its links.

    ``ipr`` and ``ethtool`` are used by the engine thread only; ``drain`` and
    ``links`` by any thread holding the engine lock.
    """

    def __init__(self, netns: str, listen_all_nsid: bool) -> None:
        """Open the sockets in ``netns`` (a name in /run/netns or a path)."""
        path = netns if "/" in netns else f"/run/netns/{netns}"
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.links: dict[int, Link] = {}
        self.needs_resync = True
        self._marshal = MarshalRtnl()
        try:
            self.events = socket_in_netns(
                self.fd, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
            )
            self.events.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _EVENT_RCVBUF)
            if listen_all_nsid:
                self.events.setsockopt(_SOL_NETLINK, _NETLINK_LISTEN_ALL_NSID, 1)
            self.events.bind((0, RTMGRP_LINK))
            self.events.setblocking(False)
            self.ethtool = socket_in_netns(self.fd, socket.AF_INET, socket.SOCK_DGRAM)
            nl = socket_in_netns(
                self.fd, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE
            )
            self.ipr = IPRoute(fileno=nl.detach())
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        """Close every socket and the netns fd."""
        self.ipr.close()
        self.ethtool.close()
        self.events.close()
        os.close(self.fd)

    def drain(self) -> list[tuple[Any, int | None]]:
        """Read every queued link event: ``(msg, nsid)``, nsid None for this netns."""
        out: list[tuple[Any, int | None]] = []
        while True:
            try:
                data, ancdata, _flags, _addr = self.events.recvmsg(1 << 20, socket.CMSG_SPACE(4))
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.needs_resync = True
                continue
            nsid = None
            for level, kind, value in ancdata:
                if level == _SOL_NETLINK and kind == _NETLINK_LISTEN_ALL_NSID:
                    nsid = struct.unpack("i", value[:4])[0]
            out.extend((msg, nsid) for msg in self._marshal.parse(data))

    def resync(self) -> list[Any]:
        """Drop queued events and dump the links (engine thread, under the lock)."""
        while select.select([self.events], [], [], 0)[0]:
            try:
                self.events.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
        self.needs_resync = False
        return list(self.ipr.link("dump"))

    def by_name(self, name: str) -> Link | None:
        """The link called ``name`` in this netns, if any."""
        return next((link for link in self.links.values() if link.name == name), None)


@dataclass
class EmulatedNic:
    """One host PF with its VFs and the DPU that owns their representors."""

    lab: str
    cfg: NicPairConfig
    host: NetnsSide
    dpu: NetnsSide
    log: logging.Logger
    lock: threading.RLock
    numvfs: int = 0
    tracks: dict[int, FunctionTrack] = field(default_factory=dict)
    generation: int = 0
    """Bumped whenever a view changes (lets readers cache what they derive)."""
    pending: dict[str, tuple[int, bool]] = field(default_factory=dict)
    """Names of pair ends being created, recognised before their marker is set."""

    @cached_property
    def pf_address(self) -> PciAddress:
        """PCI address of the host PF."""
        return PciAddress.parse(self.cfg.pf_pci)

    @cached_property
    def dpu_address(self) -> PciAddress:
        """PCI address of the DPU's own PF (parent of p0 and the representors)."""
        return PciAddress.parse(self.cfg.dpu_pci)

    @cached_property
    def pf_number(self) -> int:
        """BlueField's ``pf<N>``: the PCI function number of the host PF."""
        return self.pf_address.function

    # -- names ---------------------------------------------------------------

    def marker(self, slot: int, rep: bool) -> str:
        """The ifalias marker of one end of the pair of ``slot``."""
        tail = "pf" if slot == PF else f"vf:{slot}"
        return f"dpunet-lab:{self.lab}:{self.cfg.host_node}:{'rep:' if rep else ''}{tail}"

    @property
    def uplink_marker(self) -> str:
        """The ifalias marker of the DPU's uplink (p0)."""
        return f"dpunet-lab:{self.lab}:{self.cfg.dpu_node}:uplink"

    def role(self, link: Link, side: NetnsSide | None = None) -> tuple[int, bool] | None:
        """``(slot, is_representor)`` of one of our pair ends, else None.

        ``side``: the netns the link is seen in, if it is the host's or the
        DPU's (there a pair end being created is recognised by its name).
        """
        prefix = f"dpunet-lab:{self.lab}:{self.cfg.host_node}:"
        if not link.alias.startswith(prefix):
            pending = self.pending.get(link.name) if side is not None and not link.alias else None
            return pending if pending is not None and pending[1] == (side is self.dpu) else None
        parts = link.alias[len(prefix) :].split(":")
        rep = parts[:1] == ["rep"]
        if rep:
            parts = parts[1:]
        if parts == ["pf"]:
            return PF, rep
        if len(parts) == 2 and parts[0] == "vf" and parts[1].isdigit():
            return int(parts[1]), rep
        return None

    def host_device(self, link: Link) -> PciAddress | None:
        """PCI address a host-side netdev belongs to (None for virtual ones).

        A pair end still being created is not a device yet: the kernel hands a VF back
        whole, and a client that renamed one half-made (a DEL restoring a returned VF)
        would pull its name from under its creation."""
        role = self.role(link)
        if role is None or role[1]:
            return None
        slot = role[0]
        if slot == PF:
            return self.pf_address
        return vf_address(self.pf_address, slot) if slot < self.numvfs else None

    def port_name(self, link: Link) -> str | None:
        """``phys_port_name`` of a DPU-side netdev (None if it is not an eSwitch port)."""
        if link.alias == self.uplink_marker:
            return f"p{self.pf_number}"
        role = self.role(link)  # complete pairs only, as in host_device
        if role is None or not role[1]:
            return None
        slot = role[0]
        if slot == PF:
            return f"pf{self.pf_number}"
        return f"pf{self.pf_number}vf{slot}" if slot < self.numvfs else None

    def find(self, slot: int, rep: bool) -> Link | None:
        """The end of ``slot``'s pair currently visible in its home netns."""
        side = self.dpu if rep else self.host
        return next((ln for ln in side.links.values() if self.role(ln, side) == (slot, rep)), None)

    def vf_mac(self, slot: int) -> str:
        """Deterministic MAC of a fresh VF (or the PF)."""
        if slot == PF:
            return self.cfg.pf_mac.lower()
        return f"{self.cfg.vf_mac_prefix.lower()}:01:{slot:02x}"

    def default_ends(self, slot: int) -> tuple[EndSpec, EndSpec]:
        """Name, MAC, MTU of a freshly created pair."""
        mtu = self.cfg.mtu
        if slot == PF:
            host_name = self.cfg.pf_netdev
            rep_name = f"pf{self.pf_number}hpf"
        else:
            host_name = f"{re.sub(r'np[0-9]+$', '', self.cfg.pf_netdev)}v{slot}"
            rep_name = f"pf{self.pf_number}vf{slot}"
        mac = self.vf_mac(slot)
        return EndSpec(host_name, mac, mtu, True), EndSpec(rep_name, sibling_mac(mac), mtu, True)

    # -- events (any thread, under the engine lock) --------------------------

    def apply(self, side: NetnsSide, msg: Any, nsid: int | None) -> bool:
        """Apply one link event seen on ``side``; True if a reconcile is due."""
        kind = msg["header"]["type"]
        if kind not in (RTM_NEWLINK, RTM_DELLINK):
            return False
        link = Link.from_msg(msg)
        deleted = kind == RTM_DELLINK
        if nsid is None:
            self.generation += 1
            if deleted:
                side.links.pop(link.index, None)
            else:
                side.links[link.index] = link
        role = self.role(link, side if nsid is None else None)
        if role is None:
            return (
                side is self.dpu
                and nsid is None
                and not deleted
                and link.name == self.cfg.uplink_netdev
                and link.alias != self.uplink_marker
            )
        slot, rep = role
        track = self.tracks.setdefault(slot, FunctionTrack())
        if rep:
            if side is self.dpu and nsid is None and not deleted:
                track.rep = _as_set(track.rep, link, msg["change"])
        elif side is self.host and nsid is None:
            if not deleted:
                track.host_end = _as_set(track.host_end, link, msg["change"])
            track.host_end_home = not deleted or msg.get("IFLA_NEW_NETNSID") is None
        elif side is self.host and not deleted:
            # The host end inside another netns (a pod): its name and MAC there.
            track.host_end = link
            track.host_end_home = False
        return deleted and nsid is None

    def drain(self) -> bool:
        """Apply all queued events of both sides (under the lock); True if a reconcile is due."""
        due = False
        for side in (self.host, self.dpu):
            for msg, nsid in side.drain():
                due = self.apply(side, msg, nsid) or due
            due = due or side.needs_resync
        return due

    def resync(self) -> None:
        """Rebuild the views from dumps where events were lost (engine thread, under the lock)."""
        for side in (self.host, self.dpu):
            if side.needs_resync:
                msgs = side.resync()
                side.links.clear()
                for msg in msgs:
                    self.apply(side, msg, None)

    # -- engine-thread operations --------------------------------------------

    def adopt(self) -> bool:
        """Take over pairs left by an earlier daemon; True if any were found."""
        slots = {
            role[0]
            for side in (self.host, self.dpu)
            for link in side.links.values()
            if (role := self.role(link)) is not None and role[0] != PF
        }
        if not slots:
            return False
        self.numvfs = min(max(slots) + 1, self.cfg.sriov_totalvfs)
        return True

    def refresh_away(self) -> None:
        """Look up host ends that live in other netns through their representors.

        Events from those netns normally keep the tracks current; this covers
        what they miss (a VF moved on from one pod netns to another, whose
        events this daemon does not receive). Engine thread, under the lock.
        """
        for slot, track in self.tracks.items():
            rep = self.find(slot, rep=True)
            if track.host_end_home or rep is None:
                continue
            try:
                # Re-read the representor: its peer's netns id may be new.
                rep = Link.from_msg(self.dpu.ipr.link("get", index=rep.index)[0])
                if rep.peer_index is None or rep.peer_nsid is None:
                    continue
                msgs = self.dpu.ipr.link("get", index=rep.peer_index, IFLA_IF_NETNSID=rep.peer_nsid)
            except NetlinkError:
                continue
            if msgs and self.role(peer := Link.from_msg(msgs[0])) == (slot, False):
                track.host_end = peer

    def missing(self) -> list[tuple[int, EndSpec, EndSpec]]:
        """Pairs that must exist but vanished, with how to recreate them (under the lock).

        A VF whose pod netns died comes back like the kernel returns a VF to
        init_net: current MAC and name, ``dev<ifindex>`` if the name is taken,
        administratively down; its representor keeps name, MAC, MTU, state.
        """
        out = []
        for slot in [PF, *range(self.numvfs)]:
            if self.find(slot, rep=True) or self.find(slot, rep=False):
                continue
            host_end, rep_end = self.default_ends(slot)
            track = self.tracks.get(slot, FunctionTrack())
            if track.host_end is not None:
                last = track.host_end
                name = last.name
                if not track.host_end_home:
                    name = self._returned_name(last)
                host_end = EndSpec(name, last.mac, last.mtu, last.up and track.host_end_home)
            if track.rep is not None:
                last = track.rep
                rep_end = EndSpec(last.name, last.mac, last.mtu, last.up)
            out.append((slot, host_end, rep_end))
        return out

    def _returned_name(self, last: Link) -> str:
        taken = {link.name for link in self.host.links.values()}
        if last.name not in taken:
            return last.name
        if f"dev{last.index}" not in taken:
            return f"dev{last.index}"
        return next(f"dev{n}" for n in range(len(taken) + 1) if f"dev{n}" not in taken)

    def create_pair(self, slot: int, host_end: EndSpec, rep_end: EndSpec) -> None:
        """Create the veth pair of ``slot``; on failure nothing is left behind."""
        with self.lock:
            self.pending = {host_end.name: (slot, False), rep_end.name: (slot, True)}
            self.generation += 1
        try:
            self._create_pair(slot, host_end, rep_end)
        finally:
            with self.lock:
                self.pending = {}
                self.generation += 1
        log_event(
            self.log,
            "pair_created",
            host=self.cfg.host_node,
            function="pf" if slot == PF else f"vf{slot}",
            host_if=host_end.name,
            mac=host_end.mac,
            rep=rep_end.name,
            up=host_end.up,
        )

    def _create_pair(self, slot: int, host_end: EndSpec, rep_end: EndSpec) -> None:
        try:
            self.host.ipr.link(
                "add",
                ifname=host_end.name,
                address=host_end.mac,
                mtu=host_end.mtu,
                kind="veth",
                peer={
                    "ifname": rep_end.name,
                    "address": rep_end.mac,
                    "mtu": rep_end.mtu,
                    "net_ns_fd": self.dpu.fd,
                },
            )
        except NetlinkError as exc:
            raise os_error(exc) from exc
        ends = ((self.dpu, rep_end, True), (self.host, host_end, False))
        try:
            # The representor comes up first; the markers come last, so a pair
            # that carries both markers is complete.
            indexes = [side.ipr.link_lookup(ifname=end.name)[0] for side, end, _ in ends]
            for (side, end, _), index in zip(ends, indexes, strict=True):
                if end.up:
                    side.ipr.link("set", index=index, state="up")
                ethtool.disable_tx_checksum(end.name, side.ethtool)
            for (side, _, rep), index in zip(ends, indexes, strict=True):
                side.ipr.link("set", index=index, ifalias=self.marker(slot, rep))
                self._refresh(side, index)
        except (NetlinkError, OSError, IndexError, ethtool.EthtoolError) as exc:
            self._delete_by_name(self.host, host_end.name)
            if isinstance(exc, NetlinkError):
                raise os_error(exc) from exc
            if isinstance(exc, IndexError):
                raise OSError(errno.ENODEV, f"{host_end.name} vanished while created") from exc
            if isinstance(exc, ethtool.EthtoolError):
                raise OSError(errno.EIO, str(exc)) from exc
            raise

    def _refresh(self, side: NetnsSide, index: int) -> None:
        # An ifalias change of a down link emits no netlink event: read the link back.
        with self.lock:
            self.drain()
            for msg in side.ipr.link("get", index=index):
                self.apply(side, msg, None)

    def _delete_by_name(self, side: NetnsSide, name: str) -> None:
        try:
            for index in side.ipr.link_lookup(ifname=name):
                side.ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise

    def delete_pair(self, slot: int, rep: Link | None, host_end: Link | None) -> None:
        """Delete a pair through its representor (the VF dies wherever it is)."""
        for side, link in ((self.dpu, rep), (self.host, host_end)):
            if link is None:
                continue
            try:
                side.ipr.link("del", index=link.index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise os_error(exc) from exc
            log_event(
                self.log,
                "pair_deleted",
                host=self.cfg.host_node,
                function="pf" if slot == PF else f"vf{slot}",
                via=link.name,
            )
            return

    def set_uplink_alias(self, index: int, alias: str) -> None:
        """Mark (or unmark, with "") the DPU's uplink netdev."""
        try:
            self.dpu.ipr.link("set", index=index, ifalias=alias)
            self._refresh(self.dpu, index)
        except NetlinkError as exc:
            raise os_error(exc) from exc

    def set_numvfs(self, count: int) -> None:
        """``echo count > sriov_numvfs`` after parsing and the range check (engine thread).

        Same count: no-op; 0: destroy all VF pairs; otherwise EBUSY unless no VF
        exists. Creation is all or nothing.
        """
        with self.lock:
            self.drain()
            current = self.numvfs
            if count == current:
                return
            if count and current:
                raise OSError(errno.EBUSY, f"{current} VFs already enabled, write 0 first")
            self.numvfs = count
            doomed = [(n, self.find(n, rep=True), self.find(n, rep=False)) for n in range(current)]
        log_event(self.log, "sriov_numvfs", host=self.cfg.host_node, old=current, new=count)
        if count == 0:
            for slot, rep, host_end in doomed:
                self.delete_pair(slot, rep, host_end)
            with self.lock:
                self.drain()
                for slot in range(current):
                    self.tracks.pop(slot, None)
            return
        created = 0
        try:
            for slot in range(count):
                self.create_pair(slot, *self.default_ends(slot))
                created += 1
        except OSError as exc:
            log_event(self.log, "sriov_numvfs_failed", host=self.cfg.host_node, error=exc.strerror)
            for slot in range(created):
                with self.lock:
                    self.drain()
                    rep, host_end = self.find(slot, rep=True), self.find(slot, rep=False)
                self.delete_pair(slot, rep, host_end)
            with self.lock:
                self.drain()
                self.numvfs = 0
                for slot in range(count):
                    self.tracks.pop(slot, None)
            raise

    def reconcile(self) -> None:
        """Recreate vanished pairs and mark the uplink (engine thread)."""
        with self.lock:
            self.drain()
            self.resync()
            self.refresh_away()
            todo = self.missing()
            uplink = self.dpu.by_name(self.cfg.uplink_netdev)
            marked = any(link.alias == self.uplink_marker for link in self.dpu.links.values())
        for slot, host_end, rep_end in todo:
            try:
                self.create_pair(slot, host_end, rep_end)
            except OSError as exc:
                log_event(
                    self.log,
                    "recreate_failed",
                    host=self.cfg.host_node,
                    function="pf" if slot == PF else f"vf{slot}",
                    error=exc.strerror,
                )
        if uplink is not None and not marked:
            self.set_uplink_alias(uplink.index, self.uplink_marker)
            log_event(self.log, "uplink_marked", dpu=self.cfg.dpu_node, uplink=uplink.name)

    def reset_dpu(self) -> None:
        """A reset of the DPU's PCI function, as when the DPU reboots (engine thread).

        mlx5 unloads and reloads: the uplink and every representor are new netdevs under
        their original names, down, not promiscuous, with the default MTU and MAC, no
        address and no qdisc. The host's PF and VFs are not touched (their pods keep
        them). A veth cannot be remade without its peer, so each netdev is reset in place
        (its ifindex stays).
        """
        with self.lock:
            self.drain()
            ends = [
                (link, self.default_ends(slot)[1])
                for slot in [PF, *range(self.numvfs)]
                if (link := self.find(slot, rep=True)) is not None
            ]
            uplink = next(
                (ln for ln in self.dpu.links.values() if ln.alias == self.uplink_marker), None
            )
        if uplink is not None:
            ends.append((uplink, EndSpec(uplink.name, uplink.mac, self.cfg.mtu, False)))
        for link, end in ends:
            self._reset_link(link.index, end)
            log_event(self.log, "function_reset", dpu=self.cfg.dpu_node, netdev=end.name)

    def _reset_link(self, index: int, end: EndSpec) -> None:
        ipr = self.dpu.ipr
        try:
            ipr.link("set", index=index, flags=0, change=_IFF_UP | _IFF_PROMISC)
            ipr.flush_addr(index=index)
            for qdisc in ipr.get_qdiscs(index=index):
                if qdisc.get("kind") in ("ingress", "clsact"):
                    ipr.tc("del", qdisc.get("kind"), index=index)
            ipr.link("set", index=index, ifname=end.name, mtu=end.mtu, address=end.mac)
        except NetlinkError as exc:
            raise os_error(exc) from exc
        self._refresh(self.dpu, index)

    def teardown(self) -> None:
        """Delete every pair of this NIC and unmark the uplink (engine thread)."""
        with self.lock:
            self.drain()
            self.numvfs = 0
        for rep in (True, False):
            side = self.dpu if rep else self.host
            with self.lock:
                self.drain()
                ends = [(r[0], link) for link in side.links.values() if (r := self.role(link))]
            for slot, link in ends:
                self.delete_pair(slot, link if rep else None, None if rep else link)
        with self.lock:
            self.drain()
            uplinks = [link for link in self.dpu.links.values() if link.alias == self.uplink_marker]
        for link in uplinks:
            self.set_uplink_alias(link.index, "")
