"""Per-interface sysctls (`/proc/sys/net/ipv4/conf/<ifname>/...`) of the calling
process's network namespace."""

from __future__ import annotations

from pathlib import Path

_PROC_IPV4_CONF = Path("/proc/sys/net/ipv4/conf")


def read_arp_ignore(ifname: str) -> int | None:
    """`net.ipv4.conf.<ifname>.arp_ignore`, or None when the interface has no IPv4 conf."""
    try:
        return int((_PROC_IPV4_CONF / ifname / "arp_ignore").read_text().strip())
    except (OSError, ValueError):
        return None


def write_arp_ignore(ifname: str, value: int) -> None:
    """Set `net.ipv4.conf.<ifname>.arp_ignore`."""
    (_PROC_IPV4_CONF / ifname / "arp_ignore").write_text(f"{value}\n")
