"""A netdev's tx checksum offload, read and turned off through the ethtool ioctls, as the
`ethtool` command sees it (root: a veth pair in a namespace of its own)."""

from __future__ import annotations

import os
import subprocess

import pytest

from dpunet.linux import ethtool
from dpunet.linux.netns import iproute_at, run_at

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a veth pair)")


def tx_checksumming(netns: str, dev: str) -> str:
    """`ethtool -k <dev>`'s tx-checksumming line, as the command prints it."""
    out = subprocess.run(
        ["nsenter", f"--net={netns}", "ethtool", "-k", dev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    [line] = [line for line in out.splitlines() if line.startswith("tx-checksumming:")]
    return line.split(":", 1)[1].split()[0]


def test_the_offload_is_read_and_turned_off_on_one_end_only(other_netns: str) -> None:
    with iproute_at(other_netns) as ipr:
        ipr.link("add", ifname="a", kind="veth", peer="b")

    def on(dev: str) -> bool | None:
        return run_at(other_netns, lambda: ethtool.tx_checksum_on(dev))

    assert on("a") is True and tx_checksumming(other_netns, "a") == "on"
    run_at(other_netns, lambda: ethtool.disable_tx_checksum("a"))
    assert on("a") is False and tx_checksumming(other_netns, "a") == "off"
    assert on("b") is True and tx_checksumming(other_netns, "b") == "on"
    assert on("missing") is None
