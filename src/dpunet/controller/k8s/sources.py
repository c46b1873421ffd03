"""Kubernetes mode: Node and Pod objects drive the controller (docs/kubernetes.md).

`NodeSource` registers every Node that is not a DPU (label `k8s.ovn.org/dpu=`): a
`k8s.ovn.org/dpu-host=` node as a dpu-host switched by the chassis in its
`k8s.ovn.org/node-chassis-id` annotation (its DPU's OVS system-id, as OVN-Kubernetes
records it), any other node as a full node (chassis: the annotation, else the node
name). Node IP: `k8s.ovn.org/node-primary-ifaddr` (`{"ipv4": "a.b.c.d/len"}`), else the
first InternalIP with `k8s_node_ip_prefix`; next hop: `dpunet.io/gateway-next-hop`, else
`k8s_next_hop`; the gateway router's MAC (the host's, shared with it):
`dpunet.io/gateway-mac` (the host PF's MAC its DPU reported at registration, or breth0's
its dpunet-node reported, written by the controller), else
`k8s.ovn.org/l3-gateway-config`'s `default.mac-address`, else none: the node is
registered without its gateway router, which waits for the MAC (`node_desired`); a
dpu-host's management VF: `dpunet.io/mgmt-port`
(`{"pf_mac": ..., "vf_num": ...}`). Registered nodes whose Node object is gone are removed.

`PodSource` keeps a cache of pods for the port admission check (the pod exists, runs on
the requesting node, has that uid), releases the ports of deleted pods, and publishes
`k8s.ovn.org/pod-networks` on each pod with a port. It also keeps every pod's labels and
named container ports (`PodPolicyMeta`) and tells `on_policy_meta` listeners when those
change (the NetworkPolicy source, k8s/policies.py; a status change tells nobody).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType
from pydantic import ValidationError

from dpunet.contract.api import NODE_NAME, NodeSpec, PortInfo, check_node_name
from dpunet.contract.policy import Protocol
from dpunet.controller.auth import Principal
from dpunet.controller.errors import Conflict, ControllerError, Forbidden, Unavailable
from dpunet.controller.k8s.kube import KubeErrors, list_and_watch, status_code
from dpunet.controller.nodes import NodeService, gateway_mac
from dpunet.controller.ports import PortService
from dpunet.controller.state import ClusterState
from dpunet.controller.topology import NodeRecord, NodeRole
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s.sources")

DPU_HOST_LABEL = "k8s.ovn.org/dpu-host"
DPU_LABEL = "k8s.ovn.org/dpu"
CHASSIS_ANNOTATION = "k8s.ovn.org/node-chassis-id"
PRIMARY_IFADDR_ANNOTATION = "k8s.ovn.org/node-primary-ifaddr"
NEXT_HOP_ANNOTATION = "dpunet.io/gateway-next-hop"
L3_GATEWAY_ANNOTATION = "k8s.ovn.org/l3-gateway-config"
GATEWAY_MAC_ANNOTATION = "dpunet.io/gateway-mac"
MGMT_PORT_ANNOTATION = "dpunet.io/mgmt-port"
POD_NETWORKS_ANNOTATION = "k8s.ovn.org/pod-networks"
ADMIN = Principal(admin=True)
_RETRY_S = 2.0


class NodeProblem(ValueError):
    """A Node object cannot be registered (yet); the message says why."""


def is_dpu(node: Node) -> bool:
    """A DPU's own Node: it switches pods, it has none."""
    return DPU_LABEL in ((node.metadata and node.metadata.labels) or {})


def node_spec(node: Node, next_hop: IPv4Address | None, ip_prefix: int) -> NodeSpec:
    """The registration a Node object asks for; NodeProblem when something is missing."""
    meta = node.metadata
    labels = (meta and meta.labels) or {}
    notes = (meta and meta.annotations) or {}
    name = (meta and meta.name) or ""
    if not re.match(NODE_NAME, name) or len(name) > 63:
        raise NodeProblem(f"node name {name!r} is not usable as an OVN switch name (<= 63)")
    try:
        check_node_name(name)
    except ValueError as exc:
        raise NodeProblem(str(exc)) from None
    dpu_host = DPU_HOST_LABEL in labels
    chassis = notes.get(CHASSIS_ANNOTATION) or (None if dpu_host else name)
    if chassis is None:
        raise NodeProblem(f"dpu-host node without the {CHASSIS_ANNOTATION} annotation")
    spec: dict[str, Any] = {
        "role": NodeRole.DPU_HOST if dpu_host else NodeRole.FULL,
        "chassis": chassis,
        "node_ip": _node_ip(node, notes, ip_prefix),
        "next_hop": notes.get(NEXT_HOP_ANNOTATION) or next_hop,
    }
    if spec["next_hop"] is None:
        raise NodeProblem(f"no {NEXT_HOP_ANNOTATION} annotation and no k8s_next_hop setting")
    if GATEWAY_MAC_ANNOTATION in notes:
        spec["gateway_mac"] = notes[GATEWAY_MAC_ANNOTATION]
    elif L3_GATEWAY_ANNOTATION in notes:
        try:
            spec["gateway_mac"] = json.loads(notes[L3_GATEWAY_ANNOTATION])["default"]["mac-address"]
        except (ValueError, TypeError, KeyError) as exc:
            raise NodeProblem(
                f"{L3_GATEWAY_ANNOTATION}: not {{default: {{mac-address: MAC}}}} JSON"
            ) from exc
    if dpu_host and MGMT_PORT_ANNOTATION in notes:
        try:
            mgmt = json.loads(notes[MGMT_PORT_ANNOTATION])
            spec["mgmt_pf_mac"], spec["mgmt_vf_num"] = mgmt["pf_mac"], mgmt["vf_num"]
        except (ValueError, TypeError, KeyError) as exc:
            raise NodeProblem(f"{MGMT_PORT_ANNOTATION}: not {{pf_mac, vf_num}} JSON") from exc
    try:
        return NodeSpec.model_validate(spec)
    except ValidationError as exc:
        raise NodeProblem(str(exc).replace("\n", " ")) from exc


def _node_ip(node: Node, notes: dict[str, str], prefix: int) -> str:
    if PRIMARY_IFADDR_ANNOTATION in notes:
        try:
            return str(json.loads(notes[PRIMARY_IFADDR_ANNOTATION])["ipv4"])
        except (ValueError, TypeError, KeyError) as exc:
            raise NodeProblem(f"{PRIMARY_IFADDR_ANNOTATION}: not {{ipv4: CIDR}} JSON") from exc
    for address in (node.status and node.status.addresses) or []:
        if address.type == "InternalIP" and ":" not in address.address:
            return f"{address.address}/{prefix}"
    raise NodeProblem("no IPv4 InternalIP in status.addresses")


def matches(record: NodeRecord, spec: NodeSpec) -> bool:
    """The registration already says what `spec` asks for."""
    return (
        record.role,
        record.chassis,
        record.node_ip,
        record.next_hop,
        record.gateway_mac,
        record.mgmt_pf_mac,
        record.mgmt_vf_num,
    ) == (
        spec.role,
        spec.chassis,
        IPv4Interface(spec.node_ip),
        spec.next_hop,
        gateway_mac(spec, record),
        spec.mgmt_pf_mac,
        spec.mgmt_vf_num,
    )


class _Dirty:
    """A level-triggered work loop: `poke()` asks for a pass; passes also run periodically
    and, after a failure, again after a short pause."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wanted = asyncio.Event()

    def poke(self) -> None:
        self._wanted.set()

    async def loop(self, work: Any) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):  # (3.11's wait_for can lose a cancel)
                    await self._wanted.wait()
            self._wanted.clear()
            try:
                await work()
            except (ControllerError, *KubeErrors) as exc:
                event(log, "k8s.sync_failed", logging.WARNING, error=str(exc) or repr(exc))
                await asyncio.sleep(_RETRY_S)
                self._wanted.set()


class NodeSource:
    """Node objects -> node registrations (see module docstring)."""

    def __init__(
        self,
        client: AsyncClient,
        nodes: NodeService,
        state: ClusterState,
        next_hop: IPv4Address | None,
        ip_prefix: int,
        interval: float,
    ) -> None:
        self.client = client
        self.service = nodes
        self.state = state
        self.next_hop = next_hop
        self.ip_prefix = ip_prefix
        self.objects: dict[str, Node] = {}
        self.synced = False
        self.problems: dict[str, str] = {}
        self._dirty = _Dirty(interval)

    async def run(self) -> None:
        """Watch Nodes and keep the registrations in step (until cancelled)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._dirty.loop(self.sync))
            tasks.create_task(list_and_watch(self.client, Node, self._listed, self._changed))

    def poke(self) -> None:
        """Ask for a sync pass soon (a Node was just written)."""
        self._dirty.poke()

    async def _listed(self, items: list[Node]) -> None:
        self.objects = {n.metadata.name: n for n in items if n.metadata and n.metadata.name}
        self.synced = True
        self._dirty.poke()

    async def _changed(self, kind: str, node: Node) -> None:
        name = node.metadata.name if node.metadata else None
        if not name:
            return
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = node
        self._dirty.poke()

    async def sync(self) -> None:
        """Register what changed, remove what is gone (only after a complete list, and
        with the registrations loaded from NB)."""
        if not self.synced:
            return
        if not self.state.gate.is_open:
            raise Unavailable("the controller is loading its state from OVN Northbound")
        wanted: set[str] = set()
        for name, node in sorted(self.objects.items()):
            if is_dpu(node):
                continue
            wanted.add(name)
            try:
                spec = node_spec(node, self.next_hop, self.ip_prefix)
            except NodeProblem as exc:
                if self.problems.get(name) != str(exc):
                    event(log, "k8s.node_pending", logging.WARNING, node=name, reason=str(exc))
                self.problems[name] = str(exc)
                continue
            self.problems.pop(name, None)
            record = self.state.nodes.get(name)
            if record is None or not matches(record, spec):
                await self.service.put(ADMIN, name, spec)
        for name in sorted(set(self.state.nodes) - wanted):
            await self.service.delete(ADMIN, name)


@dataclass(frozen=True)
class PodView:
    """What the controller needs to know about a pod."""

    uid: str
    node: str | None
    networks: str | None  # the k8s.ovn.org/pod-networks annotation


def pod_view(pod: Pod) -> PodView | None:
    """The view of a Pod object (None without a uid)."""
    meta = pod.metadata
    if meta is None or not meta.uid:
        return None
    notes = meta.annotations or {}
    node = pod.spec.nodeName if pod.spec else None
    return PodView(meta.uid, node or None, notes.get(POD_NETWORKS_ANNOTATION))


NamedPorts = tuple[tuple[str, Protocol, int], ...]  # sorted (name, protocol, number)


@dataclass(frozen=True)
class PodPolicyMeta:
    """What NetworkPolicies see of a pod: its labels and named container ports."""

    labels: tuple[tuple[str, str], ...]  # sorted
    ports: NamedPorts


def pod_policy_meta(pod: Pod) -> PodPolicyMeta:
    """A Pod object's labels and named container ports (`spec.containers[].ports[]` with a
    name; protocol TCP when unset; ports of a protocol policies cannot name are left out)."""
    labels = (pod.metadata.labels if pod.metadata else None) or {}
    ports = set()
    for container in (pod.spec.containers if pod.spec else None) or []:
        for port in container.ports or []:
            try:
                protocol = Protocol(port.protocol or "TCP")
            except ValueError:
                continue
            if port.name and port.containerPort:
                ports.add((port.name, protocol, int(port.containerPort)))
    return PodPolicyMeta(tuple(sorted(labels.items())), tuple(sorted(ports)))


def pod_networks(port: PortInfo) -> str:
    """`k8s.ovn.org/pod-networks` as OVN-Kubernetes writes it, for the "default" network
    (the default route is expressed by `gateway_ips`, as there)."""
    entry: dict[str, Any] = {"ip_addresses": port.ips, "mac_address": port.mac}
    if port.gateways:
        entry["gateway_ips"] = port.gateways
    routes = [{"dest": r.dst, "nextHop": r.gw} for r in port.routes if not r.dst.endswith("/0")]
    if routes:
        entry["routes"] = routes
    if len(port.ips) == 1:
        entry["ip_address"] = port.ips[0]
    if len(port.gateways) == 1:
        entry["gateway_ip"] = port.gateways[0]
    entry["role"] = "primary"
    return json.dumps({"default": entry}, separators=(",", ":"))


class PodSource:
    """The pod cache, port admission, release of deleted pods' ports, the annotation."""

    def __init__(self, client: AsyncClient, ports: PortService, interval: float) -> None:
        self.client = client
        self.ports = ports
        self.pods: dict[tuple[str, str], PodView] = {}
        self.policy_meta: dict[tuple[str, str], PodPolicyMeta] = {}
        self.on_policy_meta: list[Callable[[], None]] = []
        self.synced = False
        self._dirty = _Dirty(interval)

    def _policy_meta_changed(self) -> None:
        for listener in self.on_policy_meta:
            listener()

    async def run(self) -> None:
        """Watch Pods; release and annotate (until cancelled)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._dirty.loop(self.sync))
            tasks.create_task(list_and_watch(self.client, Pod, self._listed, self._changed))

    async def _listed(self, items: list[Pod]) -> None:
        pods, meta = {}, {}
        for pod in items:
            view = pod_view(pod)
            if view is not None and pod.metadata and pod.metadata.name and pod.metadata.namespace:
                pods[(pod.metadata.namespace, pod.metadata.name)] = view
                meta[(pod.metadata.namespace, pod.metadata.name)] = pod_policy_meta(pod)
        self.pods = pods
        self.policy_meta = meta
        self.synced = True
        self._dirty.poke()
        self._policy_meta_changed()

    async def _changed(self, kind: str, pod: Pod) -> None:
        view = pod_view(pod)
        meta = pod.metadata
        if view is None or meta is None or not meta.name or not meta.namespace:
            return
        key = (meta.namespace, meta.name)
        if kind == "DELETED":
            if self.pods.get(key, view).uid == view.uid:
                self.pods.pop(key, None)
                if self.policy_meta.pop(key, None) is not None:
                    self._policy_meta_changed()
            try:
                await self.release(meta.namespace, meta.name, view.uid, "pod deleted")
            except ControllerError as exc:  # the next sync retries
                event(log, "k8s.release_failed", logging.WARNING, pod=meta.name, error=str(exc))
                self._dirty.poke()
        else:
            self.pods[key] = view
            policy_meta = pod_policy_meta(pod)
            if self.policy_meta.get(key) != policy_meta:
                self.policy_meta[key] = policy_meta
                self._policy_meta_changed()

    async def live(self, namespace: str, name: str) -> PodView | None:
        """The pod as the API server has it now (None: it does not exist)."""
        try:
            pod = await self.client.get(Pod, name, namespace=namespace)
        except KubeErrors as exc:
            if status_code(exc) == 404:
                return None
            raise Unavailable(f"cannot read pod {namespace}/{name}: {exc}") from exc
        view = pod_view(pod)
        if view is not None:
            self.pods[(namespace, name)] = view
        return view

    async def admit(self, namespace: str, name: str, uid: str, node: str) -> None:
        """A request about pod `namespace/name` names an existing pod with uid `uid` that
        runs on `node` (the requesting node)."""
        view = self.pods.get((namespace, name))
        if view is None or view.uid != uid or view.node != node:
            view = await self.live(namespace, name)  # the watch may lag behind
        if view is None or view.node != node:  # the same answer: existence stays private
            raise Forbidden(f"no pod {namespace}/{name} runs on node {node}")
        if view.uid != uid:
            raise Conflict(f"pod {namespace}/{name} has uid {view.uid}, not {uid}")

    async def publish(self, port: PortInfo) -> None:
        """Write the pod-networks annotation of a primary port's pod (uid-checked) when it
        differs (a secondary network's port is not in it)."""
        if port.network is not None:
            return
        value = pod_networks(port)
        key = (port.namespace, port.name)
        view = self.pods.get(key)
        if view is not None and view.uid == port.uid and view.networks == value:
            return
        patch = {"metadata": {"uid": port.uid, "annotations": {POD_NETWORKS_ANNOTATION: value}}}
        try:
            await self.client.patch(
                Pod, port.name, patch, namespace=port.namespace, patch_type=PatchType.MERGE
            )
        except KubeErrors as exc:
            event(log, "k8s.annotate_failed", logging.WARNING, pod=port.name, error=str(exc))
            return
        if view is not None and view.uid == port.uid:
            self.pods[key] = PodView(view.uid, view.node, value)
        event(log, "k8s.pod_annotated", namespace=port.namespace, pod=port.name)

    async def release(
        self, namespace: str, name: str, uid: str, why: str, network: str | None = None
    ) -> None:
        """Release the port (primary, or of `network`) of pod `namespace/name` if it still
        belongs to `uid`."""
        result = await self.ports.delete(ADMIN, namespace, name, uid=uid, network=network)
        if result.deleted:
            event(
                log, "k8s.port_released", namespace=namespace, pod=name, network=network,
                uid=uid, why=why,
            )  # fmt: skip

    async def sync(self) -> None:
        """Every port: its pod alive (annotation in step) or the port released."""
        if not self.synced:
            return
        for port in (await self.ports.list(ADMIN)).items:
            view = self.pods.get((port.namespace, port.name))
            if view is None or view.uid != port.uid:
                view = await self.live(port.namespace, port.name)
            if view is None or view.uid != port.uid:
                await self.release(port.namespace, port.name, port.uid, "pod gone", port.network)
            else:
                await self.publish(port)
