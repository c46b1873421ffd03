"""Emulated sysfs of the lab NICs, served by one FUSE filesystem.

``<mountpoint>/<node>/`` is a complete sysfs root for one lab node (a host or
a DPU): ``class/net``, ``bus/pci/devices``, ``bus/pci/drivers/mlx5_core``,
``devices/pci0000:00/<addr>`` and ``devices/virtual/net``, laid out and
behaving like the kernel's (links, read errors, ``sriov_numvfs`` writes). The
tree is computed on every request from the live netlink views, and the kernel
is told not to cache anything, so renames and netns moves show at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import mfusepy

from dpunet.lab.nic import (
    CLASS_ETHERNET,
    DEVICE_BF2_ECPF,
    DEVICE_CX6DX_PF,
    DEVICE_CX6DX_VF,
    DRIVER,
    PF,
    VENDOR_MELLANOX,
    VF_OFFSET,
    VF_STRIDE,
    EmulatedNic,
    FunctionTrack,
    Link,
    vf_address,
)
from dpunet.lab.nic_config import PciAddress

PCI_ROOT = "pci0000:00"
SYSFS_FILE_SIZE = 4096

# The libfuse3 mfusepy runs on (dlopen returns the same handle): for fuse_exit().
_libfuse = ctypes.CDLL(ctypes.util.find_library("fuse3") or "libfuse3.so.3")
_libfuse.fuse_get_context.restype = ctypes.POINTER(ctypes.c_void_p)  # -> struct fuse *
_libfuse.fuse_exit.argtypes = [ctypes.c_void_p]


@dataclass(frozen=True)
class Dir:
    """A directory and its entry names."""

    names: list[str]


@dataclass(frozen=True)
class File:
    """An attribute file; ``read`` may raise OSError like a kernel ``show``."""

    read: Callable[[], bytes]
    write: Callable[[bytes], None] | None = None


@dataclass(frozen=True)
class Symlink:
    """A relative symbolic link."""

    target: str


Node = Dir | File | Symlink


class Backend(Protocol):
    """What the tree needs from the daemon."""

    def synced(self) -> AbstractContextManager[None]:
        """Hold the state lock with all queued netlink events applied."""
        ...

    def write_numvfs(self, nic: EmulatedNic, data: bytes) -> None:
        """Handle a write to the PF's ``sriov_numvfs`` (raises OSError like the kernel)."""
        ...

    def reset_dpu(self, nic: EmulatedNic, data: bytes) -> None:
        """Handle a write to the DPU function's ``reset`` (raises OSError like the kernel)."""
        ...


@dataclass(frozen=True)
class _PciFunction:
    address: PciAddress
    device_id: int
    slot: int | None  # PF, VF number, or None for the DPU's own PF


@dataclass(frozen=True)
class _Devices:
    """What one node's tree is made of, for one state of the NIC."""

    key: tuple[int, int]
    functions: dict[str, _PciFunction]
    netdevs: dict[str, tuple[Link, PciAddress | None]]
    virtual: list[str]


def _text(value: object) -> Callable[[], bytes]:
    data = f"{value}\n".encode()
    return lambda: data


def _fails(code: int) -> Callable[[], bytes]:
    def read() -> bytes:
        raise mfusepy.FuseOSError(code)

    return read


class SysfsTree:
    """Resolves paths of the mount to nodes, from the NICs' current state."""

    def __init__(self, nics: list[EmulatedNic], backend: Backend) -> None:
        self._backend = backend
        self._cache: dict[tuple[int, bool], _Devices] = {}  # used under the backend's lock
        self._roots: dict[str, tuple[EmulatedNic, bool]] = {}
        for nic in nics:
            self._roots[nic.cfg.host_node] = (nic, False)
            self._roots[nic.cfg.dpu_node] = (nic, True)

    def lookup(self, path: str) -> Node:
        """The node at ``path`` (``/host1/class/net/...``); raise ENOENT if absent."""
        parts = [p for p in path.split("/") if p]
        node: Node | None = Dir(sorted(self._roots))
        if parts:
            root = self._roots.get(parts[0])
            node = None if root is None else self._node_root(root[0], root[1], parts[1:])
        if node is None:
            raise mfusepy.FuseOSError(errno.ENOENT)
        return node

    # -- one node's sysfs root -------------------------------------------------

    def _functions(self, nic: EmulatedNic, dpu: bool) -> dict[str, _PciFunction]:
        if dpu:
            fns = [_PciFunction(nic.dpu_address, DEVICE_BF2_ECPF, None)]
        else:
            fns = [_PciFunction(nic.pf_address, DEVICE_CX6DX_PF, PF)]
            fns += [
                _PciFunction(vf_address(nic.pf_address, n), DEVICE_CX6DX_VF, n)
                for n in range(nic.numvfs)
            ]
        return {str(fn.address): fn for fn in fns}

    def _netdevs(self, nic: EmulatedNic, dpu: bool) -> dict[str, tuple[Link, PciAddress | None]]:
        out: dict[str, tuple[Link, PciAddress | None]] = {}
        for link in (nic.dpu if dpu else nic.host).links.values():
            if dpu:
                address = nic.dpu_address if nic.port_name(link) is not None else None
            else:
                address = nic.host_device(link)
            out[link.name] = (link, address)
        return out

    def _devices(self, nic: EmulatedNic, dpu: bool) -> _Devices:
        key = (nic.generation, nic.numvfs)
        cached = self._cache.get((id(nic), dpu))
        if cached is None or cached.key != key:
            netdevs = self._netdevs(nic, dpu)
            virtual = sorted(name for name, (_, address) in netdevs.items() if address is None)
            cached = _Devices(key, self._functions(nic, dpu), netdevs, virtual)
            self._cache[(id(nic), dpu)] = cached
        return cached

    def _node_root(self, nic: EmulatedNic, dpu: bool, parts: list[str]) -> Node | None:
        devices = self._devices(nic, dpu)
        fns, netdevs, virtual = devices.functions, devices.netdevs, devices.virtual
        match parts:
            case []:
                return Dir(["bus", "class", "devices", "fs"])
            case ["fs"]:  # as in a real /sys: where a container runtime mounts cgroups
                return Dir(["cgroup"])
            case ["fs", "cgroup"]:
                return Dir([])
            case ["class"]:
                return Dir(["net"])
            case ["class", "net"]:
                return Dir(sorted(netdevs))
            case ["class", "net", name] if name in netdevs:
                address = netdevs[name][1]
                parent = "virtual" if address is None else f"{PCI_ROOT}/{address}"
                return Symlink(f"../../devices/{parent}/net/{name}")
            case ["bus"]:
                return Dir(["pci"])
            case ["bus", "pci"]:
                return Dir(["devices", "drivers"])
            case ["bus", "pci", "devices"]:
                return Dir(sorted(fns))
            case ["bus", "pci", "devices", addr] if addr in fns:
                return Symlink(f"../../../devices/{PCI_ROOT}/{addr}")
            case ["bus", "pci", "drivers"]:
                return Dir([DRIVER])
            case ["bus", "pci", "drivers", driver] if driver == DRIVER:
                return Dir(sorted(fns))
            case ["bus", "pci", "drivers", driver, addr] if driver == DRIVER and addr in fns:
                return Symlink(f"../../../../devices/{PCI_ROOT}/{addr}")
            case ["devices"]:
                return Dir([PCI_ROOT, "virtual"])
            case ["devices", root] if root == PCI_ROOT:
                return Dir(sorted(fns))
            case ["devices", root, addr, *rest] if root == PCI_ROOT and addr in fns:
                return self._pci_device(nic, fns[addr], netdevs, rest)
            case ["devices", "virtual"]:
                return Dir(["net"])
            case ["devices", "virtual", "net"]:
                return Dir(virtual)
            case ["devices", "virtual", "net", name, *rest] if name in virtual:
                return self._netdev(nic, dpu, netdevs[name][0], None, rest)
        return None

    def _pci_device(
        self,
        nic: EmulatedNic,
        fn: _PciFunction,
        netdevs: dict[str, tuple[Link, PciAddress | None]],
        rest: list[str],
    ) -> Node | None:
        uevent = (
            f"DRIVER={DRIVER}\nPCI_CLASS={CLASS_ETHERNET:X}\n"
            f"PCI_ID={VENDOR_MELLANOX:04X}:{fn.device_id:04X}\nPCI_SLOT_NAME={fn.address}\n"
        ).encode()
        attrs: dict[str, Node] = {
            "vendor": File(_text(f"0x{VENDOR_MELLANOX:04x}")),
            "device": File(_text(f"0x{fn.device_id:04x}")),
            "class": File(_text(f"0x{CLASS_ETHERNET:06x}")),
            "numa_node": File(_text(0)),
            "driver": Symlink(f"../../../bus/pci/drivers/{DRIVER}"),
            "subsystem": Symlink("../../../bus/pci"),
            "uevent": File(lambda: uevent),
        }
        if fn.slot == PF:
            attrs.update(
                sriov_totalvfs=File(_text(nic.cfg.sriov_totalvfs)),
                sriov_numvfs=File(
                    _text(nic.numvfs), lambda data: self._backend.write_numvfs(nic, data)
                ),
                sriov_offset=File(_text(VF_OFFSET)),
                sriov_stride=File(_text(VF_STRIDE)),
                sriov_vf_device=File(_text(f"{DEVICE_CX6DX_VF:x}")),
                sriov_drivers_autoprobe=File(_text(1)),
            )
            for n in range(nic.numvfs):
                attrs[f"virtfn{n}"] = Symlink(f"../{vf_address(fn.address, n)}")
        elif fn.slot is not None:
            attrs["physfn"] = Symlink(f"../{nic.pf_address}")
        else:
            attrs["reset"] = File(
                _fails(errno.EACCES), lambda data: self._backend.reset_dpu(nic, data)
            )
        mine = {name: link for name, (link, addr) in netdevs.items() if addr == fn.address}
        match rest:
            case []:
                return Dir(sorted([*attrs, "net"]))
            case ["net"]:
                return Dir(sorted(mine))
            case ["net", name, *more] if name in mine:
                return self._netdev(nic, fn.slot is None, mine[name], fn.address, more)
            case [name] if name in attrs:
                return attrs[name]
        return None

    def _netdev(
        self, nic: EmulatedNic, dpu: bool, link: Link, device: PciAddress | None, rest: list[str]
    ) -> Node | None:
        port = nic.port_name(link) if dpu else None
        unsupported = _fails(errno.EOPNOTSUPP)
        attrs: dict[str, Node] = {
            "address": File(_text(link.mac)),
            "addr_len": File(_text(6)),
            "broadcast": File(_text(link.broadcast)),
            "carrier": File(_text(link.carrier) if link.up else _fails(errno.EINVAL)),
            "flags": File(_text(f"0x{link.flags:x}")),
            "ifalias": File(_text(link.alias)),
            "ifindex": File(_text(link.index)),
            "mtu": File(_text(link.mtu)),
            "operstate": File(_text(link.operstate)),
            "phys_port_name": File(unsupported if port is None else _text(port)),
            "phys_switch_id": File(unsupported if port is None else _text(nic.cfg.phys_switch_id)),
            "type": File(_text(link.type)),
        }
        if device is not None:
            attrs["device"] = Symlink(f"../../../{device}")
        uplink = dpu and link.alias == nic.uplink_marker
        match rest:
            case []:
                return Dir(sorted([*attrs, *(["smart_nic"] if uplink else [])]))
            case [name] if name in attrs:
                return attrs[name]
            case ["smart_nic", *more] if uplink:
                return self._smart_nic(nic, more)
        return None

    def _smart_nic(self, nic: EmulatedNic, rest: list[str]) -> Node | None:
        functions = {"pf": PF} | {f"vf{n}": n for n in range(nic.numvfs)}
        match rest:
            case []:
                return Dir(sorted(functions))
            case [fn] if fn in functions:
                return Dir(["config"])
            case [fn, "config"] if fn in functions:
                track = nic.tracks.get(functions[fn], FunctionTrack())
                mac = nic.vf_mac(functions[fn]) if track.host_end is None else track.host_end.mac
                config = f"MAC        : {mac}\nMaxTxRate  : 0\nState      : Follow\n".encode()
                return File(lambda: config)
        return None


class SysfsFuse(mfusepy.Operations):
    """FUSE operations over a SysfsTree, with all kernel caching disabled."""

    use_ns = True

    def __init__(self, tree: SysfsTree, backend: Backend, on_mount: Callable[[], None]) -> None:
        self._tree = tree
        self._backend = backend
        self._on_mount = on_mount
        self._time = time.time_ns()
        self._fuse: int | None = None

    def _lookup(self, path: str) -> Node:
        with self._backend.synced():
            return self._tree.lookup(path)

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        """Turn off entry/attr/negative caching and page caching, then report the mount."""
        if config_3 is not None:
            config_3.entry_timeout = 0.0
            config_3.attr_timeout = 0.0
            config_3.negative_timeout = 0.0
            config_3.direct_io = 1
        self._fuse = _libfuse.fuse_get_context().contents.value
        self._on_mount()

    def exit(self) -> None:
        """Make libfuse's loop end after the next request it serves."""
        if self._fuse is not None:
            _libfuse.fuse_exit(self._fuse)

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        """stat(2) of a node: sysfs-like modes and sizes."""
        node = self._lookup(path)
        attrs: dict[str, Any] = {
            "st_uid": 0,
            "st_gid": 0,
            "st_atime": self._time,
            "st_mtime": self._time,
            "st_ctime": self._time,
        }
        if isinstance(node, Dir):
            attrs.update(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        elif isinstance(node, Symlink):
            attrs.update(st_mode=stat.S_IFLNK | 0o777, st_nlink=1, st_size=len(node.target))
        else:
            mode = 0o644 if node.write is not None else 0o444
            attrs.update(st_mode=stat.S_IFREG | mode, st_nlink=1, st_size=SYSFS_FILE_SIZE)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        """Entries of a directory."""
        node = self._lookup(path)
        if not isinstance(node, Dir):
            raise mfusepy.FuseOSError(errno.ENOTDIR)
        return [".", "..", *node.names]

    def readlink(self, path: str) -> str:
        """Target of a symlink."""
        node = self._lookup(path)
        if not isinstance(node, Symlink):
            raise mfusepy.FuseOSError(errno.EINVAL)
        return node.target

    def open(self, path: str, flags: int) -> int:
        """Open an attribute; writing needs a writable one (EACCES, like sysfs)."""
        node = self._lookup(path)
        if isinstance(node, Dir):
            raise mfusepy.FuseOSError(errno.EISDIR)
        if isinstance(node, File) and flags & os.O_ACCMODE != os.O_RDONLY and node.write is None:
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        """Show an attribute (computed now, under the state lock)."""
        with self._backend.synced():
            node = self._tree.lookup(path)
            if not isinstance(node, File):
                raise mfusepy.FuseOSError(errno.EISDIR)
            data = node.read()
        return data[offset : offset + size]

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        """Store an attribute; the whole write is one store, as in sysfs."""
        node = self._lookup(path)
        if not isinstance(node, File) or node.write is None:
            raise mfusepy.FuseOSError(errno.EACCES)
        node.write(data)
        return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """Accept O_TRUNC on writable attributes (shell redirections do it)."""
        node = self._lookup(path)
        if not isinstance(node, File) or node.write is None:
            raise mfusepy.FuseOSError(errno.EACCES)
        return 0
