"""`dpunet bench memory`: steady-state memory of each dpunet daemon, idle and with every VF
of the NIC held by a pod.

RSS (`VmRSS`, what the target is about), PSS (shared pages divided among their users,
from `smaps_rollup`) and the peak (`VmHWM`), each the median of a few samples taken
after the daemons had time to settle. The OVS/OVN daemons are listed for scale.

With `cycles`, then that many pod add/delete cycles one pod at a time (a leak shows as
RSS that keeps growing with them): the RSS of each dpunet daemon is recorded before the
first cycle and after every `every` cycles (each time once the daemons settled), and the
growth against the idle snapshot and against cycle 0 is reported.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dpunet.bench.podsetup import add_dpunet_pod, del_dpunet_pod, free_vfs
from dpunet.bench.stats import percentile
from dpunet.lab.daemons import node_daemons
from dpunet.lab.runner import pid_alive, read_pid
from dpunet.lab.topology import LabPlan

SETTLE_S = 5.0
SAMPLES = 5
CYCLE_SETTLE_S = 2.0  # after the last cycle of a block, before its RSS sample


def _kib(text: str, key: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return None


def process_memory(pid: int) -> dict[str, float | None]:
    """RSS, PSS and peak RSS of a process, in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        rollup = ""

    def mib(value: float | None) -> float | None:
        return value / 1024 if value is not None else None

    return {
        "rss_mb": mib(_kib(status, "VmRSS")),
        "pss_mb": mib(_kib(rollup, "Pss")),
        "peak_rss_mb": mib(_kib(status, "VmHWM")),
    }


def daemons(plan: LabPlan) -> dict[str, tuple[int, bool]]:
    """`<node>/<daemon>` -> (pid, is dpunet's) for every live daemon of the lab."""
    out: dict[str, tuple[int, bool]] = {}
    for node in plan.nodes:
        node_dir = plan.node_dir(node)
        for pidfile in sorted(node_dir.glob("dpunet-*.pid")) if node_dir.is_dir() else []:
            pid = read_pid(pidfile)
            if pid_alive(pid):
                assert pid is not None
                out[f"{node.name}/{pidfile.stem}"] = (pid, True)
        for daemon in node_daemons(plan, node):
            pid = read_pid(daemon.pidfile)
            if pid_alive(pid):
                assert pid is not None
                out[f"{node.name}/{daemon.name}"] = (pid, False)
    return out


def snapshot(plan: LabPlan) -> dict[str, dict[str, Any]]:
    """Median over `SAMPLES` samples (1 s apart) of every daemon's memory."""
    found = daemons(plan)
    samples: dict[str, list[dict[str, float | None]]] = {name: [] for name in found}
    for i in range(SAMPLES):
        for name, (pid, _) in found.items():
            samples[name].append(process_memory(pid))
        if i + 1 < SAMPLES:
            time.sleep(1.0)
    out = {}
    for name, rows in samples.items():
        entry: dict[str, Any] = {"dpunet": found[name][1]}
        for key in ("rss_mb", "pss_mb", "peak_rss_mb"):
            values = [r[key] for r in rows if r[key] is not None]
            entry[key] = percentile(values, 50) if values else None  # type: ignore[arg-type]
        out[name] = entry
    return out


IMPORT_PROBES = (
    ("bare interpreter", "pass"),
    ("import dpunet.dpu.agent", "import dpunet.dpu.agent"),
    ("import dpunet.cli.dpu_agent_cmds", "import dpunet.cli.dpu_agent_cmds"),
    ("import dpunet.cli.main (how the lab starts every daemon)", "import dpunet.cli.main"),
)
_RSS_PROBE = "import re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"


def import_footprint() -> dict[str, float | None]:
    """RSS (MiB) of a fresh interpreter after each import: what a daemon pays before doing
    anything, depending on its entry point."""
    out: dict[str, float | None] = {}
    for label, statement in IMPORT_PROBES:
        proc = subprocess.run(
            [sys.executable, "-c", f"{statement}\n{_RSS_PROBE}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        text = proc.stdout.strip()
        out[label] = int(text) / 1024 if proc.returncode == 0 and text.isdigit() else None
    return out


def dpunet_rss(plan: LabPlan) -> dict[str, float | None]:
    """`<node>/<daemon>` -> RSS (MiB) of each live dpunet daemon, one sample."""
    return {
        name: process_memory(pid)["rss_mb"] for name, (pid, ours) in daemons(plan).items() if ours
    }


def run_cycles(
    plan: LabPlan, cycles: int, every: int, idle: dict[str, dict[str, Any]],
    say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """`cycles` pod add/delete cycles, one pod at a time, with the dpunet daemons' RSS
    before the first and after every `every` cycles (and after the last)."""
    pair = plan.pairs[0]
    time.sleep(CYCLE_SETTLE_S)
    rss = [(0, dpunet_rss(plan))]  # (cycle, RSS by daemon)
    errors: list[str] = []
    started = time.monotonic()
    for n in range(1, cycles + 1):
        pod = add_dpunet_pod(plan, pair, f"cyc{n}", n)
        del_dpunet_pod(plan, pair, pod)
        if pod.error:
            errors.append(f"cycle {n}: {pod.error}")
        if n % every == 0 or n == cycles:
            time.sleep(CYCLE_SETTLE_S)
            rss.append((n, dpunet_rss(plan)))
            dpu = [f"{k} {v:.1f} MiB" for k, v in rss[-1][1].items() if k.endswith("/dpunet-dpu")]
            say(f"  cycle {n}/{cycles}: " + ", ".join(dpu))
    last = rss[-1][1]

    def growth(base: dict[str, float | None]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, before in base.items():
            now = last.get(name)
            out[name] = now - before if now is not None and before is not None else None
        return out

    return {
        "cycles": cycles,
        "every": every,
        "seconds": time.monotonic() - started,
        "errors": errors,
        "samples": [{"cycle": n, "rss_mb": by_daemon} for n, by_daemon in rss],
        "growth_vs_cycle0_mb": growth(rss[0][1]),
        "growth_vs_idle_mb": growth({k: v["rss_mb"] for k, v in idle.items() if v["dpunet"]}),
    }


def run(
    plan: LabPlan, say: Callable[[str], None], cycles: int = 0, every: int = 100
) -> dict[str, Any]:
    """Idle, then with a pod on every free VF (all VFs but the management one); then
    `cycles` add/delete cycles (`run_cycles`) when asked."""
    pair = plan.pairs[0]
    time.sleep(SETTLE_S)
    say("sampling idle memory")
    idle = snapshot(plan)
    vfs = free_vfs(plan, pair)
    say(f"attaching {len(vfs)} pods (every free VF)")
    names = [f"mem{i}" for i in range(len(vfs))]
    with ThreadPoolExecutor(max_workers=len(vfs) or 1) as pool:
        pods = list(pool.map(lambda n: add_dpunet_pod(plan, pair, n, 0), names))
    try:
        failed = [p.error for p in pods if p.error]
        time.sleep(SETTLE_S)
        say("sampling memory with every VF in use")
        loaded = snapshot(plan)
    finally:
        with ThreadPoolExecutor(max_workers=len(pods) or 1) as pool:
            list(pool.map(lambda p: del_dpunet_pod(plan, pair, p), pods))
    results = {
        "pods": len(pods) - len(failed),
        "errors": failed,
        "idle": idle,
        "all_vfs_in_use": loaded,
        "import_rss_mb": import_footprint(),
    }
    if cycles > 0:
        say(f"{cycles} pod add/delete cycles, RSS every {every}")
        results["cycles"] = run_cycles(plan, cycles, every, idle, say)
    return results
