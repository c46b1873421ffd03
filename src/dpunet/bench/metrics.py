"""Reading the daemons' Prometheus metrics, and per-phase means from histogram deltas.

A daemon's `/metrics` may listen on 127.0.0.1 inside a node's namespace; the request
goes through a socket opened in that namespace. Phase means come from the difference
of `_sum` and `_count` before and after a run, so only that run's requests count.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[^}]*)\})? (?P<value>\S+)")
_LABEL = re.compile(r'(?P<k>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<v>(?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> Samples:
    """The samples of a Prometheus text exposition: (name, labels) -> value."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            continue
        labels = frozenset((lm["k"], lm["v"]) for lm in _LABEL.finditer(m["labels"] or ""))
        try:
            out[(m["name"], labels)] = float(m["value"])
        except ValueError:
            continue
    return out


def http_get(
    netns: str | None,
    address: str,
    path: str = "/metrics",
    timeout: float = 5.0,
    token: str | None = None,
) -> str:
    """GET `path` from `address` (HOST:PORT, or unix:PATH) inside namespace `netns`, with
    `token` as bearer token when given."""
    from dpunet.linux.netns import socket_at

    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = address[len("unix:") :]
    else:
        host, _, port = address.rpartition(":")
        sock = socket_at(netns, socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    with sock:
        sock.settimeout(timeout)
        sock.connect(target)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: metrics\r\n{auth}\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if " 200 " not in f"{status} ":
        raise OSError(f"GET {path} from {address}: {status}")
    return body.decode("utf-8", "replace")


@dataclass(frozen=True)
class PhaseMean:
    """Mean duration of one histogram series over a run, and how many observations."""

    mean: float | None
    count: int


def phase_means(
    before: Samples, after: Samples, histogram: str, label: str | None = None
) -> dict[str, PhaseMean]:
    """Mean of the observations of histogram `histogram` made between two scrapes, per
    series: keyed by the value of `label` prefixed by the other labels' values
    (`ADD:claim`), or "" for an unlabelled histogram."""
    out: dict[str, PhaseMean] = {}
    for (name, labels), total in after.items():
        if name != f"{histogram}_sum":
            continue
        as_dict = dict(labels)
        if label is not None and label not in as_dict:
            continue
        count_key = (f"{histogram}_count", labels)
        count = int(after.get(count_key, 0.0) - before.get(count_key, 0.0))
        delta = total - before.get((name, labels), 0.0)
        parts = [v for k, v in sorted(as_dict.items()) if k != label]
        if label is not None:
            parts.append(as_dict[label])
        out[":".join(parts)] = PhaseMean(delta / count if count > 0 else None, count)
    return out
