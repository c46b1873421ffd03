"""A stand-in for kubelet's gRPC side, for the tests (no kubelet runs in the lab).

`FakeKubelet` serves, under its own kubelet directory, what a device plugin and a CNI
talk to: `Registration` on `device-plugins/kubelet.sock` and `PodResourcesLister` on
`pod-resources/kubelet.sock`. Like kubelet it dials a registering plugin back at once
(so a plugin that registers before it serves is refused), keeps a ListAndWatch stream
per resource, allocates through `Allocate`, and on `restart` deletes every socket in
`device-plugins/` and creates a new `kubelet.sock`. `discover_watcher_plugins` does what
kubelet's plugin watcher does with the sockets in `plugins_registry/`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from dpunet.grpcglue import service_handler, unary, unary_stream, unix_target
from dpunet.host.kubelet.deviceplugin import (
    API_VERSION,
    DEVICE_PLUGIN_SERVICE,
    KUBELET_REGISTRATION,
    KUBELET_SOCKET,
    PLUGINS_REGISTRY,
    WATCHER_REGISTRATION,
)
from dpunet.host.kubelet.podresources import SERVICE as POD_RESOURCES_SERVICE
from dpunet.host.kubelet.podresources import SOCKET as POD_RESOURCES_SOCKET
from dpunet.host.kubelet.proto import deviceplugin_pb2 as dp
from dpunet.host.kubelet.proto import pluginregistration_pb2 as reg
from dpunet.host.kubelet.proto import podresources_pb2 as pr


@dataclass
class PluginEndpoint:
    """A registered resource as kubelet keeps it."""

    resource: str
    socket: Path
    channel: Any
    devices: dict[str, str] = field(default_factory=dict)  # id -> health
    updates: int = 0
    watch: asyncio.Task[None] | None = None


class FakeKubelet:
    """kubelet's device-plugin registry and PodResources server (see module docstring)."""

    def __init__(self, kubelet_dir: Path) -> None:
        self.dir = kubelet_dir
        self.registrations: list[dp.RegisterRequest] = []
        self.refused: list[tuple[str, str]] = []  # (resource, why)
        self.endpoints: dict[str, PluginEndpoint] = {}
        self.pods: list[pr.PodResources] = []
        self._changed = asyncio.Condition()
        self._servers: list[Any] = []

    @property
    def registration_socket(self) -> Path:
        """`device-plugins/kubelet.sock`."""
        return self.dir / KUBELET_SOCKET

    async def start(self) -> None:
        """Serve Registration and PodResourcesLister."""
        for socket, service in (
            (self.registration_socket, KUBELET_REGISTRATION),
            (self.dir / POD_RESOURCES_SOCKET, POD_RESOURCES_SERVICE),
        ):
            socket.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                socket.unlink()
            server = grpc.aio.server()
            server.add_generic_rpc_handlers([service_handler(service, self)])
            server.add_insecure_port(unix_target(str(socket)))
            await server.start()
            self._servers.append(server)

    async def stop(self) -> None:
        """Stop serving and forget every plugin (their streams close)."""
        for server in self._servers:
            await server.stop(0)
        self._servers.clear()
        for endpoint in self.endpoints.values():
            await self._drop(endpoint)
        self.endpoints.clear()

    async def restart(self) -> None:
        """What a kubelet restart does to the device-plugins directory."""
        await self.stop()
        for path in self.registration_socket.parent.iterdir():
            path.unlink()
        await self.start()

    # Registration -------------------------------------------------------------------------
    async def Register(self, request: dp.RegisterRequest, context: Any) -> dp.Empty:
        """Accept a plugin only if it answers on its endpoint right away."""
        self.registrations.append(request)
        socket = self.registration_socket.parent / request.endpoint
        why = await self._connect(request.resource_name, socket, request.version)
        if why is not None:
            self.refused.append((request.resource_name, why))
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)
        return dp.Empty()

    async def _connect(self, resource: str, socket: Path, version: str) -> str | None:
        if version != API_VERSION:
            return f"unsupported version {version!r}"
        channel = grpc.aio.insecure_channel(unix_target(str(socket)))
        try:
            await unary(channel, DEVICE_PLUGIN_SERVICE, "GetDevicePluginOptions")(
                dp.Empty(), timeout=2
            )
        except grpc.RpcError as exc:
            await channel.close()
            return f"plugin endpoint {socket.name} does not answer: {exc.code().name}"
        old = self.endpoints.get(resource)
        if old is not None:
            await self._drop(old)
        endpoint = PluginEndpoint(resource, socket, channel)
        endpoint.watch = asyncio.create_task(self._watch(endpoint))
        self.endpoints[resource] = endpoint
        return None

    async def _watch(self, endpoint: PluginEndpoint) -> None:
        stream = unary_stream(endpoint.channel, DEVICE_PLUGIN_SERVICE, "ListAndWatch")(dp.Empty())
        with contextlib.suppress(grpc.RpcError):
            async for answer in stream:
                async with self._changed:
                    endpoint.devices = {d.ID: d.health for d in answer.devices}
                    endpoint.updates += 1
                    self._changed.notify_all()

    async def _drop(self, endpoint: PluginEndpoint) -> None:
        if endpoint.watch is not None:
            endpoint.watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await endpoint.watch
        await endpoint.channel.close()

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until `check()` holds after some registration or device list arrived."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(check), timeout)

    def devices(self, resource: str) -> dict[str, str]:
        """The latest device list of `resource`: id -> health ({} when unregistered)."""
        endpoint = self.endpoints.get(resource)
        return dict(endpoint.devices) if endpoint else {}

    # plugin watcher -----------------------------------------------------------------------
    async def discover_watcher_plugins(self) -> list[reg.PluginInfo]:
        """One scan of `plugins_registry/`: GetInfo, connect, NotifyRegistrationStatus."""
        found = []
        for socket in sorted((self.dir / PLUGINS_REGISTRY).glob("*.sock")):
            async with grpc.aio.insecure_channel(unix_target(str(socket))) as channel:
                info = await unary(channel, WATCHER_REGISTRATION, "GetInfo")(
                    reg.InfoRequest(), timeout=2
                )
                if info.type != "DevicePlugin" or API_VERSION not in info.supported_versions:
                    why: str | None = f"not a {API_VERSION} device plugin"
                else:
                    why = await self._connect(info.name, Path(info.endpoint or socket), API_VERSION)
                await unary(channel, WATCHER_REGISTRATION, "NotifyRegistrationStatus")(
                    reg.RegistrationStatus(plugin_registered=why is None, error=why or ""),
                    timeout=2,
                )
            found.append(info)
        async with self._changed:
            self._changed.notify_all()
        return found

    # what kubelet asks a plugin -----------------------------------------------------------
    async def allocate(self, resource: str, *device_ids: str) -> dp.ContainerAllocateResponse:
        """Allocate `device_ids` for one container."""
        channel = self.endpoints[resource].channel
        request = dp.AllocateRequest(
            container_requests=[dp.ContainerAllocateRequest(devices_ids=list(device_ids))]
        )
        answer = await unary(channel, DEVICE_PLUGIN_SERVICE, "Allocate")(request, timeout=5)
        return answer.container_responses[0]

    async def admit_pod(
        self, namespace: str, name: str, resource: str, count: int = 1
    ) -> dp.ContainerAllocateResponse:
        """What kubelet's device manager does when it admits a pod of one container asking
        for `count` devices of `resource`: pick among the Healthy devices no admitted pod
        holds (through GetPreferredAllocation when the plugin offers it), Allocate them and
        list them in PodResources. LookupError when too few are free."""
        endpoint = self.endpoints.get(resource)
        if endpoint is None:
            raise LookupError(f"no device plugin registered {resource}")
        held = {
            i
            for pod in self.pods
            for c in pod.containers
            for d in c.devices
            if d.resource_name == resource
            for i in d.device_ids
        }
        free = sorted(i for i, h in endpoint.devices.items() if h == "Healthy" and i not in held)
        if len(free) < count:
            raise LookupError(f"{resource}: {count} requested, {len(free)} free")
        options = await self.call(resource, "GetDevicePluginOptions", dp.Empty())
        chosen = free[:count]
        if options.get_preferred_allocation_available:
            ask = dp.ContainerPreferredAllocationRequest(
                available_deviceIDs=free, allocation_size=count
            )
            preferred = await self.call(
                resource,
                "GetPreferredAllocation",
                dp.PreferredAllocationRequest(container_requests=[ask]),
            )
            chosen = list(preferred.container_responses[0].deviceIDs)
        answer = await self.allocate(resource, *chosen)
        self.add_pod(namespace, name, {resource: chosen})
        return answer

    def remove_pod(self, namespace: str, name: str) -> None:
        """Forget a pod (its devices are free again), as kubelet does once it is gone."""
        self.pods = [p for p in self.pods if (p.namespace, p.name) != (namespace, name)]

    async def call(self, resource: str, method: str, request: Any) -> Any:
        """Any other DevicePlugin RPC of a registered resource."""
        channel = self.endpoints[resource].channel
        return await unary(channel, DEVICE_PLUGIN_SERVICE, method)(request, timeout=5)

    # PodResourcesLister -------------------------------------------------------------------
    def add_pod(self, namespace: str, name: str, *containers: dict[str, list[str]]) -> None:
        """A pod whose containers got these devices (resource -> ids, one dict a container)."""
        self.pods.append(
            pr.PodResources(
                namespace=namespace,
                name=name,
                containers=[
                    pr.ContainerResources(
                        name=f"c{index}",
                        devices=[
                            pr.ContainerDevices(resource_name=resource, device_ids=ids)
                            for resource, ids in devices.items()
                        ],
                    )
                    for index, devices in enumerate(containers)
                ],
            )
        )

    async def List(
        self, request: pr.ListPodResourcesRequest, context: Any
    ) -> pr.ListPodResourcesResponse:
        """The pods and their devices."""
        return pr.ListPodResourcesResponse(pod_resources=self.pods)
