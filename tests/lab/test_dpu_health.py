"""DPU health end to end (lab `dpuhl`): the DPU agent renews its lease at the controller
with its own token; stopped, the host agent's CNI STATUS answers code 50 within the lease
time and an ADD fails fast with code 50 leaving nothing; started again, STATUS is ok and
an ADD works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_until

from dpunet.cni import shim as cni_shim
from dpunet.cni.wire import ErrorCode
from dpunet.lab import pods, services
from dpunet.lab.lab import Lab, down
from dpunet.lab.runner import LabError, pid_alive, read_pid
from dpunet.lab.selftest import pod_checks
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "dpuhl"
# how long the host may take to see the lease expire: the lease, the host's cache TTL and
# its own request, with room for a slow machine (the lab polls, it asserts no timing)
NOTICED_WITHIN = services.DPU_LEASE_DURATION + 20


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


def status(plan: LabPlan) -> tuple[int, dict[str, Any]]:
    """CNI STATUS on host1 as a runtime sends it: (exit code, answer)."""
    host = plan.node("host1")
    config = {"cniVersion": "1.1.0", "name": services.CNI_NETWORK,
              **services._cni_plugin(plan, host)}  # fmt: skip
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(services.shim_dir(plan))}
    code, answer = cni_shim.run(env, json.dumps(config).encode())
    return code, answer or {}


def held_by_host1(plan: LabPlan) -> tuple[dict[str, Any], list[str], list[str]]:
    """What host1's pods hold: where its VFs are, controller ports, sandbox records."""
    vfs = {vf["pci"]: vf for vf in Lab(plan).status()["nics"][0]["vfs"]}
    with services.admin_client(plan) as client:
        ports = [p.lsp for p in client.list_ports(node="host1")]
    records = [p.name for p in (plan.node_dir(plan.node("host1")) / "state").rglob("*.json")]
    return vfs, ports, records


def test_a_stopped_dpu_agent_stops_adds_until_it_is_back(lab: LabPlan) -> None:
    plan = lab
    assert status(plan)[0] == 0
    before = held_by_host1(plan)
    pidfile = plan.node_dir(plan.node("dpu1")) / "dpunet-dpu.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_until("dpunet-dpu to stop", lambda: not pid_alive(pid))

    _, answer = wait_until(
        "CNI STATUS code 50", lambda: (r := status(plan))[0] != 0 and r, NOTICED_WITHIN
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
    wait_until("CNI STATUS ok", lambda: status(plan)[0] == 0, NOTICED_WITHIN)
    pods.add_pod(plan, "back", "host1", "netns")
    try:
        results = pod_checks(plan)
        assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    finally:
        pods.del_pod(plan, "back")
    assert held_by_host1(plan) == before
