"""Starting and stopping the lab's emulated-NIC daemon (`dpunet.lab.nicd`)."""

from __future__ import annotations

from pathlib import Path

from dpunet.lab.runner import pid_alive, read_pid, terminate
from dpunet.lab.topology import LabPlan


def pidfile(run_dir: Path) -> Path:
    """Where the NIC daemon of the lab in `run_dir` records its pid."""
    return run_dir / "nicd.pid"


def start(plan: LabPlan) -> None:
    """Write the daemon's config, start it detached, wait until its sysfs is mounted."""
    raise NotImplementedError


def stop(run_dir: Path) -> bool:
    """Stop the daemon (it unmounts its sysfs and removes the VF pairs); True if one ran."""
    pid = read_pid(pidfile(run_dir))
    if not pid_alive(pid):
        return False
    assert pid is not None
    terminate([pid], timeout=15)
    return True
