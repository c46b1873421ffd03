"""ethtool ioctl buffers (ETHTOOL_GSTRINGS / GSTATS / GFEATURES) and mlx5 vport counters."""

from __future__ import annotations

import struct

from dpunet.linux import ethtool
from dpunet.verify import ethtool_stats as et

# `ethtool -S pf0vf1` on a BlueField-2 representor (mlx5e_rep): the netdev's own counters
# (software path) and the eSwitch vport's (hardware: everything the VF sent/received).
MLX5_REP_STATS = {
    "rx_packets": 120,
    "rx_bytes": 11760,
    "tx_packets": 80,
    "tx_bytes": 7840,
    "rx_csum_complete": 0,
    "tx_queue_stopped": 0,
    "vport_rx_packets": 100080,
    "vport_rx_bytes": 9807840,
    "vport_tx_packets": 100120,
    "vport_tx_bytes": 9811760,
    "vport_rx_dropped": 0,
}
# `ethtool -S` of a veth (the lab's emulated representor): no vport counters.
VETH_STATS = {"peer_ifindex": 4, "rx_queue_0_xdp_packets": 0, "tx_queue_0_xdp_xmit": 0}


def gstrings(names: list[str]) -> bytes:
    return b"".join(n.encode().ljust(ethtool.ETH_GSTRING_LEN, b"\0") for n in names)


def test_strings_and_stats_buffers() -> None:
    names = ["rx_packets", "tx_packets", "vport_rx_packets"]
    parsed = ethtool.parse_strings(gstrings(names), 3)
    assert parsed == names
    values = struct.pack("=3Q", 5, 6, 2**40)
    assert ethtool.parse_stats(parsed, values) == {
        "rx_packets": 5,
        "tx_packets": 6,
        "vport_rx_packets": 2**40,
    }


def test_features_blocks() -> None:
    names = [f"f{i}" for i in range(40)]
    names[33] = et.HW_TC_OFFLOAD
    block0 = struct.pack("=IIII", 0xFFFFFFFF, 0, 1 << 3, 0)  # f3 active
    block1 = struct.pack("=IIII", 0xFFFFFFFF, 0, 1 << 1, 0)  # bit 33: hw-tc-offload active
    features = ethtool.parse_features(names, block0 + block1)
    assert features["f3"] and not features["f4"]
    assert features[et.HW_TC_OFFLOAD]
    inactive = ethtool.parse_features(names, block0 + struct.pack("=IIII", 0, 0, 0, 0))
    assert not inactive[et.HW_TC_OFFLOAD]


def test_vport_counters_of_a_representor() -> None:
    v = et.vport_counters(MLX5_REP_STATS)
    assert v is not None
    assert (v.sw_rx_packets, v.hw_rx_packets) == (120, 100080)
    assert v.offloaded_packets == (100080 - 120) + (100120 - 80)
    assert v.offloaded_share is not None and 0.99 < v.offloaded_share < 1.0


def test_no_vport_counters_on_a_veth() -> None:
    assert et.vport_counters(VETH_STATS) is None


def test_idle_representor_has_no_share() -> None:
    idle = {k: 0 for k in MLX5_REP_STATS}
    v = et.vport_counters(idle)
    assert v is not None and v.offloaded_share is None
