"""The device plugin on the lab's emulated SR-IOV NIC (`dpunet.lab.nicd`, FUSE sysfs), with
the fake kubelet over real gRPC: the seed's ConfigMap advertises VF1 and VF2, and health
follows what really happens to the VF and PF netdevs in the host namespace.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from seed import PF, RESOURCE, SEED_POOLS

from dpunet.hw.host import find_vf
from dpunet.hw.pools import PoolAssignment, assign_pools, discover_pool_devices, parse_pool_config
from dpunet.hw.sysfs import Sysfs
from dpunet.k8s.deviceplugin import DevicePluginManager, DevicePluginSettings, PoolSource
from dpunet.k8s.fakekubelet import FakeKubelet

pytestmark = pytest.mark.lab


@dataclass
class Nic:
    host_ns: str
    dpu_ns: str
    sysfs: Sysfs
    work: Path

    def ip(self, ns: str, *args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True)


@pytest.fixture
def nic() -> Iterator[Nic]:
    """A host/DPU pair of throwaway namespaces with 3 VFs, PF and its representor up."""
    ident = uuid.uuid4().hex[:6]
    host_ns, dpu_ns = f"dpk-{ident}-host", f"dpk-{ident}-dpu"
    work = Path(tempfile.mkdtemp(prefix="dpk", dir="/tmp"))
    made: list[str] = []
    daemon: subprocess.Popen[bytes] | None = None
    config = {
        "lab": f"dpk{ident}",
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
                "sriov_totalvfs": 8,
                "numvfs": 3,
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
        nic = Nic(host_ns, dpu_ns, Sysfs(work / "sys" / "host1"), work)
        nic.ip(host_ns, "link", "set", PF, "up")
        nic.ip(dpu_ns, "link", "set", "pf0hpf", "up")
        yield nic
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


def test_device_plugin_on_the_emulated_nic(nic: Nic) -> None:
    config = parse_pool_config(SEED_POOLS, "mellanox.com")
    vf1, vf2 = find_vf(nic.sysfs, PF, 1), find_vf(nic.sysfs, PF, 2)
    assert vf1 is not None and vf2 is not None and vf1.netdev is not None

    def assignment() -> PoolAssignment:
        return assign_pools(config, discover_pool_devices(nic.sysfs))

    async def scenario() -> None:
        kubelet = FakeKubelet(nic.work / "kubelet")
        await kubelet.start()
        settings = DevicePluginSettings(
            nic.work / "kubelet", nic.work / "devinfo", "kubelet", poll_interval=0.1
        )
        manager = DevicePluginManager(
            settings, config.resource_list, PoolSource(nic.sysfs, assignment)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop))

        def state(expected: dict[str, str]) -> Callable[[], bool]:
            return lambda: kubelet.devices(RESOURCE) == expected

        try:
            healthy = {vf1.address: "Healthy", vf2.address: "Healthy"}
            await kubelet.wait_for(state(healthy))

            # the VF's netdev leaves the host (no pod holds it): Unhealthy, and back
            nic.ip(nic.host_ns, "link", "set", str(vf1.netdev), "netns", nic.dpu_ns)
            await kubelet.wait_for(state({**healthy, vf1.address: "Unhealthy"}))
            nic.ip(nic.dpu_ns, "link", "set", str(vf1.netdev), "netns", nic.host_ns)
            await kubelet.wait_for(state(healthy))

            # the PF loses its carrier (its peer on the DPU goes down), and gets it back
            nic.ip(nic.dpu_ns, "link", "set", "pf0hpf", "down")
            await kubelet.wait_for(state(dict.fromkeys(healthy, "Unhealthy")))
            nic.ip(nic.dpu_ns, "link", "set", "pf0hpf", "up")
            await kubelet.wait_for(state(healthy))

            answer = await kubelet.allocate(RESOURCE, vf2.address)
            assert answer.envs["PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6"] == vf2.address
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await kubelet.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
