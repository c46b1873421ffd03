"""ethtool features of a netdev (`ethtool -k` / `ethtool -K`): through pyroute2, in the
network namespace of the calling process, and tx checksum offload through the SIOCETHTOOL
ioctl on a socket of any namespace.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2.ethtool import Ethtool

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # every tx checksum feature at once, as `ethtool -K dev tx off`
IFREQ_SIZE = 40


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


def disable_tx_checksum(ifname: str, sock: socket.socket | None = None) -> None:
    """`ethtool -K <ifname> tx off`: veths attached to userspace OVS need it (OVS's
    netdev datapath does not complete offloaded checksums). `sock`: an AF_INET socket in
    the namespace of `ifname` (default: this process's)."""
    command = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(command))
    target = sock if sock is not None else socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(target.fileno(), SIOCETHTOOL, ifreq.ljust(IFREQ_SIZE, b"\0"))
    except OSError as exc:
        raise EthtoolError(f"cannot turn tx checksum offload off on {ifname}: {exc}") from exc
    finally:
        if sock is None:
            target.close()
