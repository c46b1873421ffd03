"""The device plugin on the lab's emulated SR-IOV NIC (`dpunet.lab.nicd`, FUSE sysfs), with
the fake kubelet over real gRPC: the seed's ConfigMap advertises VF1 and VF2, and health
follows what really happens to the VF and PF netdevs in the host namespace.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nic_harness import PF, emulated_nic
from seed import RESOURCE, SEED_POOLS

from dpunet.host.kubelet.deviceplugin import DevicePluginManager, DevicePluginSettings, PoolSource
from dpunet.hw.host import find_vf
from dpunet.hw.pools import PoolAssignment, assign_pools, discover_pool_devices, parse_pool_config
from dpunet.hw.sysfs import Sysfs
from fakekubelet import FakeKubelet

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
    with emulated_nic("dpk", numvfs=3) as emulated:
        nic = Nic(emulated.host_ns, emulated.dpu_ns, Sysfs(emulated.sysfs_root), emulated.work)
        nic.ip(nic.host_ns, "link", "set", PF, "up")
        nic.ip(nic.dpu_ns, "link", "set", "pf0hpf", "up")
        yield nic


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
