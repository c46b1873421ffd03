"""ethtool features of a netdev (`ethtool -k` / `ethtool -K`) through pyroute2.

Everything acts on the network namespace of the calling process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2.ethtool import Ethtool

TX_CHECKSUM_PREFIX = "tx-checksum-"


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


def disable_tx_checksum(ifname: str) -> None:
    """`ethtool -K <ifname> tx off`: veths attached to userspace OVS need it (OVS's
    netdev datapath does not complete offloaded checksums)."""

    def edit(features: Mapping[str, Any]) -> None:
        for name, feature in features.items():
            if name.startswith(TX_CHECKSUM_PREFIX) and feature.available:
                feature.enable = False

    _edit(ifname, "turn tx checksum offload off", edit)
