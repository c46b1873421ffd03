"""Fakes of what `PodAgent` talks to, for its unit tests: a device layer that tracks where
each device is (`FakeAttacher`), the controller's port API (`FakeController`), pod
namespaces as plain files, gates that hold a blocking call until the test opens them,
and a crash that stops the whole fake world the way `kill -9` stops a daemon."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpunet.cni.claims import Claim, DeviceClaims
from dpunet.cni.models import AddRequest, CheckRequest, DelRequest, GcRequest, parse_netconf
from dpunet.cni.results import AddResult
from dpunet.cni.sandboxes import HostLink, SandboxRecord, SandboxStore, VfDevice
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.contract.api import (
    DeleteResult,
    EventResult,
    NodeInfo,
    NodeRole,
    PodEventReport,
    PortInfo,
    PortRequest,
    Route,
)
from dpunet.contract.client import ClientError
from dpunet.contract.lsp import pod_lsp_name
from dpunet.linux.netlink import InterfaceConfig, LinuxError

NODE = "node1"
HOST = ("host",)


def holding(*keys: str) -> Claim:
    """A claim of its own (no other in flight) whose scan found `keys` held."""
    claim = Claim(DeviceClaims(), began=0)
    claim.held = frozenset(keys)
    return claim


class Crash(BaseException):
    """The daemon died at this point (kill -9): nothing after it happens."""


class World:
    """What outlives a daemon: whether it is alive, and the pod namespaces (files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.alive = True
        (root / "netns").mkdir(parents=True, exist_ok=True)

    def check_alive(self) -> None:
        """Raise `Crash` once the daemon is dead."""
        if not self.alive:
            raise Crash("the daemon is dead")

    def crash(self) -> None:
        """Die here."""
        self.alive = False
        raise Crash("killed")

    def netns(self, name: str) -> str:
        """A pod namespace that exists."""
        path = self.root / "netns" / name
        path.touch()
        return str(path)


class Gate:
    """Holds a call made in the agent's thread pool until the test opens it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.entered = asyncio.Event()
        self._open = threading.Event()

    def pass_through(self) -> None:
        """In the agent's thread: tell the test, then wait until it opens the gate."""
        self.loop.call_soon_threadsafe(self.entered.set)
        if not self._open.wait(10):
            raise TimeoutError("gate never opened")

    def open(self) -> None:
        """Let the held call (and later ones) go on."""
        self._open.set()


@dataclass
class Scripted:
    """Failures and gates per method name, consumed in call order."""

    world: World
    fail: dict[str, list[BaseException]] = field(default_factory=dict)
    fail_after: dict[str, list[BaseException]] = field(default_factory=dict)
    gates: dict[str, Gate | list[Gate]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def enter(self, method: str) -> None:
        self.world.check_alive()
        self.calls.append(method)
        gate = self.gates.get(method)
        if isinstance(gate, list):  # one gate per call, in call order
            gate = gate.pop(0) if gate else None
        else:
            gate = self.gates.pop(method, None)
        if gate is not None:
            gate.pass_through()
        failures = self.fail.get(method)
        if failures:
            raise failures.pop(0)

    def leave(self, method: str) -> None:
        """After the method's effect: a scripted failure now (a crash after the effect)."""
        failures = self.fail_after.get(method)
        if failures:
            exc = failures.pop(0)
            if isinstance(exc, Crash):
                self.world.crash()
            raise exc


class FakeAttacher(Scripted):
    """Devices `pci` that are on the host, staged in a pod (temporary name) or in a pod
    as an interface; a deleted namespace hands its devices back (as the kernel does)."""

    kind = "vf"

    def __init__(self, world: World, count: int = 4) -> None:
        super().__init__(world)
        self.devices = [f"0000:02:00.{n}" for n in range(2, 2 + count)]
        self.location: dict[str, tuple[str, ...]] = {pci: HOST for pci in self.devices}
        self.described: list[tuple[str, str]] = []  # (container id, device) looked at

    def claim(self, req: AddRequest, claim: Claim) -> VfDevice:
        """The first device `claim` lets it take; then the look at it ("describe", where the
        real VF attacher reads sysfs and netlink)."""
        self.enter("claim")
        for pci in self.devices:
            if not claim.take(pci):
                continue
            try:
                self.enter("describe")
            except BaseException:
                claim.give_back(pci)
                raise
            self.described.append((req.container_id, pci))
            return vf_device(pci)
        raise CniError(ErrorCode.NO_DEVICE, "no free device")

    def prepare(self, record: SandboxRecord) -> None:
        self.enter("prepare")

    def stage(self, record: SandboxRecord) -> None:
        self.enter("stage")
        pci = record.device.key
        if self.location[pci] != HOST:
            raise LinuxError(f"{pci} is not on the host but {self.location[pci]}")
        if not Path(record.netns).exists():
            raise LinuxError(f"no namespace {record.netns}")
        self.location[pci] = ("staged", record.netns)
        self.leave("stage")

    def plug(self, record: SandboxRecord, cfg: InterfaceConfig) -> None:
        self.enter("plug")
        pci = record.device.key
        if self.location[pci] != ("staged", record.netns):
            raise LinuxError(f"{pci} is not staged in {record.netns}")
        if ("pod", record.netns, cfg.ifname) in self.location.values():
            raise LinuxError(f"{cfg.ifname} exists in {record.netns}")
        self.location[pci] = ("pod", record.netns, cfg.ifname)
        self.leave("plug")

    def unplug(self, record: SandboxRecord) -> None:
        self.enter("unplug")
        pci = record.device.key
        where = self.location[pci]
        if where != HOST and where[1] != record.netns:
            raise LinuxError(f"{pci} is neither on the host nor in {record.netns}")
        self.location[pci] = HOST
        self.leave("unplug")

    def delete_netns(self, netns: str) -> None:
        """The pod's namespace goes; its devices return to the host."""
        Path(netns).unlink()
        for pci, where in self.location.items():
            if where != HOST and where[1] == netns:
                self.location[pci] = HOST

    def away(self) -> dict[str, tuple[str, ...]]:
        """Devices not on the host, and where they are."""
        return {pci: where for pci, where in self.location.items() if where != HOST}


class FakeController(Scripted):
    """The controller's port API: one port per (pod, network), released only for the
    sandbox and uid given (as the real one does); the primary port alone has the default
    route."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.ports: dict[tuple[str, str, str | None], PortInfo] = {}
        self.requests: dict[tuple[str, str, str | None], PortRequest] = {}
        self.events: list[PodEventReport] = []
        self._next = 10

    def put_port(
        self, namespace: str, name: str, request: PortRequest, timeout: float | None = None
    ) -> PortInfo:
        self.enter("put_port")
        self._next += 1
        gateway = "10.0.0.1"
        port = PortInfo(
            **request.model_dump(exclude={"labels"}),
            namespace=namespace,
            name=name,
            lsp=pod_lsp_name(namespace, name, request.network),
            mac=f"0a:58:0a:00:00:{self._next:02x}",
            ips=[f"10.0.0.{self._next}/24"],
            gateways=[gateway],
            routes=[Route(dst="0.0.0.0/0", gw=gateway)] if request.network is None else [],
            mtu=1400,
            up=True,
        )
        self.ports[(namespace, name, request.network)] = port
        self.requests[(namespace, name, request.network)] = request
        self.leave("put_port")
        return port

    def delete_port(
        self,
        namespace: str,
        name: str,
        uid: str | None = None,
        sandbox: str | None = None,
        network: str | None = None,
    ) -> DeleteResult:
        self.enter("delete_port")
        port = self.ports.get((namespace, name, network))
        if port is None or uid not in (None, port.uid) or sandbox not in (None, port.sandbox):
            return DeleteResult(deleted=False, detail="no such port")
        del self.ports[(namespace, name, network)]
        self.leave("delete_port")
        return DeleteResult(deleted=True, detail="released")

    def get_port(self, namespace: str, name: str, network: str | None = None) -> PortInfo:
        self.enter("get_port")
        port = self.ports.get((namespace, name, network))
        if port is None:
            raise ClientError(404, f"no port {namespace}/{name}")
        return port

    def list_ports(self, node: str | None = None, namespace: str | None = None) -> list[PortInfo]:
        self.enter("list_ports")
        return [
            p
            for p in self.ports.values()
            if node in (None, p.node) and namespace in (None, p.namespace)
        ]

    def get_node(self, name: str) -> NodeInfo:
        self.enter("get_node")
        return NodeInfo(
            name=name, role=NodeRole.DPU_HOST, chassis="dpu1", node_ip="192.0.2.11/24",
            next_hop="192.0.2.1", gateway_mac="0a:58:c0:00:02:0b", subnet="10.0.0.0/24",
            gateway_ip="10.0.0.1", mgmt_ip="10.0.0.2/24", mgmt_mac="0a:58:0a:00:00:02",
            join_ip="100.64.0.3", cluster_cidr="10.0.0.0/16", service_cidr="10.96.0.0/12",
            mtu=1400, ports=len(self.ports), free_ips=200,
        )  # fmt: skip

    def report_event(self, namespace: str, name: str, report: PodEventReport) -> EventResult:
        self.enter("report_event")
        self.events.append(report)
        return EventResult(recorded=False)

    def sandboxes(self) -> set[str]:
        """The sandboxes the controller holds ports for."""
        return {p.sandbox for p in self.ports.values()}


class CrashingStore(SandboxStore):
    """A store whose daemon dies at its `crash_at`-th write (a save or a removal):
    before the write lands, or right after it when `after_write`."""

    def __init__(
        self, state_dir: Path, world: World, crash_at: int, after_write: bool = False
    ) -> None:
        super().__init__(state_dir)
        self.world = world
        self.crash_at = crash_at
        self.after_write = after_write
        self.writes = 0

    def save(self, record: SandboxRecord) -> None:
        self._crashable(lambda: super(CrashingStore, self).save(record))

    def remove(self, record: SandboxRecord) -> None:
        self._crashable(lambda: super(CrashingStore, self).remove(record))

    def _crashable(self, write: Any) -> None:
        self.world.check_alive()
        self.writes += 1
        if self.writes == self.crash_at and not self.after_write:
            self.world.crash()
        write()
        if self.writes == self.crash_at:
            self.world.crash()


def netconf(network: str) -> Any:
    """A 1.1.0 config of network `network`."""
    return parse_netconf({"cniVersion": "1.1.0", "name": network, "type": "dpunet-cni"})


def pod_args(pod: str, uid: str | None = None) -> dict[str, str]:
    """CNI_ARGS of Kubernetes pod default/`pod`."""
    return {
        "K8S_POD_NAMESPACE": "default",
        "K8S_POD_NAME": pod,
        "K8S_POD_UID": uid or f"uid-{pod}",
    }


def add_request(
    cid: str, netns: str, pod: str, ifname: str = "eth0", network: str = "dpunet"
) -> AddRequest:
    """ADD of `ifname` in network `network` for pod `pod` (sandbox `cid`)."""
    return AddRequest(
        command="ADD", cni_version="1.1.0", config=netconf(network), raw_config="{}",
        args=pod_args(pod), container_id=cid, ifname=ifname, netns=netns,
    )  # fmt: skip


def del_request(
    cid: str, pod: str, ifname: str = "eth0", network: str = "dpunet", netns: str | None = None
) -> DelRequest:
    """DEL of `ifname` in network `network` (`netns` may be unset, as the spec allows)."""
    return DelRequest(
        command="DEL", cni_version="1.1.0", config=netconf(network), raw_config="{}",
        args=pod_args(pod), container_id=cid, ifname=ifname, netns=netns,
    )  # fmt: skip


def check_request(
    cid: str, netns: str, pod: str, prev: AddResult, ifname: str = "eth0", network: str = "dpunet"
) -> CheckRequest:
    """CHECK of an attachment against the result of its ADD."""
    return CheckRequest(
        command="CHECK", cni_version="1.1.0", config=netconf(network), raw_config="{}",
        args=pod_args(pod), container_id=cid, ifname=ifname, netns=netns, prev_result=prev,
    )  # fmt: skip


def gc_request(network: str, valid: list[tuple[str, str]]) -> GcRequest:
    """GC of network `network` keeping the attachments `valid` (container id, ifname)."""
    attachments = [{"containerID": cid, "ifname": ifname} for cid, ifname in valid]
    config = parse_netconf(
        {
            "cniVersion": "1.1.0",
            "name": network,
            "type": "dpunet-cni",
            "cni.dev/valid-attachments": attachments,
        }
    )
    return GcRequest(
        command="GC", cni_version="1.1.0", config=config, raw_config="{}",
        valid_attachments=config.valid_attachments or (),
    )  # fmt: skip


def vf_device(pci: str) -> VfDevice:
    """A VF claim as the VF attacher makes it (VF index from the PCI function)."""
    return VfDevice(
        pci=pci, resource="example.com/vfs", pf_mac="b8:3f:d2:00:00:01",
        vf_num=int(pci.rsplit(".", 1)[1]),
        host_link=HostLink(name=f"vf{pci[-1]}", mac="", mtu=1500, up=True),
    )  # fmt: skip


def port_info(pod: str, sandbox: str, uid: str, network: str | None = None) -> PortInfo:
    """The controller's port of pod default/`pod` on this node."""
    return PortInfo(
        namespace="default", name=pod, node=NODE, uid=uid, sandbox=sandbox,
        ifname="eth0" if network is None else "net1", network=network,
        lsp=pod_lsp_name("default", pod, network), mac="0a:58:0a:00:00:05",
        ips=["10.0.0.5/24"], gateways=["10.0.0.1"], routes=[], mtu=1400, up=True,
    )  # fmt: skip
