""" "The container can reach its gateway": ICMP echo from inside a pod's namespace.

A raw ICMP socket opened in the pod's namespace sends an echo request every few
milliseconds until the first reply from the gateway arrives; the time of that reply is
the moment the pod's network works end to end (VF, representor, br-int, OVN's router
port answering). No subprocess, so nothing but the network is timed.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import time

ECHO_REQUEST = 8
ECHO_REPLY = 0
RESEND_INTERVAL = 0.005


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"dpunet-bench") -> bytes:
    """An ICMP echo request packet."""
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def is_reply(packet: bytes, ident: int, source: str, sender: str) -> bool:
    """Whether a raw IPv4 packet is an echo reply to `ident` from `source`."""
    if len(packet) < 28 or sender != source:
        return False
    ihl = (packet[0] & 0x0F) * 4
    kind, _, _, reply_id = struct.unpack_from("!BBHH", packet, ihl)
    return bool(kind == ECHO_REPLY and reply_id == ident)


def wait_reachable(netns: str, address: str, timeout: float = 30.0) -> float:
    """Ping `address` from namespace `netns` (a path) until it answers; returns the
    `time.perf_counter()` of the first reply. TimeoutError when none comes in time."""
    from dpunet.linux.netns import socket_at

    ident = os.getpid() & 0xFFFF ^ (hash(netns) & 0xFFFF)
    deadline = time.perf_counter() + timeout
    with socket_at(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setblocking(False)
        seq = 0
        while True:
            now = time.perf_counter()
            if now > deadline:
                raise TimeoutError(f"{address} did not answer from {netns} in {timeout:g}s")
            seq = (seq + 1) & 0xFFFF
            with contextlib.suppress(OSError):  # no route yet (interface being configured)
                sock.sendto(echo_request(ident, seq), (address, 0))
            until = min(now + RESEND_INTERVAL, deadline)
            while (left := until - time.perf_counter()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                packet, (sender, _) = sock.recvfrom(2048)
                if is_reply(packet, ident, address, sender):
                    return time.perf_counter()
