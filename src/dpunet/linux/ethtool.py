"""ethtool on a netdev: features (`ethtool -k` / `ethtool -K`) through pyroute2, in the
network namespace of the calling process; through the SIOCETHTOOL ioctl on a socket of
any namespace, tx checksum offload off, statistics (`ethtool -S`, `read_stats`) and the
active features (`read_active_features`).

The ioctl takes `struct ifreq { char name[16]; void *data; }` pointing at a command
buffer: ETHTOOL_GSSET_INFO for the number of strings of a set, ETHTOOL_GSTRINGS for
their names (32 bytes each), ETHTOOL_GSTATS for the u64 values (statistics set),
ETHTOOL_GFEATURES for the feature bits (features set). It acts in the network namespace
of the socket it is made on.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2.ethtool import Ethtool

from dpunet.linux.netns import socket_at

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # every tx checksum feature at once, as `ethtool -K dev tx off`
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETH_SS_STATS = 1
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
IFNAMSIZ = 16
IFREQ_SIZE = 40
_FEATURE_BLOCK = struct.Struct("=IIII")  # available, requested, active, never_changed


class EthtoolError(Exception):
    """Reading or changing a netdev's features failed; the message names the device."""


@dataclass(frozen=True)
class Feature:
    """An ethtool feature of a netdev: enabled now, and whether the device lets it change."""

    enabled: bool
    changeable: bool


def read_feature(ifname: str, name: str) -> Feature | None:
    """The feature `name` (e.g. `hw-tc-offload`) of `ifname`, or None when unknown."""
    with Ethtool() as eth:
        try:
            features = eth.get_features(ifname).features
        except OSError as exc:
            raise EthtoolError(f"cannot read ethtool features of {ifname}: {exc.strerror}") from exc
    feature = features.get(name)
    if feature is None:
        return None
    return Feature(enabled=bool(feature.enable), changeable=bool(feature.available))


def _edit(ifname: str, what: str, edit: Callable[[Mapping[str, Any]], None]) -> None:
    with Ethtool() as eth:
        try:
            features = eth.get_features(ifname)
            edit(features.features)
            eth.set_features(ifname, features)
        except OSError as exc:
            raise EthtoolError(f"cannot {what} on {ifname}: {exc.strerror}") from exc


def set_features(ifname: str, changes: Mapping[str, bool]) -> None:
    """`ethtool -K <ifname> <name> on|off ...`; KeyError for a feature the kernel lacks."""

    def edit(features: Mapping[str, Any]) -> None:
        for name, enabled in changes.items():
            features[name].enable = enabled

    _edit(ifname, "set " + ", ".join(changes), edit)


def _ioctl(
    sock: socket.socket, ifname: str, command: ctypes.Array[ctypes.c_char], what: str
) -> None:
    """SIOCETHTOOL on `ifname` with the `command` buffer (the kernel writes its answer
    there); EthtoolError naming `what` on failure."""
    ifreq = struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(command))
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq.ljust(IFREQ_SIZE, b"\0"))
    except OSError as exc:
        raise EthtoolError(f"cannot {what} on {ifname}: {exc}") from exc


def disable_tx_checksum(ifname: str, sock: socket.socket | None = None) -> None:
    """`ethtool -K <ifname> tx off`: veths attached to userspace OVS need it (OVS's
    netdev datapath does not complete offloaded checksums). `sock`: an AF_INET socket in
    the namespace of `ifname` (default: this process's)."""
    command = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    target = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _ioctl(target, ifname, command, "turn tx checksum offload off")
    finally:
        if sock is None:
            target.close()


def parse_strings(data: bytes, count: int) -> list[str]:
    """The `data` of ETHTOOL_GSTRINGS: `count` NUL-padded names of 32 bytes."""
    return [
        data[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN]
        .split(b"\0", 1)[0]
        .decode("ascii", "replace")
        for i in range(count)
    ]


def parse_stats(names: list[str], data: bytes) -> dict[str, int]:
    """The `data` of ETHTOOL_GSTATS (u64 values in string order) -> {name: value}."""
    values = struct.unpack_from(f"={len(names)}Q", data)
    return dict(zip(names, (int(v) for v in values), strict=True))


def parse_features(names: list[str], data: bytes) -> dict[str, bool]:
    """The blocks of ETHTOOL_GFEATURES -> {feature: active}."""
    out = {}
    for i, name in enumerate(names):
        if not name:
            continue
        block = i // 32
        if (block + 1) * _FEATURE_BLOCK.size > len(data):
            break
        active = _FEATURE_BLOCK.unpack_from(data, block * _FEATURE_BLOCK.size)[2]
        out[name] = bool(active & (1 << (i % 32)))
    return out


class _StringSets:
    """The ethtool reads of string sets (statistics, features) on one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def set_size(self, ifname: str, string_set: int) -> int:
        buf = ctypes.create_string_buffer(
            struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0, 1 << string_set, 0)
        )
        _ioctl(self.sock, ifname, buf, f"read the size of string set {string_set}")
        mask = struct.unpack_from("=Q", buf.raw, 8)[0]
        return int(struct.unpack_from("=I", buf.raw, 16)[0]) if mask else 0

    def strings(self, ifname: str, string_set: int, count: int) -> list[str]:
        header = struct.pack("=III", ETHTOOL_GSTRINGS, string_set, count)
        buf = ctypes.create_string_buffer(header + bytes(count * ETH_GSTRING_LEN))
        _ioctl(self.sock, ifname, buf, f"read the strings of set {string_set}")
        return parse_strings(buf.raw[len(header) :], count)

    def stats(self, ifname: str) -> dict[str, int]:
        count = self.set_size(ifname, ETH_SS_STATS)
        if not count:
            return {}
        names = self.strings(ifname, ETH_SS_STATS, count)
        header = struct.pack("=II", ETHTOOL_GSTATS, count)
        buf = ctypes.create_string_buffer(header + bytes(8 * count))
        _ioctl(self.sock, ifname, buf, "read statistics")
        return parse_stats(names, buf.raw[len(header) :])

    def features(self, ifname: str) -> dict[str, bool]:
        count = self.set_size(ifname, ETH_SS_FEATURES)
        if not count:
            return {}
        names = self.strings(ifname, ETH_SS_FEATURES, count)
        blocks = (count + 31) // 32
        header = struct.pack("=II", ETHTOOL_GFEATURES, blocks)
        buf = ctypes.create_string_buffer(header + bytes(blocks * _FEATURE_BLOCK.size))
        _ioctl(self.sock, ifname, buf, "read features")
        return parse_features(names, buf.raw[len(header) :])


@contextlib.contextmanager
def _string_sets_at(netns: str | None) -> Iterator[_StringSets]:
    sock = socket_at(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        yield _StringSets(sock)
    finally:
        sock.close()


def read_stats(netns: str | None, ifname: str) -> dict[str, int]:
    """`ethtool -S <ifname>` in namespace `netns` (a path; None: this one) as a dict;
    EthtoolError when the device cannot be read."""
    with _string_sets_at(netns) as sets:
        return sets.stats(ifname)


def read_active_features(netns: str | None, ifname: str) -> dict[str, bool]:
    """Every feature of `ifname` in namespace `netns` with whether it is active;
    EthtoolError when the device cannot be read."""
    with _string_sets_at(netns) as sets:
        return sets.features(ifname)


def tx_checksum_on(ifname: str) -> bool | None:
    """Whether any tx checksum offload of `ifname` (in this namespace) is on, as
    `ethtool -k` shows `tx-checksumming`; None when there is no such netdev."""
    try:
        features = read_active_features(None, ifname)
    except EthtoolError:
        return None
    return any(on for name, on in features.items() if name.startswith("tx-checksum"))
