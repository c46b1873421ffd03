"""DPU health in lab tests (standalone and Kubernetes mode): a host agent's CNI STATUS as
a runtime sends it, and stopping a DPU agent."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from polling import wait_until

from dpunet.cni import shim as cni_shim
from dpunet.lab import services
from dpunet.lab.runner import pid_alive, read_pid
from dpunet.lab.topology import LabPlan

# how long the host may take to see the lease expire: the lease, the host's cache TTL and
# its own request, with room for a slow machine (the lab polls, it asserts no timing)
NOTICED_WITHIN = services.DPU_LEASE_DURATION + 20


def cni_status(plan: LabPlan, node: str = "host1") -> tuple[int, dict[str, Any]]:
    """CNI STATUS on `node` as a runtime sends it: (exit code, answer)."""
    config = {"cniVersion": "1.1.0", "name": services.CNI_NETWORK,
              **services._cni_plugin(plan, plan.node(node))}  # fmt: skip
    env = {"CNI_COMMAND": "STATUS", "CNI_PATH": str(services.shim_dir(plan))}
    code, answer = cni_shim.run(env, json.dumps(config).encode())
    return code, answer or {}


def stop_daemon(pidfile: Path) -> None:
    """SIGTERM the daemon of `pidfile` and wait until it is gone."""
    pid = read_pid(pidfile)
    assert pid is not None, f"no pid in {pidfile}"
    os.kill(pid, signal.SIGTERM)
    wait_until(f"{pidfile.stem} to stop", lambda: not pid_alive(pid))
