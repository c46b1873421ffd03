"""Running commands inside lab namespaces.

The lab builds itself with the distro's CLI tools (`ip`, `ovs-vsctl`, the OVS and
OVN daemons); this is the only place that spawns them. dpunet's own data path
never goes through here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class LabError(RuntimeError):
    """A lab operation failed; the message is meant for a person."""


def in_netns(
    netns: str | None, argv: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str]:
    """The argv that runs `argv` inside `netns` (a name, or a path such as a container's
    `/proc/<pid>/ns/net`) with extra environment `env`."""
    prefix: list[str] = []
    if netns and "/" in netns:
        prefix = ["nsenter", f"--net={netns}"]
    elif netns:
        prefix = ["ip", "netns", "exec", netns]
    if env:
        prefix += ["env", *(f"{k}={v}" for k, v in env.items())]
    return prefix + list(argv)


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command (in a namespace), capture its output, raise LabError on failure."""
    full = in_netns(netns, argv, env)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise LabError(
            f"{argv[0]} is not installed (run `make demo` or scripts/install-deps.sh)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` timed out after {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        where = f" in {netns}" if netns else ""
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{' '.join(argv)}`{where} failed ({proc.returncode}): {detail}")
    return proc


def ip(
    *args: str, netns: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS` (in a namespace)."""
    return run(["ip", *args], netns=netns, check=check)


def list_netns() -> set[str]:
    """Names of the named network namespaces on this machine."""
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return set()
    return {p.name for p in netns_dir.iterdir()}


def read_pid(pidfile: Path) -> int | None:
    """The pid in a pidfile, or None when there is none."""
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int | None) -> bool:
    """Whether a process exists (and is not a zombie)."""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def netns_pids(netns: str) -> list[int]:
    """Processes whose network namespace is `netns`."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def terminate(pids: Sequence[int], timeout: float = 5.0) -> None:
    """SIGTERM the processes, then SIGKILL what is still alive after `timeout`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.1
) -> None:
    """Poll `predicate()` until true; LabError naming `what` on timeout.

    OSError from the predicate counts as "not yet"; LabError ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
