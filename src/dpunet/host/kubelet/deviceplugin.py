"""The kubelet device plugin (API v1beta1) of `dpunet-host`: one resource per VF pool.

For every resource of the pool config (`<prefix>/<name>`, the sriov-network-device-plugin
`config.json`) a `grpc.aio` server offers the `DevicePlugin` service on a unix socket, and
only once it serves is the resource registered with kubelet:

- `kubelet` registration: socket `<kubelet dir>/device-plugins/dpunet-<prefix>-<name>.sock`,
  then `Registration.Register` on `<kubelet dir>/device-plugins/kubelet.sock`. A restarted
  kubelet deletes every socket there and creates a new `kubelet.sock`; both are polled, and
  the socket is served anew and registered again.
- `watcher` registration: socket `<kubelet dir>/plugins_registry/dpunet-<prefix>-<name>.sock`
  also serving `pluginregistration.Registration` (`GetInfo`, `NotifyRegistrationStatus`);
  kubelet's plugin watcher finds it, also after a kubelet restart.
- `auto` (default): `watcher` when `<kubelet dir>/plugins_registry` exists, as the
  reference plugin decides.

Device IDs are PCI addresses. Health is real: a VF is `Unhealthy` while its netdev is gone
from the host and no pod holds it (a sandbox of this node, or a kubelet allocation), while
its PF has no carrier, or while the DPU is not ready (the management port is not in
place, or its lease at the controller expired); ListAndWatch sends the new list on every
change. `Allocate` answers the reference plugin's environment
(`PCIDEVICE_<PREFIX>_<NAME>` = the comma-joined addresses,
`..._INFO` = `{"<pci>": {"generic": {"deviceID": "<pci>"}}}`, plus `"extra"` from the
pool's `additionalInfo`) and writes the device-info-spec file multus copies,
`<device info dir>/<prefix>-<name>-<pci>-device.json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import grpc
from prometheus_client import CollectorRegistry, Gauge

from dpunet.grpcglue import service_handler, unary, unix_target
from dpunet.host.kubelet import podresources
from dpunet.host.kubelet.proto import deviceplugin_pb2 as dp
from dpunet.host.kubelet.proto import pluginregistration_pb2 as reg
from dpunet.hw.netdev import read_netdev
from dpunet.hw.pci import read_pci_device
from dpunet.hw.pools import PoolAssignment, PoolDevice, ResourceConfig
from dpunet.hw.sysfs import Sysfs
from dpunet.logs import event

log = logging.getLogger("dpunet.deviceplugin")

API_VERSION = "v1beta1"
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
KUBELET_SOCKET = Path("device-plugins/kubelet.sock")
PLUGINS_REGISTRY = Path("plugins_registry")
DEFAULT_DEVICE_INFO_DIR = Path("/var/run/k8s.cni.cncf.io/devinfo/dp")
DEVICE_INFO_VERSION = "1.1.0"
DEVICE_PLUGIN_SERVICE = dp.DESCRIPTOR.services_by_name["DevicePlugin"]
KUBELET_REGISTRATION = dp.DESCRIPTOR.services_by_name["Registration"]
WATCHER_REGISTRATION = reg.DESCRIPTOR.services_by_name["Registration"]

Registration = Literal["auto", "kubelet", "watcher"]


# --- what a pool's VFs look like ---------------------------------------------------------


@dataclass(frozen=True)
class VfHealth:
    """One advertised VF and whether a pod can use it now."""

    pci: str
    pf_pci: str | None
    vf_index: int | None
    numa_node: int | None
    problem: str | None = None

    @property
    def health(self) -> str:
        """`Healthy` or `Unhealthy`, as kubelet spells them."""
        return HEALTHY if self.problem is None else UNHEALTHY


Inventory = dict[str, tuple[VfHealth, ...]]


def survey(
    sysfs: Sysfs,
    assignment: PoolAssignment,
    held: Collection[str],
    dpu: tuple[bool, str],
) -> Inventory:
    """Every pooled VF with its health (see the module docstring); `held` are the PCI
    addresses pods hold, `dpu` is (ready, why not) of the DPU."""
    carriers: dict[str, str | None] = {}
    inventory: Inventory = {}
    for pool in assignment.pools:
        states = []
        for device in pool.devices:
            pf = device.pf_netdev
            if pf is not None and pf not in carriers:
                carriers[pf] = _pf_problem(sysfs, pf)
            problem = _vf_problem(device, dpu, carriers.get(pf or ""), held)
            pci = read_pci_device(sysfs, device.address)
            states.append(
                VfHealth(
                    device.address,
                    device.pf_address,
                    device.vf_index,
                    pci.numa_node if pci else None,
                    problem,
                )
            )
        inventory[pool.resource] = tuple(states)
    return inventory


def _vf_problem(
    device: PoolDevice, dpu: tuple[bool, str], pf_problem: str | None, held: Collection[str]
) -> str | None:
    if not dpu[0]:
        return f"DPU not ready: {dpu[1]}"
    if device.pf_netdev is None:
        return "its PF has no netdev in the host"
    if pf_problem is not None:
        return pf_problem
    if device.netdev is None and device.address not in held:
        return "netdev vanished and no pod holds the VF"
    return None


def _pf_problem(sysfs: Sysfs, pf: str) -> str | None:
    netdev = read_netdev(sysfs, pf)
    if netdev is None:
        return f"PF {pf} vanished"
    if netdev.carrier is not True:
        return f"PF {pf} has no carrier (operstate {netdev.operstate or 'unknown'})"
    return None


# --- what Allocate hands out -------------------------------------------------------------


def env_name(resource: str) -> str:
    """`PCIDEVICE_<PREFIX>_<NAME>` of `<prefix>/<name>`: upper case, `.` and `/` as `_`."""
    return "PCIDEVICE_" + resource.upper().replace(".", "_").replace("/", "_")


def allocation_envs(
    resource: str, pcis: Sequence[str], additional_info: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The environment a container gets for the VFs `pcis` of `resource`."""
    info: dict[str, dict[str, dict[str, str]]] = {}
    for pci in pcis:
        info[pci] = {"generic": {"deviceID": pci}}
        if additional_info:
            info[pci]["extra"] = {**additional_info.get("*", {}), **additional_info.get(pci, {})}
    name = env_name(resource)
    return {name: ",".join(pcis), f"{name}_INFO": json.dumps(info, separators=(",", ":"))}


def device_info_path(directory: Path, resource: str, pci: str) -> Path:
    """The device-info-spec file of a VF allocated from `resource`."""
    return directory / f"{resource.replace('/', '-')}-{pci.replace('/', '-')}-device.json"


def write_device_info(directory: Path, resource: str, vf: VfHealth) -> Path:
    """Write (replace) the device-info-spec file multus copies for the pod's network."""
    pci: dict[str, str] = {"pci-address": vf.pci}
    if vf.pf_pci:
        pci["pf-pci-address"] = vf.pf_pci
    document = {"type": "pci", "version": DEVICE_INFO_VERSION, "pci": pci}
    directory.mkdir(parents=True, exist_ok=True)
    path = device_info_path(directory, resource, vf.pci)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps(document))
    temp.chmod(0o444)
    temp.replace(path)
    return path


def socket_name(resource: str) -> str:
    """The plugin's socket file name for `resource`."""
    return f"dpunet-{resource.replace('/', '-')}.sock"


# --- one resource's gRPC services --------------------------------------------------------


class ResourcePlugin:
    """The `DevicePlugin` service of one resource (and, in watcher mode, its registration)."""

    def __init__(
        self,
        resource: ResourceConfig,
        socket: Path,
        watcher: bool,
        device_info_dir: Path,
    ) -> None:
        self.resource = resource.full_name
        self.additional_info = resource.additional_info or {}
        self.socket = socket
        self.watcher = watcher
        self.device_info_dir = device_info_dir
        self.devices: tuple[VfHealth, ...] = ()
        self.registered = False
        self._version = 0
        self._changed = asyncio.Condition()
        self._server: Any = None

    @property
    def serving(self) -> bool:
        """The server runs and its socket is in place."""
        return self._server is not None and self.socket.exists()

    async def start(self) -> None:
        """Serve on `socket` (a stale file there is replaced)."""
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        server = grpc.aio.server()
        handlers = [service_handler(DEVICE_PLUGIN_SERVICE, self)]
        if self.watcher:
            handlers.append(service_handler(WATCHER_REGISTRATION, self))
        server.add_generic_rpc_handlers(handlers)
        server.add_insecure_port(unix_target(str(self.socket)))
        await server.start()
        self._server = server
        event(log, "device-plugin-serving", resource=self.resource, socket=self.socket)

    async def stop(self) -> None:
        """Stop serving (open ListAndWatch streams end) and remove the socket."""
        server, self._server = self._server, None
        self.registered = False
        if server is not None:
            await server.stop(0)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    async def update(self, devices: tuple[VfHealth, ...]) -> list[VfHealth]:
        """Take a new device list; ListAndWatch streams get it if it differs. Returns the
        devices whose health changed or that are new."""
        if devices == self.devices:
            return []
        before = {d.pci: d for d in self.devices}
        changed = [d for d in devices if before.get(d.pci) != d]
        async with self._changed:
            self.devices = devices
            self._version += 1
            self._changed.notify_all()
        return changed

    def _device_list(self) -> dp.ListAndWatchResponse:
        return dp.ListAndWatchResponse(
            devices=[
                dp.Device(
                    ID=d.pci,
                    health=d.health,
                    topology=dp.TopologyInfo(nodes=[dp.NUMANode(ID=d.numa_node)])
                    if d.numa_node is not None and d.numa_node >= 0
                    else None,
                )
                for d in self.devices
            ]
        )

    # DevicePlugin -------------------------------------------------------------------------
    async def GetDevicePluginOptions(self, request: dp.Empty, context: Any) -> Any:
        """No PreStartContainer needed; GetPreferredAllocation is offered."""
        return dp.DevicePluginOptions(get_preferred_allocation_available=True)

    async def ListAndWatch(
        self, request: dp.Empty, context: Any
    ) -> AsyncIterator[dp.ListAndWatchResponse]:
        """The device list now and after every change, until the server stops."""
        sent = -1
        while self._server is not None:
            async with self._changed:
                await self._changed.wait_for(partial(self._newer_than, sent))
                sent = self._version
                answer = self._device_list()
            yield answer

    def _newer_than(self, version: int) -> bool:
        return self._version != version

    async def GetPreferredAllocation(
        self, request: dp.PreferredAllocationRequest, context: Any
    ) -> dp.PreferredAllocationResponse:
        """The must-include devices, then the others of their NUMA node, then by PF and VF."""
        known = {d.pci: d for d in self.devices}
        answers = []
        for ask in request.container_requests:
            asked = [*ask.available_deviceIDs, *ask.must_include_deviceIDs]
            await self._check_known(context, asked)
            chosen = list(dict.fromkeys(ask.must_include_deviceIDs))
            offered = set(ask.available_deviceIDs) | set(chosen)
            if not len(chosen) <= ask.allocation_size <= len(offered):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"allocation_size {ask.allocation_size} is outside "
                    f"[{len(chosen)}, {len(offered)}] for {self.resource}",
                )
            numa = {known[i].numa_node for i in chosen}
            rest = sorted(
                offered - set(chosen),
                key=lambda i: (
                    bool(numa) and known[i].numa_node not in numa,
                    known[i].pf_pci or "",
                    known[i].vf_index if known[i].vf_index is not None else -1,
                ),
            )
            chosen += rest[: ask.allocation_size - len(chosen)]
            answers.append(dp.ContainerPreferredAllocationResponse(deviceIDs=chosen))
        return dp.PreferredAllocationResponse(container_responses=answers)

    async def Allocate(self, request: dp.AllocateRequest, context: Any) -> dp.AllocateResponse:
        """The environment of each container; writes the device-info files."""
        answers = []
        for ask in request.container_requests:
            ids = list(dict.fromkeys(ask.devices_ids))
            if not ids:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no device ids")
            await self._check_known(context, ids)
            known = {d.pci: d for d in self.devices}
            for pci in ids:
                await asyncio.to_thread(
                    write_device_info, self.device_info_dir, self.resource, known[pci]
                )
            answers.append(
                dp.ContainerAllocateResponse(
                    envs=allocation_envs(self.resource, ids, self.additional_info)
                )
            )
            event(log, "allocated", resource=self.resource, devices=ids)
        return dp.AllocateResponse(container_responses=answers)

    async def PreStartContainer(
        self, request: dp.PreStartContainerRequest, context: Any
    ) -> dp.PreStartContainerResponse:
        """Nothing to do (not requested in the options)."""
        return dp.PreStartContainerResponse()

    async def _check_known(self, context: Any, ids: Sequence[str]) -> None:
        known = {d.pci for d in self.devices}
        unknown = [i for i in ids if i not in known]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown device id(s) {', '.join(unknown)} for {self.resource}",
            )

    # pluginregistration (watcher mode) ----------------------------------------------------
    async def GetInfo(self, request: reg.InfoRequest, context: Any) -> reg.PluginInfo:
        """Who this plugin is, for kubelet's plugin watcher."""
        return reg.PluginInfo(
            type="DevicePlugin",
            name=self.resource,
            endpoint=str(self.socket),
            supported_versions=[API_VERSION],
        )

    async def NotifyRegistrationStatus(
        self, request: reg.RegistrationStatus, context: Any
    ) -> reg.RegistrationStatusResponse:
        """kubelet's verdict on the registration."""
        self.registered = request.plugin_registered
        event(
            log,
            "device-plugin-registered" if request.plugin_registered else "registration-refused",
            level=logging.INFO if request.plugin_registered else logging.ERROR,
            resource=self.resource, mode="watcher", error=request.error or None,
        )  # fmt: skip
        return reg.RegistrationStatusResponse()


# --- all resources, kept registered and up to date ---------------------------------------


def _ready() -> tuple[bool, str]:
    return True, ""


@dataclass(frozen=True)
class PoolSource:
    """Where the plugin's view of the pools comes from (called in a worker thread): the
    pools as sysfs shows them, the VFs this node's sandboxes hold, the DPU's readiness."""

    sysfs: Sysfs
    assignment: Callable[[], PoolAssignment]
    held: Callable[[], Collection[str]] = frozenset
    dpu_ready: Callable[[], tuple[bool, str]] = _ready


@dataclass(frozen=True)
class DevicePluginSettings:
    """Where kubelet lives and how to register with it."""

    kubelet_dir: Path = Path("/var/lib/kubelet")
    device_info_dir: Path = DEFAULT_DEVICE_INFO_DIR
    registration: Registration = "auto"
    poll_interval: float = 2.0
    register_timeout: float = 5.0

    @property
    def kubelet_socket(self) -> Path:
        """kubelet's `Registration` socket."""
        return self.kubelet_dir / KUBELET_SOCKET

    def watcher_mode(self) -> bool:
        """True to register through the plugin watcher (`plugins_registry`)."""
        if self.registration == "auto":
            return (self.kubelet_dir / PLUGINS_REGISTRY).is_dir()
        return self.registration == "watcher"


class DevicePluginManager:
    """Serves one `ResourcePlugin` per resource, keeps them registered with kubelet (also
    across kubelet restarts) and their device lists current (polled, or on `poke`)."""

    def __init__(
        self,
        settings: DevicePluginSettings,
        resources: Sequence[ResourceConfig],
        source: PoolSource,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.watcher = settings.watcher_mode()
        where = settings.kubelet_dir / (PLUGINS_REGISTRY if self.watcher else KUBELET_SOCKET.parent)
        info_dir = settings.device_info_dir
        self.plugins = [
            ResourcePlugin(r, where / socket_name(r.full_name), self.watcher, info_dir)
            for r in resources
        ]
        self._kubelet_identity: tuple[int, int, int] | None = None
        self._wake = asyncio.Event()
        registry = registry or CollectorRegistry()
        self.device_gauge = Gauge(
            "dpunet_host_device_plugin_devices", "Advertised VFs by resource and health.",
            ["resource", "health"], registry=registry,
        )  # fmt: skip
        self.registered_gauge = Gauge(
            "dpunet_host_device_plugin_registered", "1 while kubelet has the resource.",
            ["resource"], registry=registry,
        )  # fmt: skip

    def poke(self) -> None:
        """Re-survey now (e.g. the DPU's readiness changed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve and keep registered until `stop` is set."""
        await self.refresh()
        try:
            for plugin in self.plugins:
                await plugin.start()
            while not stop.is_set():
                await self.ensure_registered()
                await self.refresh()
                self._wake.clear()
                waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
                await asyncio.wait(
                    waiters, timeout=self.settings.poll_interval, return_when="FIRST_COMPLETED"
                )
                for waiter in waiters:
                    waiter.cancel()
        finally:
            for plugin in self.plugins:
                await plugin.stop()

    async def refresh(self) -> None:
        """Survey the pools and push changes to the plugins."""
        try:
            devices = await asyncio.to_thread(self._survey)
        except Exception as exc:  # a transient sysfs race; the next poll retries
            event(log, "survey-failed", level=logging.WARNING, error=repr(exc))
            return
        for plugin in self.plugins:
            current = devices.get(plugin.resource, ())
            for vf in await plugin.update(current):
                event(
                    log, "device-health", resource=plugin.resource, pci=vf.pci,
                    health=vf.health, problem=vf.problem,
                )  # fmt: skip
            for health in (HEALTHY, UNHEALTHY):
                count = sum(d.health == health for d in current)
                self.device_gauge.labels(plugin.resource, health).set(count)

    def _survey(self) -> Inventory:
        """sysfs first, then who holds VFs: a VF leaves the host only after its sandbox
        record and kubelet's allocation exist, so a VF seen gone is never missed as held."""
        assignment = self.source.assignment()
        held = set(self.source.held()) | self._kubelet_allocated()
        return survey(self.source.sysfs, assignment, held, self.source.dpu_ready())

    def _kubelet_allocated(self) -> set[str]:
        socket = self.settings.kubelet_dir / podresources.SOCKET
        if not socket.exists():
            return set()
        try:
            pods = podresources.list_pod_resources(socket, self.settings.register_timeout)
        except podresources.PodResourcesError as exc:
            event(log, "pod-resources-unavailable", level=logging.DEBUG, error=str(exc))
            return set()
        return podresources.allocated_devices(pods, [p.resource for p in self.plugins])

    async def ensure_registered(self) -> None:
        """Serve anew where kubelet removed the socket; register where kubelet forgot us."""
        for plugin in self.plugins:
            if not plugin.serving:
                event(log, "device-plugin-socket-gone", level=logging.WARNING, socket=plugin.socket)
                await plugin.stop()
                await plugin.start()
        if not self.watcher:
            identity = _identity(self.settings.kubelet_socket)
            if identity != self._kubelet_identity:
                if self._kubelet_identity is not None:
                    event(log, "kubelet-restarted", socket=self.settings.kubelet_socket)
                for plugin in self.plugins:
                    plugin.registered = False
                self._kubelet_identity = identity
            if identity is not None:
                for plugin in self.plugins:
                    if not plugin.registered:
                        await self._register(plugin)
        for plugin in self.plugins:
            self.registered_gauge.labels(plugin.resource).set(int(plugin.registered))

    async def _register(self, plugin: ResourcePlugin) -> None:
        request = dp.RegisterRequest(
            version=API_VERSION,
            endpoint=plugin.socket.name,
            resource_name=plugin.resource,
            options=dp.DevicePluginOptions(get_preferred_allocation_available=True),
        )
        target = unix_target(str(self.settings.kubelet_socket))
        try:
            async with grpc.aio.insecure_channel(target) as channel:
                register = unary(channel, KUBELET_REGISTRATION, "Register")
                await register(request, timeout=self.settings.register_timeout)
        except grpc.RpcError as exc:
            event(
                log, "registration-failed", level=logging.WARNING, resource=plugin.resource,
                code=exc.code().name, error=exc.details(),
            )  # fmt: skip
            return
        plugin.registered = True
        event(log, "device-plugin-registered", resource=plugin.resource, mode="kubelet")


def _identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, ctime) of a file, to notice it was created anew; None when absent."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, stat.st_ctime_ns
