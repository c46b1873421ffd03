"""One emulated SR-IOV NIC (`dpunet.lab.nicd`, FUSE sysfs) outside any lab: a host/DPU
pair of throwaway namespaces joined by it, for tests of the hardware-facing code."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PF = "enp2s0f0np0"


@dataclass(frozen=True)
class EmulatedNic:
    """The namespaces, the host's sysfs root and the daemon's work directory."""

    host_ns: str
    dpu_ns: str
    sysfs_root: Path
    work: Path


@contextlib.contextmanager
def emulated_nic(prefix: str, numvfs: int, total_vfs: int = 8) -> Iterator[EmulatedNic]:
    """Namespaces `<prefix>-<id>-host`/`-dpu` and a NIC daemon for PF `enp2s0f0np0` with
    `numvfs` of `total_vfs` VFs; everything is removed on exit."""
    ident = uuid.uuid4().hex[:6]
    host_ns, dpu_ns = f"{prefix}-{ident}-host", f"{prefix}-{ident}-dpu"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-{ident}-", dir="/tmp"))
    made: list[str] = []
    daemon: subprocess.Popen[bytes] | None = None
    config = {
        "lab": f"{prefix}{ident}",
        "mountpoint": str(work / "sys"),
        "pidfile": str(work / "nicd.pid"),
        "ready_file": str(work / "ready"),
        "log_file": str(work / "nicd.log"),
        "pairs": [
            {
                "host_node": "host1",
                "host_netns": host_ns,
                "dpu_node": "dpu1",
                "dpu_netns": dpu_ns,
                "pf_netdev": PF,
                "sriov_totalvfs": total_vfs,
                "numvfs": numvfs,
                "pf_mac": "02:00:00:aa:00:01",
                "vf_mac_prefix": "02:00:00:bb",
                "phys_switch_id": "0a0b0c0d",
            }
        ],
    }
    try:
        for name in (host_ns, dpu_ns):
            subprocess.run(["ip", "netns", "add", name], check=True)
            made.append(name)
        (work / "nicd.json").write_text(json.dumps(config))
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dpunet.lab.nicd", str(work / "nicd.json")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not (work / "ready").exists():
            assert daemon.poll() is None, (work / "nicd.log").read_text()
            assert time.monotonic() < deadline, "NIC daemon not ready"
            time.sleep(0.1)
        yield EmulatedNic(host_ns, dpu_ns, work / "sys" / "host1", work)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if str(work / "sys") in Path("/proc/mounts").read_text():
            subprocess.run(["umount", "-l", str(work / "sys")], capture_output=True)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
