"""CPU time spent by each of a lab's daemons (and the bench itself) over a measured phase.

On a machine where the client, dpunet and OVN share the cores, a rate is bounded by the
CPU a port costs across all of them: the meter says where that CPU went, per daemon, in
milliseconds per port, and how busy the machine's cores were meanwhile.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dpunet.bench.memory import daemons
from dpunet.lab.topology import LabPlan

BENCH = "bench"  # the bench process itself (its client threads and its stand-ins)
_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


def machine_busy_s() -> tuple[float, int]:
    """(CPU seconds the machine's cores spent not idle, number of cores) since boot."""
    cores = 0
    busy = 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            cores += 1
        elif line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            busy = (sum(values[:8]) - idle) / _TICKS  # without guest time (in user already)
    return busy, cores


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds per process (`<node>/<daemon>`, or BENCH) and of the machine, at `at`."""

    at: float
    processes: dict[str, float]
    machine_busy: float
    cores: int


def snapshot(plan: LabPlan) -> CpuSnapshot:
    """The CPU seconds of every live daemon of the lab, of this process and of the machine."""
    at = time.perf_counter()
    processes = {
        name: cpu
        for name, (pid, _) in daemons(plan).items()
        if (cpu := process_cpu_s(pid)) is not None
    }
    own = process_cpu_s(os.getpid())
    if own is not None:
        processes[BENCH] = own
    busy, cores = machine_busy_s()
    return CpuSnapshot(at, processes, busy, cores)


def usage(before: CpuSnapshot, after: CpuSnapshot, ports: int) -> dict[str, Any]:
    """Between two snapshots: CPU ms per port of each process (those that used any,
    busiest first), their sum, and how many of the machine's cores were busy on average."""
    wall = after.at - before.at
    spent = {
        name: after.processes[name] - before.processes[name]
        for name in after.processes
        if name in before.processes
    }
    per_port = {
        name: round(seconds * 1000 / ports, 3)
        for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1])
        if seconds > 0
    }
    return {
        "wall_s": round(wall, 3),
        "ms_per_port": per_port,
        "total_ms_per_port": round(sum(spent.values()) * 1000 / ports, 3),
        "machine_busy_cores": round((after.machine_busy - before.machine_busy) / wall, 2)
        if wall > 0
        else None,
        "cores": after.cores,
    }


@contextmanager
def metered(plan: LabPlan, ports: int) -> Iterator[dict[str, Any]]:
    """The `usage` of the block (handling `ports` ports), filled in when it ends."""
    out: dict[str, Any] = {}
    before = snapshot(plan)
    yield out
    out.update(usage(before, snapshot(plan), ports))
