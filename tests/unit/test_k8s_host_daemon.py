"""`dpunet-host` with `device_plugin` and `pod_resources`: the device plugin runs inside the
daemon and registers with (fake) kubelet; health reflects the daemon's DPU readiness."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_daemon_config import RESOURCE, config
from hw_sysfs_tree import SysfsTree
from pod_agent_fakes import vf_device

from dpunet.cni.sandboxes import SandboxRecord
from dpunet.host.daemon import HostDaemon
from dpunet.host.kubelet.podresources import PodResourcesResolver
from fakekubelet import FakeKubelet


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dph", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_device_plugin_runs_in_the_daemon(base: Path) -> None:
    async def scenario() -> None:
        kubelet = FakeKubelet(base / "kubelet")
        await kubelet.start()
        daemon = HostDaemon(config(base))
        assert isinstance(daemon.attacher.resolver, PodResourcesResolver)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        try:
            # no controller: the management port cannot be configured, so the DPU is not
            # ready and kubelet sees both pool VFs as Unhealthy
            expected = {"0000:02:00.4": "Unhealthy", "0000:02:00.5": "Unhealthy"}
            await kubelet.wait_for(lambda: kubelet.devices(RESOURCE) == expected)
            [request] = kubelet.registrations
            assert request.resource_name == RESOURCE
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await kubelet.stop()
        assert not (
            base / "kubelet/device-plugins/dpunet-mellanox.com-mlnx_sriov_cx6.sock"
        ).exists()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def daemon_survey(daemon: HostDaemon) -> Any:
    assert daemon.device_plugin is not None
    return daemon.device_plugin._survey()


def test_survey_counts_sandbox_vfs_as_held(base: Path) -> None:
    cfg = config(base)
    daemon = HostDaemon(cfg)
    daemon.mgmt_ok = True
    SysfsTree(base / "sys").move_to_other_netns("enp2s0f0v1")  # into a pod, or vanished
    health = {d.pci: d.health for d in daemon_survey(daemon)[RESOURCE]}
    assert health == {"0000:02:00.4": "Unhealthy", "0000:02:00.5": "Healthy"}
    daemon.agent.store.save(
        SandboxRecord("c1", "/run/netns/x", "eth0", "ns", "pod", "uid", vf_device("0000:02:00.4"))
    )
    health = {d.pci: d.health for d in daemon_survey(daemon)[RESOURCE]}
    assert health == {"0000:02:00.4": "Healthy", "0000:02:00.5": "Healthy"}
