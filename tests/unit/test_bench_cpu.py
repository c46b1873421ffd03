"""The bench's CPU meter: per-process CPU time from /proc, spread over the ports a phase
handled."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dpunet.bench.cpu import CpuSnapshot, machine_busy_s, process_cpu_s, usage


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_cpu_time_counts_its_work_and_ends_with_it() -> None:
    before = process_cpu_s(os.getpid())
    _burn(0.2)
    after = process_cpu_s(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.15  # clock ticks: 10 ms each
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_cpu_s(child.pid) is None  # reaped: gone


def test_the_machine_is_busy_while_this_process_works() -> None:
    busy_before, cores = machine_busy_s()
    _burn(0.2)
    busy_after, _ = machine_busy_s()
    assert cores == os.cpu_count()
    assert busy_after - busy_before >= 0.15


def test_usage_spreads_each_process_time_over_the_ports() -> None:
    before = CpuSnapshot(
        10.0, {"cp/ovn-northd": 1.0, "bench": 2.0, "idle": 4.0, "gone": 5.0}, 100.0, 2
    )
    after = CpuSnapshot(
        12.0, {"cp/ovn-northd": 1.5, "bench": 3.0, "idle": 4.0, "new": 9.0}, 103.0, 2
    )
    out = usage(before, after, ports=100)
    # busiest first; a process that used nothing, or was not there at both ends, is left out
    assert list(out["ms_per_port"].items()) == [("bench", 10.0), ("cp/ovn-northd", 5.0)]
    assert out["total_ms_per_port"] == 15.0
    assert out["wall_s"] == 2.0 and out["machine_busy_cores"] == 1.5 and out["cores"] == 2
