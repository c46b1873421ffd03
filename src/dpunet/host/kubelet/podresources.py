"""Which VF kubelet gave a pod: the PodResources v1 API (`List`) on the kubelet's socket.

Used when the network config names no VF (`deviceID`/`pciBusID`), i.e. dpunet is the
pod's primary CNI without multus, or multus runs a default network whose
NetworkAttachmentDefinition has no `k8s.v1.cni.cncf.io/resourceName` annotation; and to
check a VF the config does name: it must be one kubelet allocated to the pod (a
NetworkAttachmentDefinition that names another pod's VF gets none).

The rule for a pod holding several devices of the resource: multus hands a pod's devices
of one resource to its networks in kubelet's order (the order `List` reports them,
containers in order), index 0 to the first network whose NetworkAttachmentDefinition
names the resource, the next to the next, the default network first. A primary network
that got no `deviceID` from multus consumed no index, so secondary networks of the same
resource hold the first devices of the list; dpunet therefore takes the **last** device
that no other sandbox on this node holds. This never collides with a secondary as long as
the pod requests one device more than it has secondary networks of that resource (which
it must, for every network to get one).
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Sequence
from pathlib import Path

import grpc

from dpunet.cni.models import AddRequest
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.grpcglue import unary, unix_target
from dpunet.host.kubelet.proto import podresources_pb2 as pb

SOCKET = Path("pod-resources/kubelet.sock")
SERVICE = pb.DESCRIPTOR.services_by_name["PodResourcesLister"]


class PodResourcesError(Exception):
    """kubelet's PodResources API could not be asked."""


def list_pod_resources(socket: Path, timeout: float = 5.0) -> list[pb.PodResources]:
    """Every pod kubelet has admitted, with its devices (blocking)."""
    with grpc.insecure_channel(unix_target(str(socket))) as channel:
        try:
            answer = unary(channel, SERVICE, "List")(pb.ListPodResourcesRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise PodResourcesError(
                f"kubelet PodResources at {socket}: {exc.code().name}: {exc.details()}"
            ) from None
    return list(answer.pod_resources)


def matching_resources(wanted: str | None, resources: Sequence[str]) -> list[str]:
    """The pools a config's `resourceName` means: all of them when unset, else the one with
    that full name or that name after the prefix."""
    return [r for r in resources if wanted in (None, r, r.split("/")[-1])]


def pod_devices(pods: Iterable[pb.PodResources], namespace: str, name: str) -> dict[str, list[str]]:
    """resource -> the pod's device ids of it, in kubelet's order, each once."""
    devices: dict[str, list[str]] = {}
    for pod in pods:
        if pod.namespace != namespace or pod.name != name:
            continue
        for container in pod.containers:
            for group in container.devices:
                ids = devices.setdefault(group.resource_name, [])
                ids.extend(i for i in group.device_ids if i not in ids)
    return devices


def allocated_devices(pods: Iterable[pb.PodResources], resources: Collection[str]) -> set[str]:
    """Every device of `resources` that kubelet has given to some pod."""
    return {
        device_id
        for pod in pods
        for container in pod.containers
        for group in container.devices
        if group.resource_name in resources
        for device_id in group.device_ids
    }


def choose_primary_vf(device_ids: Sequence[str], held: Container[str]) -> str | None:
    """The last of the pod's devices that no other sandbox holds (module docstring)."""
    free = [d for d in device_ids if d not in held]
    return free[-1] if free else None


class PodResourcesResolver:
    """`VfAttacher`'s resolver in Kubernetes mode: the VF kubelet allocated to the pod."""

    def __init__(self, socket: Path, resources: Sequence[str], timeout: float = 5.0) -> None:
        self.socket = socket
        self.resources = tuple(resources)
        self.timeout = timeout

    def __call__(self, req: AddRequest, held: Container[str]) -> str | None:
        """The pod's VF: the config's `deviceID` once kubelet is found to have allocated it
        to the pod (CniError otherwise), else one of the pod's devices by the rule above;
        the config's `deviceID` (or None) for a runtime that names no Kubernetes pod."""
        namespace, name = req.pod_namespace, req.pod_name
        named = req.config.vf_pci_address
        if namespace is None or name is None:
            return named
        wanted = matching_resources(req.config.resource_name, self.resources)
        if not wanted:
            known = ", ".join(self.resources) or "none"
            raise CniError(
                ErrorCode.NO_DEVICE, f"no VF pool {req.config.resource_name!r} on this node",
                f"pools: {known}",
            )  # fmt: skip
        try:
            pods = list_pod_resources(self.socket, self.timeout)
        except PodResourcesError as exc:
            raise CniError(
                ErrorCode.TRY_AGAIN_LATER, "cannot ask kubelet for the pod's VF", str(exc)
            ) from exc
        devices = pod_devices(pods, namespace, name)
        if named is not None:
            return _allocated_to_pod(named, [devices.get(r, []) for r in wanted], namespace, name)
        for resource in wanted:
            ids = devices.get(resource)
            if not ids:
                continue
            chosen = choose_primary_vf(ids, held)
            if chosen is None:
                raise CniError(
                    ErrorCode.NO_DEVICE,
                    f"every {resource} VF of pod {namespace}/{name} is attached already",
                    f"kubelet allocated {', '.join(ids)}",
                )
            return chosen
        raise CniError(
            ErrorCode.NO_DEVICE,
            f"kubelet allocated no {' or '.join(wanted)} VF to pod {namespace}/{name}",
            "request the resource in the pod's resources.limits",
        )


def _allocated_to_pod(pci: str, allocations: list[list[str]], namespace: str, name: str) -> str:
    """`pci` (a config's deviceID) when kubelet allocated it to the pod; CniError otherwise."""
    ids = [device for devices in allocations for device in devices]
    if pci in ids:
        return pci
    raise CniError(
        ErrorCode.NO_DEVICE,
        f"VF {pci} is not one kubelet allocated to pod {namespace}/{name}",
        f"kubelet allocated {', '.join(ids) or 'none of this pool'}: "
        "deviceID must name one of them (multus sets it from the allocation)",
    )
