"""Representor counters (`ethtool -S`) and the `hw-tc-offload` feature, via the ethtool ioctl.

SIOCETHTOOL with `struct ifreq { char name[16]; void *data; }` pointing at a command
buffer: ETHTOOL_GSSET_INFO for the number of strings of a set, ETHTOOL_GSTRINGS for
their names (32 bytes each), ETHTOOL_GSTATS for the u64 values (statistics set), and
ETHTOOL_GFEATURES for the feature bits (features set). The ioctl acts in the network
namespace of the socket it is made on, so a socket opened in a node's namespace reads
that node's devices.

On an mlx5 representor, `rx_packets`/`tx_packets` (and `_bytes`) count what crossed the
representor netdev, i.e. the software (slow) path, while `vport_rx_packets`/
`vport_tx_packets` are the eSwitch vport's hardware counters: everything the VF sent or
received, offloaded or not. Their difference is the traffic the hardware switched alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import socket
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETH_SS_STATS = 1
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
_IFNAMSIZ = 16
_FEATURE_BLOCK = struct.Struct("=IIII")  # available, requested, active, never_changed
HW_TC_OFFLOAD = "hw-tc-offload"


class EthtoolStatsError(OSError):
    """An ethtool ioctl failed; the message names the device."""


@dataclass(frozen=True)
class VportCounters:
    """Software (representor netdev) vs hardware (eSwitch vport) counters of a representor.

    `rx`/`tx` are from the representor's point of view: its rx is what the VF sent."""

    sw_rx_packets: int
    sw_tx_packets: int
    sw_rx_bytes: int
    sw_tx_bytes: int
    hw_rx_packets: int
    hw_tx_packets: int
    hw_rx_bytes: int
    hw_tx_bytes: int

    @property
    def offloaded_packets(self) -> int:
        """Packets the hardware switched without the representor seeing them."""
        return max(self.hw_rx_packets - self.sw_rx_packets, 0) + max(
            self.hw_tx_packets - self.sw_tx_packets, 0
        )

    @property
    def offloaded_share(self) -> float | None:
        """Share of the vport's packets that never reached software (None: no traffic)."""
        total = self.hw_rx_packets + self.hw_tx_packets
        return self.offloaded_packets / total if total else None


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


def vport_counters(stats: Mapping[str, int]) -> VportCounters | None:
    """The software/hardware pairs of mlx5 representor statistics; None without vport ones."""
    keys = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")
    if not all(f"vport_{k}" in stats for k in keys):
        return None
    return VportCounters(*(stats.get(k, 0) for k in keys), *(stats[f"vport_{k}"] for k in keys))


class _Ethtool:
    """ioctl calls on one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _ioctl(self, device: str, buf: ctypes.Array[ctypes.c_char]) -> None:
        ifreq = struct.pack(f"{_IFNAMSIZ}sP", device.encode(), ctypes.addressof(buf))
        try:
            fcntl.ioctl(self.sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise EthtoolStatsError(
                exc.errno, f"ethtool on {device}: {exc.strerror or exc}"
            ) from exc

    def set_size(self, device: str, string_set: int) -> int:
        buf = ctypes.create_string_buffer(
            struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0, 1 << string_set, 0)
        )
        self._ioctl(device, buf)
        mask = struct.unpack_from("=Q", buf.raw, 8)[0]
        return int(struct.unpack_from("=I", buf.raw, 16)[0]) if mask else 0

    def strings(self, device: str, string_set: int, count: int) -> list[str]:
        header = struct.pack("=III", ETHTOOL_GSTRINGS, string_set, count)
        buf = ctypes.create_string_buffer(header + bytes(count * ETH_GSTRING_LEN))
        self._ioctl(device, buf)
        return parse_strings(buf.raw[len(header) :], count)

    def stats(self, device: str) -> dict[str, int]:
        count = self.set_size(device, ETH_SS_STATS)
        if not count:
            return {}
        names = self.strings(device, ETH_SS_STATS, count)
        header = struct.pack("=II", ETHTOOL_GSTATS, count)
        buf = ctypes.create_string_buffer(header + bytes(8 * count))
        self._ioctl(device, buf)
        return parse_stats(names, buf.raw[len(header) :])

    def features(self, device: str) -> dict[str, bool]:
        count = self.set_size(device, ETH_SS_FEATURES)
        if not count:
            return {}
        names = self.strings(device, ETH_SS_FEATURES, count)
        blocks = (count + 31) // 32
        header = struct.pack("=II", ETHTOOL_GFEATURES, blocks)
        buf = ctypes.create_string_buffer(header + bytes(blocks * _FEATURE_BLOCK.size))
        self._ioctl(device, buf)
        return parse_features(names, buf.raw[len(header) :])


@contextlib.contextmanager
def ethtool_at(netns: str | None) -> Iterator[_Ethtool]:
    """ethtool ioctls on devices of namespace `netns` (a path; None: this one)."""
    from dpunet.linux.netns import socket_at

    sock = socket_at(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        yield _Ethtool(sock)
    finally:
        sock.close()


def read_stats(netns: str | None, device: str) -> dict[str, int]:
    """`ethtool -S <device>` as a dict; EthtoolStatsError when the device has none."""
    with ethtool_at(netns) as eth:
        return eth.stats(device)


def read_hw_tc_offload(netns: str | None, device: str) -> bool | None:
    """Whether `hw-tc-offload` is on for `device` (None when the device lacks the feature)."""
    with ethtool_at(netns) as eth:
        return eth.features(device).get(HW_TC_OFFLOAD)
