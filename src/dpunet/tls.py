"""TLS settings the daemons share: the PEM files of a hop, their check at start, and the
rule that a plain transport may leave the machine only with `insecure: true`, which logs a
warning at start (docs/architecture.md section 2, "What is encrypted").

A unix socket or a loopback address never leaves the machine, so it needs no TLS.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import ssl
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from dpunet.logs import event

_TCP_RE = re.compile(r"^tcp:(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]]+):\d{1,5}$")


class TlsError(Exception):
    """TLS material is missing, unreadable or does not fit; the message names the field."""


class TlsFiles(BaseModel):
    """This side's key and certificate, and the CA the peer's certificate must chain to
    (an OVSDB `ssl:` client, the API server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    private_key: Path
    certificate: Path
    ca_cert: Path


class ClientTls(BaseModel):
    """An HTTPS client's trust: the CA the server's certificate must chain to, and
    optionally a client certificate (for a server that asks for one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_cert: Path
    certificate: Path | None = None
    private_key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> ClientTls:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        return self


def client_context(files: ClientTls | None) -> ssl.SSLContext | None:
    """The `ControllerClient` context of an `https://` controller URL with these files
    (None: the client's default, the system's CAs); ClientError for unusable files."""
    if files is None:
        return None
    from dpunet.contract.client import tls_context  # httpx and the API models: lease only

    return tls_context(
        str(files.ca_cert),
        str(files.certificate) if files.certificate else None,
        str(files.private_key) if files.private_key else None,
    )


def check_files(field: str, files: TlsFiles | ClientTls) -> None:
    """Load the files as a TLS endpoint would; TlsError naming `field` when one is missing,
    unreadable, not PEM, or the key does not match the certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        ctx.load_verify_locations(cafile=str(files.ca_cert))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{field}.ca_cert {files.ca_cert}: {_reason(exc)}") from exc
    if files.certificate is None or files.private_key is None:
        return
    try:
        ctx.load_cert_chain(str(files.certificate), str(files.private_key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(
            f"{field}: certificate {files.certificate} / private_key {files.private_key}: "
            f"{_reason(exc)}"
        ) from exc


def _reason(exc: OSError | ssl.SSLError) -> str:
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_remote(remote: str) -> bool:
    """Whether an OVSDB remote is plain TCP to another machine (`tcp:HOST:PORT`, HOST not
    loopback)."""
    match = _TCP_RE.match(remote)
    return match is not None and not _loopback(match["host"])


def plain_url(url: str) -> bool:
    """Whether a controller URL is plain HTTP to another machine."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not _loopback(parts.hostname or "")


def plain_listen(address: str) -> bool:
    """Whether a listen address (HOST:PORT or unix:PATH) is reachable from other machines."""
    if address.startswith("unix:"):
        return False
    host = address.rpartition(":")[0]
    return not (host and _loopback(host))


def require_tls(field: str, plain: Iterable[str], insecure: bool) -> None:
    """TlsError naming `field` when `plain` (plain transports to other machines) is not
    empty and `insecure` is not set; a daemon checks this at start."""
    offenders = list(plain)
    if offenders and not insecure:
        raise TlsError(
            f"{field}: {', '.join(offenders)} is plain text on the network; use TLS "
            "(ssl:/https with certificates, docs/architecture.md section 2) or set "
            "insecure: true"
        )


def warn_insecure(log: logging.Logger, plain: Iterable[str]) -> None:
    """The start-up warning of a daemon whose `insecure` setting is on."""
    event(
        log,
        "insecure",
        logging.WARNING,
        plain=",".join(plain) or "-",
        note="insecure: true: plain transports allowed, anyone on the network can read "
        "and change this traffic",
    )
