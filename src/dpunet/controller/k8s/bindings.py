"""Kubernetes mode's DPU bindings (`dpunet.controller.registration.BindingStore`): the
`k8s.ovn.org/node-chassis-id` annotation of the dpu-host's Node, which the controller
writes itself when the node's DPU registers (the DPU has no Kubernetes credentials), and
the node source reads like any annotation, and with it, in the same patch,
`dpunet.io/gateway-mac`: the host PF's MAC the DPU reported, the node's gateway router MAC
(it wins over `k8s.ovn.org/l3-gateway-config`, `dpunet.controller.k8s.sources`). Read
from the node source's watch cache, so the controller needs no `get` on nodes; written by
a merge patch carrying the Node's uid. A full node's agent reports its breth0's MAC
itself; it goes to the same `dpunet.io/gateway-mac` annotation of its Node.
"""

from __future__ import annotations

from lightkube.resources.core_v1 import Node
from lightkube.types import PatchType

from dpunet.controller.errors import BadRequest, Conflict, NotFound, Unavailable
from dpunet.controller.k8s.kube import KubeErrors, status_code
from dpunet.controller.k8s.sources import (
    CHASSIS_ANNOTATION,
    DPU_HOST_LABEL,
    GATEWAY_MAC_ANNOTATION,
    NodeSource,
    is_dpu,
)


def _chassis_of(node: Node) -> str | None:
    """The chassis a Node is bound to: its annotation; a full node's defaults to its name
    (docs/kubernetes.md "Nodes"); a DPU's own Node has none."""
    meta = node.metadata
    if meta is None or is_dpu(node):
        return None
    notes = meta.annotations or {}
    if CHASSIS_ANNOTATION in notes or DPU_HOST_LABEL in (meta.labels or {}):
        return notes.get(CHASSIS_ANNOTATION) or None
    return meta.name


class NodeAnnotations:
    """The bindings as Node annotations (see module docstring)."""

    where = f"the Node's {CHASSIS_ANNOTATION} annotation"

    def __init__(self, source: NodeSource) -> None:
        self.source = source

    def _node(self, name: str, dpu_host: bool = True) -> Node:
        """The Node `name`, a dpu-host node (`dpu_host`) or a full node."""
        if not self.source.synced:
            raise Unavailable("the controller has not listed the Nodes yet (or is not leader)")
        node = self.source.objects.get(name)
        if node is None:
            raise NotFound(f"no Node named {name}")
        labels = (node.metadata and node.metadata.labels) or {}
        if is_dpu(node) or (DPU_HOST_LABEL in labels) != dpu_host:
            kind = f"a dpu-host node (label {DPU_HOST_LABEL}=)" if dpu_host else "a full node"
            raise BadRequest(f"node {name} is not {kind}")
        return node

    async def bound(self, node: str) -> str | None:
        """See `BindingStore`."""
        return _chassis_of(self._node(node))

    def nodes_of(self, chassis: str) -> set[str]:
        """See `BindingStore`."""
        return {name for name, n in self.source.objects.items() if _chassis_of(n) == chassis}

    def gateway_mac(self, node: str) -> str | None:
        """See `BindingStore`: the `dpunet.io/gateway-mac` annotation."""
        meta = self._node(node).metadata
        return ((meta and meta.annotations) or {}).get(GATEWAY_MAC_ANNOTATION)

    async def bind(self, node: str, chassis: str, gateway_mac: str | None) -> None:
        """See `BindingStore`: one merge patch of both annotations, conditional on the uid."""
        notes = {CHASSIS_ANNOTATION: chassis}
        if gateway_mac is not None:
            notes[GATEWAY_MAC_ANNOTATION] = gateway_mac
        await self._annotate(self._node(node), notes)

    async def full_node_mac(self, node: str) -> str | None:
        """See `BindingStore`: the full node's `dpunet.io/gateway-mac` annotation."""
        meta = self._node(node, dpu_host=False).metadata
        return ((meta and meta.annotations) or {}).get(GATEWAY_MAC_ANNOTATION)

    async def set_full_node_mac(self, node: str, gateway_mac: str) -> None:
        """See `BindingStore`: a merge patch of the annotation, conditional on the uid."""
        await self._annotate(
            self._node(node, dpu_host=False), {GATEWAY_MAC_ANNOTATION: gateway_mac}
        )

    async def _annotate(self, obj: Node, notes: dict[str, str]) -> None:
        """Merge `notes` into `obj`'s annotations, conditional on its uid."""
        meta = obj.metadata
        assert meta is not None and meta.name is not None
        node = meta.name
        patch = {"metadata": {"uid": meta.uid, "annotations": notes}}
        try:
            patched = await self.source.client.patch(Node, node, patch, patch_type=PatchType.MERGE)
        except KubeErrors as exc:
            if status_code(exc) in (404, 409):
                raise Conflict(f"Node {node} changed while it was annotated; retry") from exc
            raise Unavailable(f"cannot annotate Node {node}: {exc}") from exc
        self.source.objects[node] = patched
        self.source.poke()
