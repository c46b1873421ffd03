"""The lab's NB, SB and controller API are TLS only (issue 14): from a DPU or a host, over
the underlay, a client with a certificate of the lab's CA is served; a plain TCP client and
a client whose certificate comes from another CA are refused, and a client that trusts only
another CA refuses the server. (test_lab.py and the other lab tests run everything else
over these TLS hops.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpunet.lab import services
from dpunet.lab.lab import down, load_plan
from dpunet.lab.runner import run
from dpunet.lab.services import CONTROLLER_PORT
from dpunet.lab.topology import CP_ADDRESS, NB_PORT, SB_PORT, LabPlan
from dpunet.setup import pki

pytestmark = pytest.mark.lab

LAB = "tlslab"


@pytest.fixture(scope="module")
def plan() -> Iterator[LabPlan]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"dpunet lab up failed:\n{proc.stdout}\n{proc.stderr}")
    try:
        yield load_plan(LAB)
    finally:
        down(LAB)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> pki.Certificate:
    """A certificate of another CA, made the same way as the lab's."""
    directory = tmp_path_factory.mktemp("other-ca")
    pki.init_ca(directory, "another CA")
    return pki.issue(directory, "dpu1", ips=[str(CP_ADDRESS)])


def _ovsdb_client(plan: LabPlan, remote: str, *tls: str) -> subprocess.CompletedProcess[str]:
    """`ovsdb-client list-dbs REMOTE` from dpu1, over the underlay."""
    return run(
        ["ovsdb-client", "--timeout=10", *tls, "list-dbs", remote],
        netns=plan.node("dpu1").netns,
        check=False,
        timeout=30,
    )


def _tls(private_key: Path, certificate: Path, ca_cert: Path) -> list[str]:
    return [f"--private-key={private_key}", f"--certificate={certificate}", f"--ca-cert={ca_cert}"]


@pytest.mark.parametrize(
    ("port", "schema"), [(NB_PORT, "OVN_Northbound"), (SB_PORT, "OVN_Southbound")]
)
def test_ovsdb_is_tls_only(
    plan: LabPlan, stranger: pki.Certificate, port: int, schema: str
) -> None:
    mine = plan.tls("dpu1")
    good = _ovsdb_client(
        plan, f"ssl:{CP_ADDRESS}:{port}", *_tls(mine.private_key, mine.certificate, mine.ca_cert)
    )
    assert good.returncode == 0 and schema in good.stdout, good.stderr
    plain = _ovsdb_client(plan, f"tcp:{CP_ADDRESS}:{port}")
    assert plain.returncode != 0 and schema not in plain.stdout
    # a client certificate from another CA (trusting the lab's CA itself): refused by NB/SB
    other = _ovsdb_client(
        plan,
        f"ssl:{CP_ADDRESS}:{port}",
        *_tls(stranger.private_key, stranger.certificate, mine.ca_cert),
    )
    assert other.returncode != 0 and schema not in other.stdout
    kind = "nb" if port == NB_PORT else "sb"
    log = (plan.ovn_dir(plan.cp) / f"ovn{kind}_db.log").read_text()
    assert "certificate verify failed" in log  # refused in the handshake, by the server
    # and a client that trusts only the other CA refuses the lab's server
    doubtful = _ovsdb_client(
        plan,
        f"ssl:{CP_ADDRESS}:{port}",
        *_tls(mine.private_key, mine.certificate, stranger.ca_cert),
    )
    assert doubtful.returncode != 0 and schema not in doubtful.stdout


_API_PROBE = """
import json, sys
from dpunet.contract.client import ClientError, ControllerClient, tls_context
url, token, ca, cert, key = sys.argv[1:6]
try:
    tls = tls_context(ca or None, cert or None, key or None) if url.startswith("https") else None
    with ControllerClient(url, token or None, timeout=10, tls=tls) as client:
        print(json.dumps({"status": 200, "node": client.get_node("host1").name}))
except ClientError as exc:
    print(json.dumps({"status": exc.status, "detail": exc.detail}))
"""


def _api(
    plan: LabPlan, url: str, token: str, ca: Path | None, cert: pki.Certificate | None = None
) -> dict[str, object]:
    """GET /v1/nodes/host1 from host1, over the underlay, with this trust and identity."""
    args = [
        url, token, str(ca or ""),
        str(cert.certificate if cert else ""), str(cert.private_key if cert else ""),
    ]  # fmt: skip
    out = run(
        [sys.executable, "-c", _API_PROBE, *args], netns=plan.node("host1").netns, timeout=60
    ).stdout
    return dict(json.loads(out))


def test_api_is_https_only(plan: LabPlan, stranger: pki.Certificate) -> None:
    https, http = (f"{scheme}://{CP_ADDRESS}:{CONTROLLER_PORT}" for scheme in ("https", "http"))
    token = services.token_path(plan, "host1").read_text().strip()
    mine = plan.tls("host1")
    assert _api(plan, https, token, mine.ca_cert, mine) == {"status": 200, "node": "host1"}
    # TLS does not replace the node token
    assert _api(plan, https, "", mine.ca_cert, mine)["status"] == 401
    # plain HTTP: the TLS listener drops it, no answer
    assert _api(plan, http, token, None)["status"] == 0
    # a client certificate of another CA, or none: refused in the handshake
    assert _api(plan, https, token, mine.ca_cert, stranger)["status"] == 0
    assert _api(plan, https, token, mine.ca_cert)["status"] == 0
    # a client that trusts only the other CA refuses the controller's certificate
    doubtful = _api(plan, https, token, stranger.ca_cert, mine)
    assert doubtful["status"] == 0 and "CERTIFICATE_VERIFY_FAILED" in str(doubtful["detail"])
