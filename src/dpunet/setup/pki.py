"""`dpunet pki`: a CA and one certificate per component, made with the `openssl` command.

The material every TLS hop of dpunet uses (docs/architecture.md section 2): OVN NB/SB
(`pssl:`/`ssl:`, where OVS checks that a peer's certificate chains to its CA) and the
controller's HTTPS API (where clients also check that the certificate names the address
they dialled, hence the subject alternative names). Layout of a directory, as OVS's own
`ovs-pki` keeps a CA and its requests apart: `ca-cert.pem` (public, copied everywhere),
`ca-privkey.pem` (stays here), `<name>-cert.pem` and `<name>-privkey.pem` per component.
Keys are ECDSA P-256; every file is written once (an existing one is an error).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dpunet.setup.plan import SetupError

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-privkey.pem"
CA_DAYS = 3650
CERT_DAYS = 825
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,62})$")
_DNS_RE = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$")
_KEY_OPTS = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certificate:
    """A component's key and certificate, and the CA certificate its peers check it with."""

    name: str
    private_key: Path
    certificate: Path
    ca_cert: Path


def _openssl(*args: str) -> None:
    try:
        proc = subprocess.run(
            ["openssl", *args], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError as exc:
        raise SetupError("the openssl command is not installed (apt install openssl)") from exc
    if proc.returncode != 0:
        raise SetupError(f"openssl {args[0]} failed: {(proc.stderr or proc.stdout).strip()}")


def _free(*paths: Path) -> None:
    taken = [str(p) for p in paths if p.exists()]
    if taken:
        raise SetupError(f"{', '.join(taken)} already exist(s); nothing was written")


def init_ca(directory: Path, subject: str = "dpunet CA") -> Path:
    """A new self-signed CA in `directory` (created); returns its certificate's path.
    SetupError when the directory already holds a CA."""
    key, cert = directory / CA_KEY, directory / CA_CERT
    _free(key, cert)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        _openssl(
            "req", "-x509", "-new", *_KEY_OPTS, "-keyout", str(key), "-out", str(cert),
            "-days", str(CA_DAYS), "-subj", f"/CN={subject}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    except SetupError:
        key.unlink(missing_ok=True)
        cert.unlink(missing_ok=True)
        raise
    key.chmod(0o600)
    return cert


def _alt_names(ips: Sequence[str], dns: Sequence[str]) -> str:
    names = []
    for value in ips:
        try:
            names.append(f"IP:{ipaddress.ip_address(value)}")
        except ValueError:
            raise SetupError(f"{value!r} is not an IP address") from None
    for value in dns:
        if not _DNS_RE.match(value):
            raise SetupError(f"{value!r} is not a DNS name")
        names.append(f"DNS:{value}")
    return ",".join(names)


def issue(
    directory: Path, name: str, ips: Sequence[str] = (), dns: Sequence[str] = ()
) -> Certificate:
    """A key and a certificate for component `name`, signed by the CA in `directory`, good
    for both ends of a connection; `ips`/`dns` are the addresses a client may dial it at
    (a server's). SetupError for a bad name or address, a missing CA or existing files."""
    if not _NAME_RE.match(name):
        raise SetupError(f"{name!r}: a component name is lowercase letters, digits, . and -")
    alt = _alt_names(ips, dns)
    ca_key, ca_cert = directory / CA_KEY, directory / CA_CERT
    if not (ca_key.exists() and ca_cert.exists()):
        raise SetupError(f"no CA in {directory} (make one with `dpunet pki init`)")
    key, cert = directory / f"{name}-privkey.pem", directory / f"{name}-cert.pem"
    _free(key, cert)
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    if alt:
        extensions.append(f"subjectAltName={alt}")
    with tempfile.TemporaryDirectory(prefix="dpunet-pki-") as tmp:
        csr, ext = Path(tmp) / "req.pem", Path(tmp) / "ext.cnf"
        ext.write_text("\n".join(extensions) + "\n")
        try:
            _openssl(
                "req", "-new", *_KEY_OPTS, "-keyout", str(key), "-out", str(csr),
                "-subj", f"/CN={name}",
            )  # fmt: skip
            key.chmod(0o600)
            _openssl(
                "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(CERT_DAYS),
                "-extfile", str(ext), "-out", str(cert),
            )  # fmt: skip
        except SetupError:
            key.unlink(missing_ok=True)
            cert.unlink(missing_ok=True)
            raise
    return Certificate(name, key, cert, ca_cert)


def certificate(directory: Path, name: str) -> Certificate:
    """The files of component `name` in `directory` (whether or not they exist yet)."""
    return Certificate(
        name,
        directory / f"{name}-privkey.pem",
        directory / f"{name}-cert.pem",
        directory / CA_CERT,
    )
