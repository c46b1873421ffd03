"""Benchmark results: the machine they ran on, and where they are written."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

TARGETS = {
    "pod_setup_median_ratio_max": 2.5,
    "pod_setup_burst_p99_ms_max": 300.0,
    "shim_ratio_max": 1.3,
    "controller_ports_per_s_at_10k_min": 300.0,
    "dpu_agent_rss_mb_max": 60.0,
    "dpu_agent_rss_growth_mb_max": 5.0,  # after 1,000 pod add/delete cycles (issue 17)
}


def first_line(argv: list[str]) -> str | None:
    """The first line a command prints (a version, say); None when it cannot run."""
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0].strip() if out else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _mem_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, memory, kernel, OVS/OVN versions, load."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_mb": _mem_total_mb(),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "ovs": first_line(["ovs-vswitchd", "--version"]),
        "ovn": first_line(["ovn-controller", "--version"]),
        "loadavg": os.getloadavg(),
    }


def envelope(bench: str, params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of one benchmark run."""
    return {
        "bench": bench,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "params": params,
        "targets": TARGETS,
        "results": results,
    }


def write_json(out_dir: Path, bench: str, doc: dict[str, Any]) -> Path:
    """`<out_dir>/<bench>.json`; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{bench}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    return path
