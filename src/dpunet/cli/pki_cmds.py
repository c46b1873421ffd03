"""`dpunet pki`: the CA and per-component certificates of dpunet's TLS hops (docs/lab.md
"TLS", docs/kubernetes.md); `dpunet.setup.pki` does the work with `openssl`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from dpunet.cli.output import console, fail
from dpunet.setup import pki
from dpunet.setup.plan import SetupError

_DIR = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The PKI directory (the CA's key stays there).",
)


@click.group()
def pki_group() -> None:
    """A CA and per-component certificates for NB/SB (ssl:) and the controller API (https)."""


@pki_group.command("init")
@_DIR
@click.option("--subject", default="dpunet CA", show_default=True, help="The CA's common name.")
def init(directory: Path, subject: str) -> None:
    """Make a new CA in DIR (refuses to replace one)."""
    try:
        cert = pki.init_ca(directory, subject)
    except SetupError as exc:
        fail(escape(str(exc)))
    console.print(f"CA certificate: {escape(str(cert))}  (copy it to every component)")


@pki_group.command("cert")
@click.argument("name")
@_DIR
@click.option("--ip", "ips", multiple=True, help="An address clients dial it at (repeatable).")
@click.option("--dns", "dns", multiple=True, help="A DNS name clients dial it at (repeatable).")
def cert(name: str, directory: Path, ips: tuple[str, ...], dns: tuple[str, ...]) -> None:
    """Make NAME-privkey.pem and NAME-cert.pem in DIR, signed by its CA (servers: give the
    --ip/--dns their clients dial)."""
    try:
        made = pki.issue(directory, name, ips, dns)
    except SetupError as exc:
        fail(escape(str(exc)))
    for what, path in (
        ("private key", made.private_key),
        ("certificate", made.certificate),
        ("CA certificate", made.ca_cert),
    ):
        console.print(f"{what}: {escape(str(path))}")
