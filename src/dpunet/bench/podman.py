"""`dpunet bench podman`: `podman run --rm` of a trivial container, dpunet's CNI vs the
reference `host-device` + `static` plugins on the same VF pool.

Both run the same podman (CNI backend, runc, a busybox rootfs) inside the dpu-host's
namespace (where the VFs are), with one containers.conf listing both plugin
directories and one network config directory holding both networks; the runs
alternate so load from other work on the machine hits both alike. The container runs
`/bin/busybox true`; its network is attached at start and detached at removal, so the
wall time covers CNI ADD and DEL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dpunet.bench.podsetup import FLOOR_HOST_OFFSET, free_vfs, restore_vf
from dpunet.bench.stats import ratio, summarize
from dpunet.lab import services
from dpunet.lab.runner import LabError, in_netns
from dpunet.lab.topology import LabPlan

REFERENCE_PLUGINS = "/usr/lib/cni"
REFERENCE_NETWORK = "hostdev"
BUSYBOX = Path("/bin/busybox")


@contextmanager
def podman_env(plan: LabPlan) -> Iterator[Path]:
    """A private podman root with both networks; removed on exit."""
    pair = plan.pairs[0]
    base = Path(tempfile.mkdtemp(prefix="dpb-podman-"))  # podman limits the runroot length
    try:
        netdir = base / "net"
        netdir.mkdir()
        shutil.copy(services.cni_dir(plan, pair.host) / f"{services.CNI_NETWORK}.conflist", netdir)
        rootfs = base / "rootfs"
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        (base / "containers.conf").write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{services.shim_dir(plan)}", "{REFERENCE_PLUGINS}"]\n'
            f'network_config_dir = "{netdir}"\n'
            "[engine]\n"
            'events_logger = "file"\n'
            'cgroup_manager = "cgroupfs"\n'
        )
        yield base
    finally:
        subprocess.run(["umount", "-R", str(base)], capture_output=True, check=False)
        _run(plan, base, "rm", "-a", "-f", "-t", "0")
        shutil.rmtree(base, ignore_errors=True)


def write_reference_network(base: Path, device: str, address: str, gateway: str) -> None:
    """The host-device + static network, pointed at one VF."""
    conflist = {
        "cniVersion": "1.0.0",
        "name": REFERENCE_NETWORK,
        "plugins": [
            {
                "type": "host-device",
                "device": device,
                "ipam": {
                    "type": "static",
                    "addresses": [{"address": address, "gateway": gateway}],
                    "routes": [{"dst": "0.0.0.0/0", "gw": gateway}],
                },
            }
        ],
    }
    (base / "net" / f"{REFERENCE_NETWORK}.conflist").write_text(json.dumps(conflist, indent=2))


def _run(plan: LabPlan, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "podman", "--storage-driver", "vfs", "--root", str(base / "root"),
        "--runroot", str(base / "runroot"), "--runtime", "/usr/sbin/runc", *args,
    ]  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}
    # nsenter (a path), not `ip netns exec`: podman's netns mounts must stay visible to
    # dpunet-host, which a private mount namespace would hide
    full = in_netns(f"/run/netns/{plan.pairs[0].host.netns}", argv)
    return subprocess.run(full, env=env, capture_output=True, text=True, timeout=120, check=False)


def run_once(plan: LabPlan, base: Path, network: str, name: str) -> float:
    """Wall seconds of one `podman run --rm` on `network`; LabError when it fails.

    The container is named: dpunet takes the pod name from it and refuses podman's
    generated `adjective_name` (not a DNS label)."""
    started = time.perf_counter()
    proc = _run(
        plan, base, "run", "--rm", "--name", name, "--network", network,
        "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
        "--rootfs", str(base / "rootfs"), "/bin/busybox", "true",
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise LabError(f"podman run on {network} failed: {proc.stderr.strip()[-400:]}")
    return elapsed


def run(plan: LabPlan, repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    """`repeat` alternating runs of each network (after one warm-up run of each)."""
    pair = plan.pairs[0]
    with services.admin_client(plan) as client:
        node = client.get_node(pair.host.name)
    gateway = node["gateway_ip"].split("/")[0]
    prefix = node["subnet"].split("/")[1]
    base_ip = node["subnet"].split("/")[0].rsplit(".", 1)[0]
    vfs = free_vfs(plan, pair)
    if not vfs:
        raise LabError("no free VF for the reference network")
    times: dict[str, list[float]] = {services.CNI_NETWORK: [], REFERENCE_NETWORK: []}
    with podman_env(plan) as base:
        for i in range(repeat + 1):
            vf = vfs[i % len(vfs)]
            address = f"{base_ip}.{FLOOR_HOST_OFFSET + vf.index}/{prefix}"
            write_reference_network(base, vf.netdev, address, gateway)
            for network in (services.CNI_NETWORK, REFERENCE_NETWORK):
                elapsed = run_once(plan, base, network, f"bench-{network}-{i}")
                if network == REFERENCE_NETWORK:
                    restore_vf(pair, vf)
                if i > 0:  # the first round warms podman's storage up
                    times[network].append(elapsed * 1000)
            if i:
                say(f"  podman run {i}/{repeat}")
    dpunet, reference = summarize(times[services.CNI_NETWORK]), summarize(times[REFERENCE_NETWORK])
    return {
        "dpunet_ms": dpunet,
        "host_device_ms": reference,
        "ratio_median": ratio(dpunet.get("median"), reference.get("median")),
        "samples_ms": times,
    }
