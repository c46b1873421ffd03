"""Representor counters (`ethtool -S`) and the `hw-tc-offload` feature, read through the
Linux layer (`dpunet.linux.ethtool`) in the namespace of the DPU being verified.

On an mlx5 representor, `rx_packets`/`tx_packets` (and `_bytes`) count what crossed the
representor netdev, i.e. the software (slow) path, while `vport_rx_packets`/
`vport_tx_packets` are the eSwitch vport's hardware counters: everything the VF sent or
received, offloaded or not. Their difference is the traffic the hardware switched alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dpunet.linux.ethtool import read_active_features

HW_TC_OFFLOAD = "hw-tc-offload"


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


def vport_counters(stats: Mapping[str, int]) -> VportCounters | None:
    """The software/hardware pairs of mlx5 representor statistics; None without vport ones."""
    keys = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes")
    if not all(f"vport_{k}" in stats for k in keys):
        return None
    return VportCounters(*(stats.get(k, 0) for k in keys), *(stats[f"vport_{k}"] for k in keys))


def read_hw_tc_offload(netns: str | None, device: str) -> bool | None:
    """Whether `hw-tc-offload` is on for `device` (None when the device lacks the feature)."""
    return read_active_features(netns, device).get(HW_TC_OFFLOAD)
