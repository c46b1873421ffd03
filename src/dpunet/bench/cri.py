"""`dpunet bench cri`: a pod sandbox's network life through containerd's CRI, as kubelet
drives it, dpunet's CNI vs the reference `host-device` + `static` plugins on the same VF
pool.

One run is RunPodSandbox (containerd's CRI plugin creates the sandbox and runs CNI ADD),
StopPodSandbox (CNI DEL) and RemovePodSandbox, over a CRI connection kept open like
kubelet's. dpunet's network is the lab's own: the dpu-host's containerd (the `cri` pod
engine's, with the node's conflist). containerd takes the first conflist of its conf
dir, so the reference network gets a containerd of its own in the same namespace, whose
conf dir holds only the reference conflist; it is rewritten before each run with that
run's VF, and the run waits until containerd reports it loaded (containerd reloads the
dir on change, asynchronously). The runs alternate so load from other work on the
machine hits both alike.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from dpunet.bench.podman import REFERENCE_NETWORK, REFERENCE_PLUGINS, reference_network
from dpunet.bench.podsetup import FLOOR_HOST_OFFSET, free_vfs, restore_vf
from dpunet.bench.results import first_line
from dpunet.bench.stats import versus_host_device
from dpunet.lab import services
from dpunet.lab.cri.client import CriClient, CriError
from dpunet.lab.cri.containerd import Containerd
from dpunet.lab.cri.engine import CONTAINERD_DIR, node_containerd, sandbox_config
from dpunet.lab.runner import LabError, wait_for
from dpunet.lab.topology import LabPlan, Node

REFERENCE_DIR = f"{CONTAINERD_DIR}-reference"  # next to the node's own: `lab down` stops it
CONF_LOAD_TIMEOUT = 10.0
PATH_MEASURED = (
    "RunPodSandbox (CNI ADD) + StopPodSandbox (CNI DEL) + RemovePodSandbox over containerd's CRI"
)


def reference_containerd(plan: LabPlan, node: Node) -> Containerd:
    """The reference network's containerd on `node`: the reference plugins, a conf dir
    of its own."""
    base = plan.node_dir(node) / REFERENCE_DIR
    return Containerd(
        base=base,
        cni_bin_dir=REFERENCE_PLUGINS,
        cni_conf_dir=base / "cni",
        cgroup_parent=f"/dpunet-lab-{plan.name}-{node.name}-reference",
        netns=node.netns,
    )


@contextmanager
def running(containerd: Containerd, keep: bool) -> Iterator[CriClient]:
    """A CRI client of `containerd`, started if it is not running; stopped (with what its
    sandboxes hold) on exit unless `keep`."""
    try:
        containerd.ensure_running()
        with containerd.client() as cri:
            yield cri
    finally:
        if not keep:
            containerd.stop()
            shutil.rmtree(containerd.base, ignore_errors=True)  # when it never started


def loaded_conflists(cri: CriClient) -> list[Any]:
    """The CNI network configs containerd's CRI plugin holds now (loopback first)."""
    config = json.loads(cri.status(verbose=True).info.get("cniconfig") or "{}")
    return [json.loads(n["Config"]["Source"]) for n in config.get("Networks") or []]


def point_at(containerd: Containerd, cri: CriClient, conflist: dict[str, Any]) -> None:
    """Make `conflist` containerd's network (written atomically: containerd reloads on
    the rename) and wait until it has loaded it; LabError when it does not."""
    containerd.cni_conf_dir.mkdir(exist_ok=True)
    target = containerd.cni_conf_dir / f"{conflist['name']}.conflist"
    partial = target.with_suffix(".tmp")  # not a CNI config name: containerd skips it
    partial.write_text(json.dumps(conflist))
    os.replace(partial, target)
    try:
        wait_for(
            f"containerd to load {target.name}",
            lambda: conflist in loaded_conflists(cri),
            timeout=CONF_LOAD_TIMEOUT,
        )
    except LabError:
        status = cri.status(verbose=True).info.get("lastCNILoadStatus")
        raise LabError(f"containerd did not load {target} (last load: {status})") from None


def sandbox_life(containerd: Containerd, cri: CriClient, name: str) -> float:
    """Wall seconds of RunPodSandbox + StopPodSandbox + RemovePodSandbox of pod `name`;
    LabError with the runtime's message when a call fails."""
    config = sandbox_config(containerd, name)
    log_directory = Path(config.log_directory)
    log_directory.mkdir(parents=True)  # kubelet makes it before RunPodSandbox
    try:
        started = time.perf_counter()
        sandbox_id = cri.run_pod_sandbox(config)
        cri.stop_pod_sandbox(sandbox_id)
        cri.remove_pod_sandbox(sandbox_id)
        return time.perf_counter() - started
    except CriError as exc:
        raise LabError(f"pod {name} through {containerd.base}: {exc}") from None
    finally:
        shutil.rmtree(log_directory, ignore_errors=True)


def run(plan: LabPlan, repeat: int, say: Callable[[str], None]) -> dict[str, Any]:
    """`repeat` alternating runs of each network (after one warm-up run of each)."""
    pair = plan.pairs[0]
    with services.admin_client(plan) as client:
        node = client.get_node(pair.host.name)
    gateway = node.gateway_ip.split("/")[0]
    subnet, prefix = node.subnet.split("/")
    vfs = free_vfs(plan, pair)
    if not vfs:
        raise LabError("no free VF for the reference network")
    dpunet, reference = node_containerd(plan, pair.host), reference_containerd(plan, pair.host)
    times: dict[str, list[float]] = {services.CNI_NETWORK: [], REFERENCE_NETWORK: []}
    with (
        running(dpunet, keep=dpunet.alive()) as dpunet_cri,
        running(reference, keep=False) as reference_cri,
    ):
        for i in range(repeat + 1):
            vf = vfs[i % len(vfs)]
            address = f"{subnet.rsplit('.', 1)[0]}.{FLOOR_HOST_OFFSET + vf.index}/{prefix}"
            _, config = reference_network(vf.netdev, address, gateway)
            conflist = {"cniVersion": config["cniVersion"], "name": REFERENCE_NETWORK}
            point_at(reference, reference_cri, {**conflist, "plugins": [config]})
            elapsed = {services.CNI_NETWORK: sandbox_life(dpunet, dpunet_cri, f"bench-dpunet-{i}")}
            try:
                elapsed[REFERENCE_NETWORK] = sandbox_life(
                    reference, reference_cri, f"bench-hostdev-{i}"
                )
            finally:
                with suppress(IndexError):  # still in its sandbox: given back at the stop
                    restore_vf(pair, vf)
            if i > 0:  # the first round warms containerd and its snapshots up
                for network, seconds in elapsed.items():
                    times[network].append(seconds * 1000)
                say(f"  cri sandbox {i}/{repeat}")
    return {
        "path": PATH_MEASURED,
        "containerd": first_line(["containerd", "--version"]),
        **versus_host_device(times, services.CNI_NETWORK, REFERENCE_NETWORK),
    }
