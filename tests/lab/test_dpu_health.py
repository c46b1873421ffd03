"""DPU health end to end (lab `dpuhl`): the DPU agent renews its lease at the controller
with its own token; stopped, the host agent's CNI STATUS answers code 50 within the lease
time and an ADD fails fast with code 50 leaving nothing; started again, STATUS is ok and
an ADD works."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dpu_health import NOTICED_WITHIN, cni_status, stop_daemon
from polling import wait_until

from dpunet.cni.wire import ErrorCode
from dpunet.lab import pods, services
from dpunet.lab.lab import Lab, down
from dpunet.lab.runner import LabError
from dpunet.lab.selftest import pod_checks
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "dpuhl"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield LabPlan(LabSpec(name=LAB))
    down(LAB)


def held_by_host1(plan: LabPlan) -> tuple[dict[str, Any], list[str], list[str]]:
    """What host1's pods hold: where its VFs are, controller ports, sandbox records."""
    vfs = {vf["pci"]: vf for vf in Lab(plan).status()["nics"][0]["vfs"]}
    with services.admin_client(plan) as client:
        ports = [p.lsp for p in client.list_ports(node="host1")]
    records = [p.name for p in (plan.node_dir(plan.node("host1")) / "state").rglob("*.json")]
    return vfs, ports, records


def test_a_stopped_dpu_agent_stops_adds_until_it_is_back(lab: LabPlan) -> None:
    plan = lab
    assert cni_status(plan)[0] == 0
    before = held_by_host1(plan)
    stop_daemon(plan.node_dir(plan.node("dpu1")) / "dpunet-dpu.pid")

    _, answer = wait_until(
        "CNI STATUS code 50", lambda: (r := cni_status(plan))[0] != 0 and r, NOTICED_WITHIN
    )
    assert answer["code"] == ErrorCode.NOT_AVAILABLE, answer
    assert answer["msg"].startswith("the DPU dpu1 of node host1 is down"), answer
    started = time.monotonic()
    with pytest.raises(LabError, match=r"code 50\): the DPU dpu1 of node host1 is down: its la"):
        pods.add_pod(plan, "refused", "host1", "netns")
    assert time.monotonic() - started < 30  # fast: not the port API's 60 s wait for the DPU
    assert held_by_host1(plan) == before  # no VF, port or record left behind
    assert pods.load_pods(plan) == []

    services.restart(plan, "dpu1", "dpunet-dpu")
    wait_until("CNI STATUS ok", lambda: cni_status(plan)[0] == 0, NOTICED_WITHIN)
    pods.add_pod(plan, "back", "host1", "netns")
    try:
        results = pod_checks(plan)
        assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    finally:
        pods.del_pod(plan, "back")
    assert held_by_host1(plan) == before
