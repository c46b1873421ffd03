"""A tiny service backend and its client, for the lab's service checks (standard library only).

`serve`: answers every TCP connection and every UDP datagram with its name and the
client address it sees, until the network namespace file it watches disappears (the pod
was removed) or it is killed. `probe`: sends COUNT requests to an address and prints, as
JSON, how many answers came from which name, how many attempts were refused (TCP reset /
ICMP unreachable) or timed out, and the client addresses the backends saw. `probe-many`:
one request to each of several `PROTO:HOST:PORT` targets at once (a thread each), and
prints, as JSON, each target's answer.
Run inside a namespace with `ip netns exec` / `nsenter --net`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

_TARGET = re.compile(r"^(tcp|udp):[0-9.]+:[0-9]{1,5}$")


class _Tcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(name: str, tcp: list[int], udp: list[int], watch: str | None, ready: str | None) -> None:
    """Answer with `name` on the given ports until `watch` is gone."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(f"{name} {self.client_address[0]}\n".encode())

    servers: list[socketserver.BaseServer] = [_Tcp(("0.0.0.0", p), Handler) for p in tcp]
    udp_socks = []
    for port in udp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        udp_socks.append(sock)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for sock in udp_socks:
        threading.Thread(target=_echo_name, args=(sock, name), daemon=True).start()
    if ready:
        Path(ready).write_text(f"{os.getpid()}\n")
    while watch is None or os.path.exists(watch):
        time.sleep(0.5)


def _echo_name(sock: socket.socket, name: str) -> None:
    while True:
        _, peer = sock.recvfrom(2048)
        sock.sendto(f"{name} {peer[0]}\n".encode(), peer)


def _once(protocol: str, host: str, port: int, timeout: float) -> tuple[str, str | None]:
    """One request: (the answering name, the client address it saw), or (`refused` /
    `reset` / `timeout` / `error:<text>`, None). UDP asks up to three times (a datagram
    lost to a busy userspace datapath is not retransmitted by anyone else)."""
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    tries = 3 if protocol == "udp" else 1
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout / tries)
        try:
            sock.connect((host, port))
            data = b""
            for attempt in range(tries):
                if protocol == "tcp":
                    data = _read_all(sock)
                    break
                sock.send(b"?\n")
                try:
                    data = sock.recv(256)
                    break
                except TimeoutError:
                    if attempt == tries - 1:
                        raise
        except ConnectionRefusedError:
            return "refused", None
        except ConnectionResetError:
            return "reset", None
        except TimeoutError:
            return "timeout", None
        except OSError as exc:
            return f"error:{exc.strerror or exc}", None
    name, _, peer = data.decode(errors="replace").strip().partition(" ")
    return name or "empty", peer or None


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(256):
        chunks.append(chunk)
    return b"".join(chunks)


def probe(protocol: str, host: str, port: int, count: int, timeout: float) -> dict[str, object]:
    """`count` requests, each from a new source port (a new connection / conntrack entry)."""
    answers: dict[str, int] = {}
    peers: set[str] = set()
    started = time.monotonic()
    for _ in range(count):
        answer, peer = _once(protocol, host, port, timeout)
        answers[answer] = answers.get(answer, 0) + 1
        if peer:
            peers.add(peer)
    return {
        "answers": answers,
        "peers": sorted(peers),
        "seconds": round(time.monotonic() - started, 3),
    }


def probe_many(targets: list[str], timeout: float) -> dict[str, str]:
    """One request to each `PROTO:HOST:PORT` target, all at once: target -> answer."""
    answers: dict[str, str] = {}

    def one(target: str) -> None:
        protocol, host, port = target.split(":")
        answers[target] = _once(protocol, host, int(port), timeout)[0]

    threads = [threading.Thread(target=one, args=(t,), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def main(argv: list[str] | None = None) -> None:
    """`serve NAME --tcp P --udp P --watch PATH --ready PATH`, `probe PROTO HOST PORT` or
    `probe-many PROTO:HOST:PORT...`."""
    parser = argparse.ArgumentParser(prog="python -m dpunet.lab.responder")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("name")
    s.add_argument("--tcp", type=int, action="append", default=[])
    s.add_argument("--udp", type=int, action="append", default=[])
    s.add_argument("--watch")
    s.add_argument("--ready")
    p = sub.add_parser("probe")
    p.add_argument("protocol", choices=["tcp", "udp"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=3.0, help="per request (s)")
    m = sub.add_parser("probe-many")
    m.add_argument("targets", nargs="+", metavar="PROTO:HOST:PORT")
    m.add_argument("--timeout", type=float, default=3.0, help="per request (s)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.name, args.tcp, args.udp, args.watch, args.ready)
    elif args.command == "probe-many":
        bad = [t for t in args.targets if not _TARGET.match(t)]
        if bad:
            parser.error(f"targets must be tcp|udp:HOST:PORT: {' '.join(bad)}")
        json.dump(probe_many(args.targets, args.timeout), sys.stdout)
    else:
        json.dump(probe(args.protocol, args.host, args.port, args.count, args.timeout), sys.stdout)


if __name__ == "__main__":
    main()
