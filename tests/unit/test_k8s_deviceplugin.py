"""The device plugin against a fake kubelet over real gRPC unix sockets."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from hw_sysfs_tree import SEED_CONFIGMAP, SEED_PF, SysfsTree, seed_host
from prometheus_client import CollectorRegistry

from dpunet.host.kubelet.deviceplugin import (
    DevicePluginManager,
    DevicePluginSettings,
    Inventory,
    PoolSource,
    Registration,
    allocation_envs,
    env_name,
    survey,
)
from dpunet.host.kubelet.proto import deviceplugin_pb2 as dp
from dpunet.hw.pools import PoolAssignment, assign_pools, discover_pool_devices, load_pool_config
from fakekubelet import FakeKubelet

RESOURCE = "mellanox.com/mlnx_sriov_cx6"
VF1, VF2 = "0000:02:00.4", "0000:02:00.5"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir with a short path: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dpk", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Node:
    """The seed's dpu-host (VF1 and VF2 pooled) with switches for what makes VFs unhealthy."""

    tree: SysfsTree
    config_path: Path
    held: set[str] = field(default_factory=set)
    dpu_ready: bool = True

    def assignment(self) -> PoolAssignment:
        config = load_pool_config(self.config_path, "mellanox.com")
        return assign_pools(config, discover_pool_devices(self.tree.sysfs))

    def dpu(self) -> tuple[bool, str]:
        return self.dpu_ready, "" if self.dpu_ready else "management port not configured"

    def source(self) -> PoolSource:
        return PoolSource(self.tree.sysfs, self.assignment, lambda: set(self.held), self.dpu)

    def inventory(self, allocated: Collection[str]) -> Inventory:
        return survey(self.tree.sysfs, self.assignment(), self.held | set(allocated), self.dpu())

    def set_pf_carrier(self, up: bool) -> None:
        path = self.tree.netdev_dir(SEED_PF)
        (path / "carrier").write_text("1\n" if up else "0\n")
        (path / "operstate").write_text("up\n" if up else "down\n")


@pytest.fixture
def node(short_dir: Path) -> Node:
    config = short_dir / "configMap.yaml"
    config.write_text(SEED_CONFIGMAP)
    return Node(seed_host(short_dir / "sys"), config)


@asynccontextmanager
async def running(
    node: Node, base: Path, registration: Registration = "kubelet", start_kubelet: bool = True
) -> AsyncIterator[tuple[FakeKubelet, DevicePluginManager]]:
    kubelet = FakeKubelet(base / "kubelet")
    if start_kubelet:
        await kubelet.start()
    settings = DevicePluginSettings(
        kubelet_dir=base / "kubelet",
        device_info_dir=base / "devinfo",
        registration=registration,
        poll_interval=0.05,
    )
    config = load_pool_config(node.config_path, "mellanox.com")
    manager = DevicePluginManager(
        settings, config.resource_list, node.source(), CollectorRegistry()
    )
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        yield kubelet, manager
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await kubelet.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def registered(kubelet: FakeKubelet) -> Callable[[], bool]:
    return lambda: bool(kubelet.devices(RESOURCE))


# --- pure parts --------------------------------------------------------------------------


def test_env_name_of_the_seed_resource() -> None:
    assert env_name(RESOURCE) == "PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6"


def test_allocation_envs_reference_format() -> None:
    envs = allocation_envs(RESOURCE, [VF1, VF2], {})
    assert envs["PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6"] == f"{VF1},{VF2}"
    assert json.loads(envs["PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6_INFO"]) == {
        VF1: {"generic": {"deviceID": VF1}},
        VF2: {"generic": {"deviceID": VF2}},
    }


def test_allocation_envs_extra_info_star_then_device() -> None:
    extra = {"*": {"a": "1", "b": "1"}, VF1: {"b": "2"}}
    info = json.loads(allocation_envs(RESOURCE, [VF1], extra)[f"{env_name(RESOURCE)}_INFO"])
    assert info[VF1]["extra"] == {"a": "1", "b": "2"}


def test_survey_reasons(node: Node) -> None:
    devices = {v.pci: v for v in node.inventory(())[RESOURCE]}
    assert set(devices) == {VF1, VF2}
    assert all(v.health == "Healthy" for v in devices.values())
    assert devices[VF1].vf_index == 1 and devices[VF1].pf_pci == "0000:02:00.0"
    node.tree.move_to_other_netns("enp2s0f0v1")
    devices = {v.pci: v for v in node.inventory(())[RESOURCE]}
    assert devices[VF1].problem == "netdev vanished and no pod holds the VF"
    assert devices[VF2].problem is None
    assert {v.pci: v.problem for v in node.inventory({VF1})[RESOURCE]}[VF1] is None
    node.set_pf_carrier(False)
    assert all("no carrier" in (v.problem or "") for v in node.inventory(())[RESOURCE])
    node.dpu_ready = False
    assert {v.problem for v in node.inventory(())[RESOURCE]} == {
        "DPU not ready: management port not configured"
    }


# --- with a kubelet ----------------------------------------------------------------------


def test_registers_only_once_serving_and_lists_devices(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            assert kubelet.refused == []
            [request] = kubelet.registrations
            assert request.version == "v1beta1"
            assert request.resource_name == RESOURCE
            assert request.endpoint == "dpunet-mellanox.com-mlnx_sriov_cx6.sock"
            assert request.options.get_preferred_allocation_available
            assert kubelet.devices(RESOURCE) == {VF1: "Healthy", VF2: "Healthy"}
            options = await kubelet.call(RESOURCE, "GetDevicePluginOptions", dp.Empty())
            assert not options.pre_start_required

    run(scenario)


def test_waits_for_kubelet_then_registers(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir, start_kubelet=False) as (kubelet, manager):
            await asyncio.sleep(0.3)
            assert manager.plugins[0].serving and not manager.plugins[0].registered
            await kubelet.start()
            await kubelet.wait_for(registered(kubelet))

    run(scenario)


def test_health_follows_netdev_carrier_and_dpu(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, manager):
            await kubelet.wait_for(registered(kubelet))

            def state(expected: dict[str, str]) -> Callable[[], bool]:
                return lambda: kubelet.devices(RESOURCE) == expected

            node.tree.move_to_other_netns("enp2s0f0v2")
            await kubelet.wait_for(state({VF1: "Healthy", VF2: "Unhealthy"}))
            node.tree.netdev("enp2s0f0v2", pci=VF2)
            await kubelet.wait_for(state({VF1: "Healthy", VF2: "Healthy"}))

            node.set_pf_carrier(False)
            await kubelet.wait_for(state({VF1: "Unhealthy", VF2: "Unhealthy"}))
            node.set_pf_carrier(True)
            await kubelet.wait_for(state({VF1: "Healthy", VF2: "Healthy"}))

            node.dpu_ready = False
            manager.poke()
            await kubelet.wait_for(state({VF1: "Unhealthy", VF2: "Unhealthy"}))
            node.dpu_ready = True
            await kubelet.wait_for(state({VF1: "Healthy", VF2: "Healthy"}))

    run(scenario)


def test_vf_in_a_pod_stays_healthy(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            kubelet.add_pod("ns", "p", {RESOURCE: [VF1]})  # kubelet allocated it
            node.held.add(VF2)  # a sandbox of this node holds it
            updates = kubelet.endpoints[RESOURCE].updates
            node.tree.move_to_other_netns("enp2s0f0v1")
            node.tree.move_to_other_netns("enp2s0f0v2")
            await asyncio.sleep(0.3)
            assert kubelet.endpoints[RESOURCE].updates == updates
            assert kubelet.devices(RESOURCE) == {VF1: "Healthy", VF2: "Healthy"}

    run(scenario)


def test_allocate_env_and_device_info_file(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            answer = await kubelet.allocate(RESOURCE, VF2)
            assert dict(answer.envs) == {
                "PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6": VF2,
                "PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6_INFO": json.dumps(
                    {VF2: {"generic": {"deviceID": VF2}}}, separators=(",", ":")
                ),
            }
            info = short_dir / "devinfo" / f"mellanox.com-mlnx_sriov_cx6-{VF2}-device.json"
            assert json.loads(info.read_text()) == {
                "type": "pci",
                "version": "1.1.0",
                "pci": {"pci-address": VF2, "pf-pci-address": "0000:02:00.0"},
            }
            assert info.stat().st_mode & 0o777 == 0o444
            await kubelet.allocate(RESOURCE, VF2)  # again: the file is replaced
            both = await kubelet.allocate(RESOURCE, VF1, VF2)
            assert both.envs["PCIDEVICE_MELLANOX_COM_MLNX_SRIOV_CX6"] == f"{VF1},{VF2}"

    run(scenario)


def test_malformed_requests_are_grpc_errors(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            for ids in (("0000:02:00.3",), ("nonsense",), ()):  # mgmt VF, garbage, none
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await kubelet.allocate(RESOURCE, *ids)
                assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            bad = dp.PreferredAllocationRequest(
                container_requests=[
                    dp.ContainerPreferredAllocationRequest(
                        available_deviceIDs=[VF1],
                        must_include_deviceIDs=[VF1, VF2],
                        allocation_size=1,
                    )
                ]
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await kubelet.call(RESOURCE, "GetPreferredAllocation", bad)
            assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert not list((short_dir / "devinfo").glob("*"))

    run(scenario)


def test_preferred_allocation(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            request = dp.PreferredAllocationRequest(
                container_requests=[
                    dp.ContainerPreferredAllocationRequest(
                        available_deviceIDs=[VF2, VF1], allocation_size=1
                    ),
                    dp.ContainerPreferredAllocationRequest(
                        available_deviceIDs=[VF1, VF2],
                        must_include_deviceIDs=[VF2],
                        allocation_size=2,
                    ),
                ]
            )
            answer = await kubelet.call(RESOURCE, "GetPreferredAllocation", request)
            assert [list(r.deviceIDs) for r in answer.container_responses] == [
                [VF1],
                [VF2, VF1],
            ]
            assert (
                await kubelet.call(
                    RESOURCE, "PreStartContainer", dp.PreStartContainerRequest(devices_ids=[VF1])
                )
                == dp.PreStartContainerResponse()
            )

    run(scenario)


def test_kubelet_restart_reregisters(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, manager):
            await kubelet.wait_for(registered(kubelet))
            await kubelet.restart()  # sockets deleted, new kubelet.sock, no plugins known
            assert kubelet.devices(RESOURCE) == {}
            await kubelet.wait_for(registered(kubelet))
            assert len(kubelet.registrations) == 2
            assert kubelet.refused == []
            assert manager.plugins[0].socket.exists()
            answer = await kubelet.allocate(RESOURCE, VF1)
            assert answer.envs[env_name(RESOURCE)] == VF1

    run(scenario)


def test_new_kubelet_socket_alone_triggers_registration(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        async with running(node, short_dir) as (kubelet, _manager):
            await kubelet.wait_for(registered(kubelet))
            await kubelet.stop()  # kubelet gone (its socket too), the plugin socket stays
            await kubelet.start()
            await kubelet.wait_for(registered(kubelet))
            assert len(kubelet.registrations) == 2

    run(scenario)


def test_plugin_watcher_registration(node: Node, short_dir: Path) -> None:
    async def scenario() -> None:
        (short_dir / "kubelet" / "plugins_registry").mkdir(parents=True)
        async with running(node, short_dir, registration="auto") as (kubelet, manager):
            assert manager.watcher
            socket = short_dir / "kubelet/plugins_registry/dpunet-mellanox.com-mlnx_sriov_cx6.sock"
            for _ in range(100):
                if socket.exists():
                    break
                await asyncio.sleep(0.02)
            [info] = await kubelet.discover_watcher_plugins()
            assert (info.type, info.name, list(info.supported_versions)) == (
                "DevicePlugin",
                RESOURCE,
                ["v1beta1"],
            )
            assert info.endpoint == str(socket)
            await kubelet.wait_for(registered(kubelet))
            assert manager.plugins[0].registered
            assert kubelet.registrations == []  # no Register call on kubelet.sock

    run(scenario)
