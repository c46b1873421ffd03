"""`dpunet bench shim`: the start-up cost of the CNI plugin the runtime executes.

`dpunet-cni VERSION` as installed (`install_shim`: a launcher under `python3 -IS` and
the compiled shim module) against a bare `python3 -I -S -c pass` and the reference Go
plugin's `VERSION` (`/usr/lib/cni/host-device`); for information also the virtualenv's
`dpunet-cni` console script. Runs are interleaved (one of each per round) so that load
from other work hits all alike. Needs no lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dpunet.bench.stats import ratio, summarize
from dpunet.cni.install import DEFAULT_PYTHON, install_shim

REFERENCE_PLUGIN = Path("/usr/lib/cni/host-device")
VERSION_STDIN = json.dumps({"cniVersion": "1.0.0"})


def _time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        argv, input=VERSION_STDIN, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
    return elapsed


def commands(shim: Path) -> dict[str, list[str]]:
    """Label -> argv of every contender that exists on this machine."""
    out = {
        "dpunet-cni VERSION": [str(shim)],
        "python3 -I -S -c pass": [DEFAULT_PYTHON, "-I", "-S", "-c", "pass"],
    }
    if REFERENCE_PLUGIN.exists():
        out["host-device VERSION (Go)"] = [str(REFERENCE_PLUGIN)]
    console = Path(sys.executable).parent / "dpunet-cni"
    if console.exists():
        out["dpunet-cni console script (venv)"] = [str(console)]
    return out


def run(repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    """`repeat` interleaved rounds after 3 warm-up rounds; ms summaries and ratios."""
    base = Path(tempfile.mkdtemp(prefix="dpunet-bench-shim-"))
    try:
        shim = install_shim(base / "bin", base / "lib")
        argvs = commands(shim)
        env = {"PATH": os.environ.get("PATH", os.defpath), "CNI_COMMAND": "VERSION"}
        samples: dict[str, list[float]] = {label: [] for label in argvs}
        for i in range(repeat + 3):
            for label, argv in argvs.items():
                elapsed = _time(argv, env)
                if i >= 3:
                    samples[label].append(elapsed * 1000)
            if (i + 1) % 50 == 0:
                say(f"  shim round {i + 1}/{repeat + 3}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summaries = {label: summarize(values) for label, values in samples.items()}
    bare = summaries["python3 -I -S -c pass"].get("median")
    shim_median = summaries["dpunet-cni VERSION"].get("median")
    go = summaries.get("host-device VERSION (Go)", {}).get("median")
    return {
        "summaries_ms": summaries,
        "ratio_vs_bare_python": ratio(shim_median, bare),
        "ratio_vs_go_plugin": ratio(shim_median, go),
        "samples_ms": samples,
    }
