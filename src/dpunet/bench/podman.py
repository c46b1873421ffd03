"""`dpunet bench podman`: a podman container's whole network life, dpunet's CNI vs the
reference `host-device` + `static` plugins on the same VF pool.

The path measured is the one the lab's podman engine takes on Debian 12 and 13 alike
(podman 5 has no CNI backend): a fresh network namespace, CNI ADD executed as a
runtime executes it (the plugin binary, the CNI environment, the network config on
stdin), `podman run --rm --network ns:PATH` (runc, a busybox rootfs, `busybox true`),
CNI DEL, the namespace removed. Both networks take that path inside the dpu-host's
namespace (where the VFs are), and the runs alternate so load from other work on the
machine hits both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyroute2 import netns as pyroute2_netns

from dpunet.bench.podsetup import FLOOR_HOST_OFFSET, free_vfs, restore_vf
from dpunet.bench.results import first_line
from dpunet.bench.stats import versus_host_device
from dpunet.lab import services
from dpunet.lab.runner import LabError, in_netns
from dpunet.lab.topology import LabPlan

REFERENCE_PLUGINS = Path("/usr/lib/cni")
REFERENCE_NETWORK = "hostdev"
BUSYBOX = Path("/bin/busybox")
PATH_MEASURED = (
    "netns add + CNI ADD (plugin executed on the netns) + podman run --rm --network ns:PATH"
    " + CNI DEL + netns del"
)


@contextmanager
def podman_env(plan: LabPlan) -> Iterator[Path]:
    """A private podman root and rootfs; removed on exit."""
    base = Path(tempfile.mkdtemp(prefix="dpb-podman-"))  # podman limits the runroot length
    try:
        rootfs = base / "rootfs"
        for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        (base / "containers.conf").write_text(
            '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'
        )
        yield base
    finally:
        subprocess.run(["umount", "-R", str(base)], capture_output=True, check=False)
        _podman(plan, base, "rm", "-a", "-f", "-t", "0")
        shutil.rmtree(base, ignore_errors=True)


def dpunet_network(plan: LabPlan) -> tuple[Path, dict[str, Any]]:
    """dpunet's plugin on the dpu-host and its network config (from the lab's conflist)."""
    pair = plan.pairs[0]
    conflist = json.loads(
        (services.cni_dir(plan, pair.host) / f"{services.CNI_NETWORK}.conflist").read_text()
    )
    config = {"cniVersion": conflist["cniVersion"], "name": conflist["name"]}
    return services.shim_dir(plan) / "dpunet-cni", {**config, **conflist["plugins"][0]}


def reference_network(device: str, address: str, gateway: str) -> tuple[Path, dict[str, Any]]:
    """The reference `host-device` plugin with `static` addressing, pointed at one VF."""
    return REFERENCE_PLUGINS / "host-device", {
        "cniVersion": "1.0.0",
        "name": REFERENCE_NETWORK,
        "type": "host-device",
        "device": device,
        "ipam": {
            "type": "static",
            "addresses": [{"address": address, "gateway": gateway}],
            "routes": [{"dst": "0.0.0.0/0", "gw": gateway}],
        },
    }


def _podman(plan: LabPlan, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "podman", "--storage-driver", "vfs", "--root", str(base / "root"),
        "--runroot", str(base / "runroot"), "--runtime", "/usr/sbin/runc", *args,
    ]  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}
    full = in_netns(f"/run/netns/{plan.pairs[0].host.netns}", argv)
    return subprocess.run(full, env=env, capture_output=True, text=True, timeout=120, check=False)


def _cni(
    plan: LabPlan, plugin: Path, config: dict[str, Any], command: str, cid: str, netns: str
) -> None:
    """Execute a CNI plugin in the dpu-host's namespace; LabError when it fails."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"{plugin.parent}:{REFERENCE_PLUGINS}",
    }
    proc = subprocess.run(
        in_netns(f"/run/netns/{plan.pairs[0].host.netns}", [str(plugin)]),
        input=json.dumps(config), env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise LabError(f"{plugin.name} {command} failed: {(proc.stdout + proc.stderr)[-400:]}")


def run_once(plan: LabPlan, base: Path, network: tuple[Path, dict[str, Any]], name: str) -> float:
    """Wall seconds of one container's network life on `network`; LabError when it fails.

    The container is named: dpunet takes the pod name from it and refuses podman's
    generated `adjective_name` (not a DNS label)."""
    plugin, config = network
    netns = f"dpb-{secrets.token_hex(4)}"
    path, cid = f"/run/netns/{netns}", secrets.token_hex(32)
    started = time.perf_counter()
    pyroute2_netns.create(netns)
    try:
        _cni(plan, plugin, config, "ADD", cid, path)
        proc = _podman(
            plan, base, "run", "--rm", "--name", name, "--network", f"ns:{path}",
            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
            "--rootfs", str(base / "rootfs"), "/bin/busybox", "true",
        )  # fmt: skip
        if proc.returncode != 0:
            raise LabError(f"podman run on {config['name']} failed: {proc.stderr.strip()[-400:]}")
        _cni(plan, plugin, config, "DEL", cid, path)
    finally:
        with contextlib.suppress(OSError):
            pyroute2_netns.remove(netns)
    return time.perf_counter() - started


def run(plan: LabPlan, repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    """`repeat` alternating runs of each network (after one warm-up run of each)."""
    pair = plan.pairs[0]
    with services.admin_client(plan) as client:
        node = client.get_node(pair.host.name)
    gateway = node.gateway_ip.split("/")[0]
    prefix = node.subnet.split("/")[1]
    base_ip = node.subnet.split("/")[0].rsplit(".", 1)[0]
    vfs = free_vfs(plan, pair)
    if not vfs:
        raise LabError("no free VF for the reference network")
    times: dict[str, list[float]] = {services.CNI_NETWORK: [], REFERENCE_NETWORK: []}
    with podman_env(plan) as base:
        for i in range(repeat + 1):
            vf = vfs[i % len(vfs)]
            address = f"{base_ip}.{FLOOR_HOST_OFFSET + vf.index}/{prefix}"
            networks = {
                services.CNI_NETWORK: dpunet_network(plan),
                REFERENCE_NETWORK: reference_network(vf.netdev, address, gateway),
            }
            for network, plugin_and_config in networks.items():
                elapsed = run_once(plan, base, plugin_and_config, f"bench-{network}-{i}")
                if network == REFERENCE_NETWORK:
                    restore_vf(pair, vf)
                if i > 0:  # the first round warms podman's storage up
                    times[network].append(elapsed * 1000)
            if i:
                say(f"  podman run {i}/{repeat}")
    return {
        "path": PATH_MEASURED,
        "podman": first_line(["podman", "--version"]),
        **versus_host_device(times, services.CNI_NETWORK, REFERENCE_NETWORK),
    }
