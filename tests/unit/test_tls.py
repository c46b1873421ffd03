"""TLS material and rules: `dpunet pki` (openssl), the check of the files at start, what
counts as a plain transport off the machine."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpunet.cli.pki_cmds import pki_group
from dpunet.contract.client import ClientError, tls_context
from dpunet.setup import pki
from dpunet.setup.plan import SetupError
from dpunet.tls import (
    ClientTls,
    TlsError,
    TlsFiles,
    check_files,
    plain_listen,
    plain_remote,
    plain_url,
    require_tls,
)


def test_pki_makes_a_ca_and_certificates_that_chain(tmp_path: Path) -> None:
    ca = pki.init_ca(tmp_path / "pki")
    made = pki.issue(tmp_path / "pki", "controller", ips=["192.0.2.10"], dns=["ctl.example"])
    assert (made.ca_cert, made.private_key.stat().st_mode & 0o777) == (ca, 0o600)
    text = subprocess.run(
        ["openssl", "x509", "-in", str(made.certificate), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IP Address:192.0.2.10" in text and "DNS:ctl.example" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    check_files("api_tls", TlsFiles(**_files(made)))
    # a server with it is accepted by a client trusting the CA, for the name it carries
    ctx = tls_context(str(ca))
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname


def _files(cert: pki.Certificate) -> dict[str, Path]:
    return {
        "private_key": cert.private_key,
        "certificate": cert.certificate,
        "ca_cert": cert.ca_cert,
    }


def test_pki_refuses_and_changes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    with pytest.raises(SetupError, match="no CA"):
        pki.issue(d, "x")
    pki.init_ca(d)
    before = sorted(d.iterdir())
    with pytest.raises(SetupError, match="already exist"):
        pki.init_ca(d)
    for name, ips in (("Bad Name", ()), ("ok", ("not-an-ip",))):
        with pytest.raises(SetupError):
            pki.issue(d, name, ips=ips)
    assert sorted(d.iterdir()) == before
    pki.issue(d, "ok")
    with pytest.raises(SetupError, match="already exist"):
        pki.issue(d, "ok")


def test_pki_command(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert CliRunner().invoke(pki_group, ["init", "--dir", d]).exit_code == 0
    result = CliRunner().invoke(pki_group, ["cert", "dpu1", "--dir", d])
    assert result.exit_code == 0 and "dpu1-cert.pem" in result.output
    again = CliRunner().invoke(pki_group, ["cert", "dpu1", "--dir", d])
    assert again.exit_code == 1 and "already exist" in again.output


def test_bad_files_are_named(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    pki.init_ca(d)
    one, other = pki.issue(d, "one"), pki.issue(d, "other")
    with pytest.raises(TlsError, match=r"ovn_ssl\.ca_cert"):
        check_files("ovn_ssl", TlsFiles(**{**_files(one), "ca_cert": tmp_path / "absent"}))
    mismatched = {**_files(one), "private_key": other.private_key}
    with pytest.raises(TlsError, match="sb_ssl: certificate"):
        check_files("sb_ssl", TlsFiles(**mismatched))
    with pytest.raises(ClientError, match="absent"):
        tls_context(str(tmp_path / "absent"))
    with pytest.raises(ValueError, match="go together"):
        ClientTls(ca_cert=one.ca_cert, certificate=one.certificate)


def test_what_is_plain_off_the_machine() -> None:
    assert plain_remote("tcp:192.0.2.10:6641") and not plain_remote("ssl:192.0.2.10:6641")
    assert not plain_remote("tcp:127.0.0.1:6641") and not plain_remote("unix:/run/x.sock")
    assert plain_url("http://192.0.2.10:9477") and not plain_url("https://192.0.2.10:9477")
    assert not plain_url("http://127.0.0.1:9477") and not plain_url("unix:/run/api.sock")
    assert plain_listen("0.0.0.0:9477") and plain_listen(":9477")
    assert not plain_listen("127.0.0.1:9477") and not plain_listen("unix:/run/api.sock")
    require_tls("x", [], insecure=False)
    require_tls("x", ["tcp:192.0.2.10:6641"], insecure=True)
    with pytest.raises(TlsError, match=r"x: tcp:192\.0\.2\.10:6641 is plain text"):
        require_tls("x", ["tcp:192.0.2.10:6641"], insecure=False)
