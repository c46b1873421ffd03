"""The CNI flow of a node daemon against the controller's port API.

`PodAgent` implements the CNI verbs (docs/architecture.md section 3) for any kind of
pod interface; an `Attacher` supplies what is device-specific (a VF on a
dpu-host node, a veth on a full node). ADD: claim a device, record the claim,
ask the controller for the port (it answers once OVN reports the port up) while
the device is moved toward the pod, configure it in the pod, record success, and
wait (briefly, `gateway_timeout`) until the pod's gateway answers the pod's own ARP.
Any failure after the claim undoes everything in reverse. DEL undoes a
recorded attachment and is idempotent. A periodic reconcile releases what belongs
to sandboxes that are gone and finishes what a crash interrupted; GC releases the
attachments of its network that the runtime no longer lists.

An attachment is (container id, CNI_IFNAME, network name): a sandbox may have
several (multus secondary networks), each with its own device, record and port at the
controller (`eth0` is the pod's primary port, with the default route; any other
interface is a port of its network, `contract.api.port_network`). The
verbs run under the per-container lock of `PodAgent.locks`, which the CNI server
takes for ADD/DEL/CHECK; reconcile and GC take it for each sandbox they touch and
re-read its records under it, so they never act on a stale copy.

A sandbox file this version cannot read (`UnreadableRecord`) is reported (log and
the `sandbox_records_unreadable` gauge) and left alone: its devices, as far as
they can be read, stay claimed, and its orphan-looking ports stay; ADD, DEL and
CHECK of that sandbox fail with code 104 naming the file, since undoing what we
cannot read could take a device or a port another version still uses. An
operator (or the newer version) finishes it; removing the file by hand releases
the claim.

While the node's DPU is down (`PodAgent.dpu_down`: its lease at the controller expired),
STATUS answers code 50 and ADD fails with code 50 before it claims anything.

Error codes beyond the CNI spec's (all >= 100, as the spec reserves 0-99):
100 no free device, 101 the controller refused the port, 102 plugging into the
pod failed, 103 CHECK found a difference, 104 the sandbox's record is unreadable,
105 the interface name is attached to another network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import ValidationError

from dpunet.cni.binding.base import Attacher
from dpunet.cni.claims import DeviceClaims
from dpunet.cni.models import (
    AddRequest,
    CheckRequest,
    DelRequest,
    GcRequest,
    StatusRequest,
)
from dpunet.cni.results import AddResult, Interface, IPConfig
from dpunet.cni.results import Route as ResultRoute
from dpunet.cni.sandboxes import (
    Phase,
    SandboxRecord,
    SandboxStore,
    StoreScan,
    UnreadableRecord,
    VfDevice,
)
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.contract.api import (
    DeleteResult,
    EventResult,
    NodeInfo,
    PodEventReport,
    PodMetadata,
    PortInfo,
    PortRequest,
    port_network,
)
from dpunet.contract.client import ClientError
from dpunet.keyedlocks import KeyedLocks
from dpunet.linux import netlink
from dpunet.linux.netlink import InterfaceConfig, LinuxError, Route
from dpunet.logs import event
from dpunet.settings import describe

BLOCKING_THREADS = 64
T = TypeVar("T")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABELS_KEY = "dpunet.io/labels"  # runtimeConfig: the pod's labels, {"key": "value"}
PORTS_KEY = "dpunet.io/ports"  # runtimeConfig: [{"name", "containerPort", "protocol"}]
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

log = logging.getLogger("dpunet.agent")


class ControllerApi(Protocol):
    """The controller's port API as PodAgent uses it (`ControllerClient` implements it).
    Methods block; they run in a thread. Errors are `ClientError` (status 0: no answer)."""

    def put_port(
        self, namespace: str, name: str, request: PortRequest, timeout: float | None = None
    ) -> PortInfo:
        """Create (or re-confirm) a pod port; answers once it is up."""
        ...

    def delete_port(
        self,
        namespace: str,
        name: str,
        uid: str | None = None,
        sandbox: str | None = None,
        network: str | None = None,
    ) -> DeleteResult:
        """Release a pod's port (primary, or of `network`) if it still belongs to
        `uid`/`sandbox` (unknown: success)."""
        ...

    def get_port(self, namespace: str, name: str, network: str | None = None) -> PortInfo:
        """A pod's port, primary or of `network` (404 when there is none)."""
        ...

    def list_ports(self, node: str | None = None, namespace: str | None = None) -> list[PortInfo]:
        """Pod ports (every attachment's), optionally of one node."""
        ...

    def get_node(self, name: str) -> NodeInfo:
        """One node."""
        ...

    def report_event(self, namespace: str, name: str, report: PodEventReport) -> EventResult:
        """Tell the controller why a pod cannot be attached."""
        ...


GatewayProbe = Callable[[str, InterfaceConfig, float], "float | None"]
"""(pod netns, the interface's config, timeout) -> seconds until the gateway answered, or
None; LinuxError when the interface cannot be looked at."""


def probe_gateway(netns: str, cfg: InterfaceConfig, timeout: float) -> float | None:
    """Resolve the gateway of `cfg` from inside the pod (`netlink.resolve_neighbour`)."""
    if cfg.gateway is None:
        return None
    return netlink.resolve_neighbour(netns, cfg.ifname, cfg.gateway, timeout)


class AgentMetrics:
    """ADD/DEL latency by phase, outcomes, sandboxes held."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.registry = registry
        self.phase_seconds = Histogram(
            f"{prefix}_cni_phase_seconds",
            "Time spent in each phase of a CNI ADD/DEL.",
            ["verb", "phase"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            f"{prefix}_cni_requests_total", "CNI requests by verb and result.", ["verb", "result"],
            registry=registry,
        )  # fmt: skip
        self.sandboxes = Gauge(
            f"{prefix}_sandboxes", "Sandboxes holding a device, by phase.", ["phase"],
            registry=registry,
        )  # fmt: skip
        self.reconcile_actions = Counter(
            f"{prefix}_reconcile_actions_total", "Repairs made by the reconcile loop.", ["action"],
            registry=registry,
        )  # fmt: skip
        self.gateway_checks = Counter(
            f"{prefix}_cni_gateway_checks_total",
            "ADDs by whether the pod's gateway answered its ARP before ADD returned.",
            ["result"],
            registry=registry,
        )
        self.unreadable_records = Gauge(
            f"{prefix}_sandbox_records_unreadable",
            "Sandbox files this version cannot read (their devices stay claimed).",
            registry=registry,
        )


def pod_identity(req: AddRequest | DelRequest) -> tuple[str, str, str]:
    """(namespace, name, uid) of the pod: from CNI_ARGS (Kubernetes, podman) or, for a bare
    runtime, `default` / `c-<container id prefix>` / the container id."""
    namespace = (req.pod_namespace or "default").lower()
    name = (req.pod_name or f"c-{req.container_id[:12]}").lower()
    uid = req.pod_uid or req.container_id
    for what, value in (("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name)):
        if not _DNS_LABEL.match(value):
            raise CniError(
                ErrorCode.INVALID_CONFIG,
                f"{what} {value!r} is not a DNS label",
                "lowercase a-z, 0-9 and '-'",
            )
    return namespace, name, uid


def interface_config(ifname: str, port: PortInfo) -> InterfaceConfig:
    """The pod interface the controller's port answer describes: the default route only
    when the answer has one (a primary port), the other routes as they are."""
    default = next((r for r in port.routes if ipaddress.IPv4Network(r.dst).prefixlen == 0), None)
    return InterfaceConfig(
        ifname=ifname,
        mac=port.mac,
        mtu=port.mtu,
        address=ipaddress.IPv4Interface(port.ips[0]),
        gateway=ipaddress.IPv4Address(default.gw) if default is not None else None,
        routes=tuple(
            Route(ipaddress.IPv4Network(r.dst), ipaddress.IPv4Address(r.gw))
            for r in port.routes
            if r is not default
        ),
    )


def cni_result(record: SandboxRecord, port: PortInfo) -> AddResult:
    """The CNI result of an attached sandbox."""
    gateway = port.gateways[0] if port.gateways else None
    return AddResult(
        interfaces=(
            Interface(
                name=record.ifname,
                mac=port.mac,
                mtu=port.mtu,
                sandbox=record.netns,
                pciID=record.device.pci if isinstance(record.device, VfDevice) else None,
            ),
        ),
        ips=tuple(IPConfig(address=ip, gateway=gateway, interface=0) for ip in port.ips),
        routes=tuple(ResultRoute(dst=r.dst, gw=r.gw) for r in port.routes),
    )


def pod_metadata(req: AddRequest) -> PodMetadata:
    """The pod's labels and named container ports, from runtimeConfig `dpunet.io/labels`
    and `dpunet.io/ports` (absent: none); CniError 7 naming what is malformed."""
    given = req.config.runtime_config.model_extra or {}
    try:
        return PodMetadata.model_validate(
            {"labels": given.get(LABELS_KEY) or {}, "ports": given.get(PORTS_KEY) or []}
        )
    except ValidationError as exc:
        raise CniError(
            ErrorCode.INVALID_CONFIG,
            f"invalid runtimeConfig {LABELS_KEY} / {PORTS_KEY}",
            describe(exc),
        ) from None


def port_request(
    node: str, record: SandboxRecord, network: str | None, meta: PodMetadata
) -> PortRequest | CniError:
    """The port request of an attachment, or why it cannot be made (code 101)."""
    device = record.device
    vf = (
        {"pci": device.pci, "pf_mac": device.pf_mac, "vf_num": device.vf_num}
        if isinstance(device, VfDevice)
        else {}
    )
    try:
        return PortRequest(
            node=node, sandbox=record.container_id, uid=record.pod_uid, ifname=record.ifname,
            network=network, labels=meta.labels, ports=meta.ports, **vf,
        )  # fmt: skip
    except ValidationError as exc:
        return CniError(ErrorCode.CONTROLLER_REFUSED, "invalid port request", str(exc))


def _recorded(records: list[SandboxRecord], port: PortInfo) -> bool:
    """Some record is the attachment `port` is the controller's port of."""
    return any(
        r.container_id == port.sandbox and r.ifname == port.ifname
        and r.port_network == port.network
        for r in records
    )  # fmt: skip


def _unreadable_error(exc: UnreadableRecord) -> CniError:
    return CniError(
        ErrorCode.RECORD_UNREADABLE,
        f"sandbox record {exc.path} is unreadable",
        f"{exc.reason}; its devices stay claimed: let the dpunet version that wrote it "
        "finish, or return them and remove the file by hand",
    )


def _controller_error(exc: ClientError, what: str) -> CniError:
    if exc.status == 0 or exc.status >= 500:
        return CniError(ErrorCode.TRY_AGAIN_LATER, f"{what}: controller unavailable", exc.detail)
    return CniError(ErrorCode.CONTROLLER_REFUSED, f"{what}: controller refused", exc.detail)


class PodAgent:
    """CNI handler of a node daemon (see module docstring)."""

    def __init__(
        self,
        node: str,
        attacher: Attacher,
        store: SandboxStore,
        client: ControllerApi,
        metrics: AgentMetrics,
        port_timeout: float = 60.0,
        interface_problems: Callable[[str | None, InterfaceConfig], list[str]] = netlink.check,
        gateway_timeout: float = 1.0,
        gateway_probe: GatewayProbe | None = None,
    ) -> None:
        """`interface_problems` is CHECK's look into the pod (what differs from a config);
        `gateway_probe` asks the pod's gateway from inside the pod (`probe_gateway`), for at
        most `gateway_timeout` seconds per ADD (0: not at all)."""
        self.node = node
        self.attacher = attacher
        self.store = store
        self.client = client
        self.metrics = metrics
        self.port_timeout = port_timeout
        self.interface_problems = interface_problems
        self.gateway_timeout = gateway_timeout
        self.gateway_probe = gateway_probe or probe_gateway
        self.locks = KeyedLocks()  # per container id; the CNI server takes it for its verbs
        self.claims = DeviceClaims()  # ADDs claim devices at once (cni/claims.py)
        # Each ADD in flight blocks up to two threads at once (the port request, which waits
        # for OVN, and the staging); asyncio's default pool (cores + 4) would make a burst of
        # ADDs queue their quick steps, claims included, behind other pods' port requests.
        self._executor = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="pod-agent")
        self._unreadable_seen: set[tuple[str, str]] = set()  # (path, reason) logged once
        self._reports: set[asyncio.Task[None]] = set()  # event reports in flight
        # why this node's DPU cannot take pods (None: it can); set by the VF daemon
        self.dpu_problem: Callable[[], str | None] | None = None
        # why no ADD can be served now, the DPU being down (None: it is up); blocking; given
        # the node record just fetched, or None to use a recent one; set by the VF daemon
        self.dpu_down: Callable[[NodeInfo | None], str | None] | None = None

    # ----------------------------------------------------------------- ADD
    async def add(self, req: AddRequest) -> AddResult:
        """Claim a device, get the port, plug the device into the pod (the caller holds
        `locks` of the container)."""
        self._require_lock(req.container_id)
        started = time.monotonic()
        try:
            result = await self._add(req)
        except CniError as exc:
            self.metrics.requests.labels("ADD", "error").inc()
            self._report_dpu_not_ready(req, exc)
            raise
        except BaseException:
            self.metrics.requests.labels("ADD", "error").inc()
            raise
        self.metrics.requests.labels("ADD", "ok").inc()
        self.metrics.phase_seconds.labels("ADD", "total").observe(time.monotonic() - started)
        return result

    async def _add(self, req: AddRequest) -> AddResult:
        if self.dpu_down is not None and (down := await self._thread(self.dpu_down, None)):
            raise CniError(ErrorCode.NOT_AVAILABLE, down, "nothing was claimed; retry later")
        namespace, name, uid = pod_identity(req)
        meta = pod_metadata(req)
        network = req.config.name
        records = await self._load(req.container_id)
        existing = next((r for r in records if r.ifname == req.ifname), None)
        if existing is not None:
            if not existing.is_attachment(req.ifname, network):
                raise CniError(
                    ErrorCode.IFNAME_IN_USE,
                    f"{req.ifname} of sandbox {req.container_id} is attached to network "
                    f"{existing.network}",
                    "DEL it from that network first, or use another CNI_IFNAME",
                )
            if existing.phase is Phase.ATTACHED and existing.port is not None:
                return cni_result(existing, existing.port)
            await self._undo(existing, "readd")

        phase_started = time.monotonic()
        try:
            record = await self._thread(self._claim, req, network, namespace, name, uid)
        except CniError as exc:
            if exc.code == ErrorCode.NO_DEVICE and self.attacher.kind == "vf" and req.pod_name:
                self._report(namespace, name, uid, "NoVirtualFunction", str(exc))
            raise
        self._observe("ADD", "claim", phase_started)
        try:
            phase_started = time.monotonic()
            try:
                await self._thread(self.attacher.prepare, record)
            except LinuxError as exc:
                raise CniError(
                    ErrorCode.PLUG_FAILED, f"preparing the {self.attacher.kind} failed", str(exc)
                ) from exc
            self._observe("ADD", "prepare", phase_started)
            phase_started = time.monotonic()
            body = port_request(self.node, record, port_network(req.ifname, network), meta)
            if isinstance(body, CniError):
                raise body
            port, staged = await asyncio.gather(
                self._thread(self.client.put_port, namespace, name, body, self.port_timeout),
                self._thread(self._stage, record),
                return_exceptions=True,
            )
            if isinstance(port, ClientError):
                raise _controller_error(port, f"port for {namespace}/{name}") from port
            if isinstance(port, BaseException):
                raise port
            if isinstance(staged, LinuxError):
                raise CniError(
                    ErrorCode.PLUG_FAILED,
                    f"moving the {self.attacher.kind} toward the pod failed",
                    str(staged),
                ) from staged
            if isinstance(staged, BaseException):
                raise staged
            record.port = port
            self._observe("ADD", "controller", phase_started)
            record.phase = Phase.PLUGGING
            await self._thread(self.store.save, record)

            phase_started = time.monotonic()
            cfg = interface_config(req.ifname, port)
            try:
                await self._thread(self.attacher.plug, record, cfg)
            except LinuxError as exc:
                raise CniError(
                    ErrorCode.PLUG_FAILED,
                    f"plugging {self.attacher.kind} into the pod failed",
                    str(exc),
                ) from exc
            self._observe("ADD", "plug", phase_started)
            record.phase = Phase.ATTACHED
            await self._thread(self.store.save, record)
        except BaseException:
            try:
                await self._undo(record, "rollback")
            except CniError as exc:  # the record stays: the reconcile loop finishes the undo
                event(log, "rollback-incomplete", sandbox=req.container_id[:12], error=str(exc))
            raise
        gateway_ms = await self._reach_gateway(record, cfg)
        event(
            log,
            "attached", pod=f"{namespace}/{name}", sandbox=req.container_id[:12],
            ifname=req.ifname, network=network, lsp=port.lsp, ip=port.ips[0], mac=port.mac,
            gateway_ms=gateway_ms,
        )  # fmt: skip
        return cni_result(record, port)

    async def _reach_gateway(self, record: SandboxRecord, cfg: InterfaceConfig) -> float | None:
        """Wait until the pod's gateway answers the pod (ms), for at most `gateway_timeout`.

        OVN's "installed" says the port's flows are in; this says the pod's path works
        both ways: on the emulated NIC a reply sent right after the VF came up can be
        dropped (the representor's side of the veth starts transmitting only once the
        kernel's link watcher has run), a real VF's link may come up after the ADD set it
        up, and the pod's kernel would ask again only a second later. Never fails the
        ADD: an unanswered gateway is logged and counted."""
        if cfg.gateway is None or self.gateway_timeout <= 0:
            return None
        started = time.monotonic()
        error = None
        try:
            took = await self._thread(self.gateway_probe, record.netns, cfg, self.gateway_timeout)
        except LinuxError as exc:
            took, error = None, str(exc)
        self._observe("ADD", "gateway", started)
        self.metrics.gateway_checks.labels("answered" if took is not None else "unanswered").inc()
        if took is None:
            event(
                log, "gateway.unanswered", logging.WARNING, sandbox=record.container_id[:12],
                gateway=str(cfg.gateway), timeout_s=self.gateway_timeout, error=error,
            )  # fmt: skip
            return None
        return round(took * 1000, 1)

    def _claim(
        self, req: AddRequest, network: str, namespace: str, name: str, uid: str
    ) -> SandboxRecord:
        """Pick a device no record (readable or not) holds and no other claim has taken,
        and record the claim (blocking; other ADDs' claims run meanwhile, cni/claims.py)."""
        with self.claims.claiming() as claim:
            scan = self.store.scan()
            claim.held = scan.claimed
            self._note_unreadable(scan.unreadable, whole=True)
            looked, waited = time.monotonic(), claim.waited
            device = self.attacher.claim(req, claim)
            looked = time.monotonic() - looked - (claim.waited - waited)
            record = SandboxRecord(
                container_id=req.container_id,
                netns=req.netns,
                ifname=req.ifname,
                namespace=namespace,
                pod=name,
                pod_uid=uid,
                device=device,
                network=network,
            )
            self.store.save(record)
            claim.written(record.device.key)
        # blocked by other claims vs this claim's own look at its device (sysfs, netlink)
        self.metrics.phase_seconds.labels("ADD", "claim_wait").observe(claim.waited)
        self.metrics.phase_seconds.labels("ADD", "claim_sysfs").observe(looked)
        event(
            log, "claim", pod=f"{namespace}/{name}", sandbox=req.container_id[:12],
            device=record.device, waited_ms=round(claim.waited * 1000, 3),
            sysfs_ms=round(looked * 1000, 3),
        )  # fmt: skip
        return record

    def _require_lock(self, container_id: str) -> None:
        if not self.locks.held(container_id):
            raise RuntimeError(f"a verb for {container_id} without holding its lock")

    async def _load(self, container_id: str) -> list[SandboxRecord]:
        """The sandbox's records; CniError 104 when its file is unreadable."""
        try:
            return await self._thread(self.store.load, container_id)
        except UnreadableRecord as exc:
            self._note_unreadable([exc])
            raise _unreadable_error(exc) from exc

    def _note_unreadable(self, unreadable: list[UnreadableRecord], whole: bool = False) -> None:
        """Log each unreadable file once (per reason). `whole`: `unreadable` is a whole
        scan's, and the files not in it are forgotten (logged again should they come back),
        so what is remembered is bounded by the files unreadable now."""
        keys = {(str(exc.path), exc.reason): exc for exc in unreadable}
        for key, exc in keys.items():
            if key not in self._unreadable_seen:
                self._unreadable_seen.add(key)
                event(
                    log, "record-unreadable", level=logging.ERROR, path=exc.path,
                    error=exc.reason, devices_kept=exc.devices,
                )  # fmt: skip
        if whole:
            self._unreadable_seen.intersection_update(keys)

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking `fn(*args)` in the agent's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _stage(self, record: SandboxRecord) -> None:
        """`Attacher.stage`, timed as its own phase (it overlaps the controller's)."""
        started = time.monotonic()
        self.attacher.stage(record)
        self._observe("ADD", "stage", started)

    def _report_dpu_not_ready(self, req: AddRequest, exc: CniError) -> None:
        """A Kubernetes pod gets a DPUNotReady event when its ADD failed because the DPU is
        down, or its port was refused while the DPU is not ready (timeouts the controller
        reports itself)."""
        if not req.pod_name:
            return
        namespace, name, uid = pod_identity(req)
        if exc.code == ErrorCode.NOT_AVAILABLE:
            self._report(namespace, name, uid, "DPUNotReady", exc.msg)
            return
        problem = self.dpu_problem() if self.dpu_problem is not None else None
        if problem is None or exc.code != ErrorCode.CONTROLLER_REFUSED:
            return
        message = f"{problem}; the port request failed: {exc}"
        self._report(namespace, name, uid, "DPUNotReady", message)

    def _report(
        self,
        namespace: str,
        name: str,
        uid: str,
        reason: Literal["NoVirtualFunction", "DPUNotReady"],
        message: str,
    ) -> None:
        """Tell the controller (an Event on a Kubernetes pod) in the background."""
        report = PodEventReport(node=self.node, uid=uid, reason=reason, message=message[:1024])

        def send() -> None:
            try:
                self.client.report_event(namespace, name, report)
            except ClientError as exc:
                event(log, "report-failed", pod=f"{namespace}/{name}", error=str(exc))

        task = asyncio.create_task(self._thread(send))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    # ----------------------------------------------------------------- DEL
    async def delete(self, req: DelRequest) -> None:
        """Undo the attachment's ADD; nothing recorded means nothing to do (the caller holds
        `locks` of the container)."""
        self._require_lock(req.container_id)
        started = time.monotonic()
        try:
            for record in await self._load(req.container_id):
                if record.is_attachment(req.ifname, req.config.name):
                    await self._undo(record, "del")
        except BaseException:
            self.metrics.requests.labels("DEL", "error").inc()
            raise
        self.metrics.requests.labels("DEL", "ok").inc()
        self.metrics.phase_seconds.labels("DEL", "total").observe(time.monotonic() - started)

    async def _undo(self, record: SandboxRecord, why: str) -> None:
        """Return the device, release the port, forget the sandbox (each step idempotent)."""
        if record.phase is not Phase.RELEASING:
            try:
                await self._thread(self.attacher.unplug, record)
            except LinuxError as exc:
                raise CniError(
                    ErrorCode.TRY_AGAIN_LATER, f"cannot return the {self.attacher.kind}", str(exc)
                ) from exc
            record.phase = Phase.RELEASING
            await self._thread(self.store.save, record)
        try:
            await self._thread(
                self.client.delete_port,
                record.namespace,
                record.pod,
                record.pod_uid,
                record.container_id,
                record.port_network,
            )
        except ClientError as exc:
            raise _controller_error(
                exc, f"release of port {record.namespace}/{record.pod}"
            ) from exc
        await self._thread(self.store.remove, record)
        event(
            log,
            "released", why=why, pod=f"{record.namespace}/{record.pod}",
            sandbox=record.container_id[:12], ifname=record.ifname, network=record.network,
            device=record.device,
        )  # fmt: skip

    # --------------------------------------------------------- CHECK/STATUS/GC
    async def check(self, req: CheckRequest) -> None:
        """The pod's interface and the controller's port still match the ADD (the caller
        holds `locks` of the container)."""
        self._require_lock(req.container_id)
        records = await self._load(req.container_id)
        record = next((r for r in records if r.is_attachment(req.ifname, req.config.name)), None)
        if record is None or record.phase is not Phase.ATTACHED or record.port is None:
            raise CniError(
                ErrorCode.UNKNOWN_CONTAINER, f"no attachment {req.container_id}/{req.ifname}"
            )
        problems = await self._thread(
            self.interface_problems, req.netns, interface_config(req.ifname, record.port)
        )
        try:
            port = await self._thread(
                self.client.get_port, record.namespace, record.pod, record.port_network
            )
        except ClientError as exc:
            if exc.status == 404:
                problems.append("the controller has no port for this attachment")
            else:
                raise _controller_error(exc, "CHECK") from exc
        else:
            if port.sandbox != record.container_id:
                problems.append(f"the controller's port belongs to sandbox {port.sandbox}")
        if problems:
            raise CniError(
                ErrorCode.CHECK_FAILED, "attachment differs from what ADD made", "; ".join(problems)
            )

    async def status(self, req: StatusRequest) -> None:
        """Ready when the controller answers for this node and its DPU is up."""
        try:
            node = await self._thread(self.client.get_node, self.node)
        except ClientError as exc:
            raise CniError(
                ErrorCode.NOT_AVAILABLE, "the controller is unavailable", exc.detail
            ) from exc
        if self.dpu_down is not None and (down := await self._thread(self.dpu_down, node)):
            raise CniError(ErrorCode.NOT_AVAILABLE, down)

    async def gc(self, req: GcRequest) -> None:
        """Release every attachment of the GC's network that is not a valid attachment;
        go on past failures and report them at the end (CNI spec). Records of format 1
        (network unknown) are left to the reconcile."""
        network = req.config.name
        valid = {(a.container_id, a.ifname) for a in req.valid_attachments}
        errors: list[CniError] = []
        for container_id in sorted((await self._thread(self.store.scan)).container_ids):
            async with self.locks.hold(container_id):
                try:
                    records = await self._load(container_id)
                except CniError:
                    continue  # unreadable: reported, left alone
                for record in records:
                    if record.network != network or (container_id, record.ifname) in valid:
                        continue
                    try:
                        await self._undo(record, "gc")
                    except CniError as exc:
                        errors.append(exc)
        if errors:
            raise CniError(
                errors[0].code,
                f"GC could not release {len(errors)} attachment(s)",
                "; ".join(f"{e.msg}: {e.details}" if e.details else e.msg for e in errors),
            )

    # ------------------------------------------------------------ reconcile
    async def reconcile(self) -> None:
        """Finish interrupted work and release sandboxes that are gone. A sandbox whose
        lock is held is skipped: a verb is at work on it (the next pass looks again)."""
        scan = await self._thread(self.store.scan)
        self._note_unreadable(scan.unreadable, whole=True)
        for container_id in sorted({r.container_id for r in scan.records}):
            if self.locks.held(container_id):
                continue
            async with self.locks.hold(container_id):
                await self._reconcile_sandbox(container_id)
        await self._release_orphan_ports(scan)
        final = await self._thread(self.store.scan)
        self._count_sandboxes(final.records)
        self.metrics.unreadable_records.set(len(final.unreadable))

    async def _reconcile_sandbox(self, container_id: str) -> None:
        """Undo what a crash interrupted and what belongs to a gone pod (under the lock)."""
        try:
            records = await self._load(container_id)
        except CniError:
            return  # became unreadable since the scan: reported
        for record in records:
            gone = not os.path.exists(record.netns)
            if record.phase is Phase.ATTACHED and not gone:
                continue
            action = (
                "sandbox-gone"
                if record.phase is Phase.ATTACHED
                else f"interrupted-{record.phase.value}"
            )
            try:
                await self._undo(record, action)
                self.metrics.reconcile_actions.labels(action).inc()
            except CniError as exc:
                event(log, "reconcile-failed", sandbox=container_id[:12], error=str(exc))

    async def _release_orphan_ports(self, scan: StoreScan) -> None:
        """Ports the controller holds for this node that no record knows (a crash between
        the controller's answer and the record, or a record removed by hand), matched per
        attachment; every port of a sandbox whose file is unreadable is left alone."""
        try:
            ports = await self._thread(self.client.list_ports, self.node)
        except ClientError as exc:
            event(log, "reconcile-controller-unavailable", error=exc.detail)
            return
        unreadable = {u.container_id for u in scan.unreadable}
        for port in ports:
            sandbox = port.sandbox
            if sandbox in unreadable or _recorded(scan.records, port):
                continue
            if self.locks.held(sandbox):
                continue  # a verb is at work on it
            async with self.locks.hold(sandbox):
                try:
                    if _recorded(await self._thread(self.store.load, sandbox), port):
                        continue  # recorded since the listing
                except UnreadableRecord:
                    continue
                try:
                    await self._thread(
                        self.client.delete_port,
                        port.namespace, port.name, port.uid, sandbox, port.network,
                    )  # fmt: skip
                except ClientError as exc:
                    event(log, "orphan-release-failed", port=port.lsp, error=exc.detail)
                    continue
            self.metrics.reconcile_actions.labels("orphan-port").inc()
            event(log, "orphan-port-released", port=port.lsp, sandbox=sandbox[:12])

    def _count_sandboxes(self, records: list[SandboxRecord]) -> None:
        for phase in Phase:
            self.metrics.sandboxes.labels(phase.value).set(sum(r.phase is phase for r in records))

    def _observe(self, verb: str, phase: str, started: float) -> None:
        self.metrics.phase_seconds.labels(verb, phase).observe(time.monotonic() - started)
