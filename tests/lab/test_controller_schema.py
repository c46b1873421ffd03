"""schemathesis against the controller's OpenAPI schema: real HTTP, real OVN.

Checks: no 5xx, every status code and response body as documented, invalid data
rejected with 4xx, auth enforced, Allow headers right. `positive_data_acceptance` is
left out on purpose: some rules cannot be written in JSON Schema (next_hop inside the
node's network, VF fields only all together, node registered), and those answer 4xx.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_harness import ADMIN_TOKEN, ControllerProc, OvnCentral, register, running

pytestmark = pytest.mark.lab

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.fixture(scope="module")
def ctl() -> Iterator[ControllerProc]:
    ovn = OvnCentral(northd=False).start()
    try:
        with running(ovn.nb_remotes) as proc:
            yield proc
    finally:
        ovn.close()


def test_openapi_schema_holds_under_fuzzing(ctl: ControllerProc, tmp_path: Path) -> None:
    with ctl.client() as admin:
        register(admin, "fuzz", node_ip="192.0.2.90/24")
        put = admin.put(
            "/v1/ports/default/fuzzed", json={"node": "fuzz", "uid": "u", "sandbox": "s"}
        )
        assert put.status_code == 200, put.text
    # An invalid request may also be refused as too large (a fuzzed NetworkPolicy can be),
    # which schemathesis' default list of "rejected" answers lacks.
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.negative_data_rejection]\n"
        'expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415",'
        ' "422", "428", "429"]\n'
    )
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{ctl.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "25",
            "--seed",
            "4242",
            "--generation-database",
            "none",
            "--no-color",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "passed" in proc.stdout
