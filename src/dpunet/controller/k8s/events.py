"""Kubernetes Events on pods (`kubectl describe pod` shows them).

Like client-go's recorder: a repeat of the same event (pod uid, reason, message) within
`REPEAT_WINDOW_S` bumps `count` and `lastTimestamp` of the Event already written instead
of adding another. Recording never raises: a failure is logged and dropped.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections import OrderedDict
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event
from lightkube.types import PatchType

from dpunet.controller.k8s.kube import KubeErrors
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s.events")

COMPONENT = "dpunet-controller"
REPEAT_WINDOW_S = 600.0
_REMEMBERED = 1024

# reasons (CamelCase, as kubelet's)
NO_VF = "NoVirtualFunction"
DPU_NOT_READY = "DPUNotReady"
DPU_TIMEOUT = "DPUTimeout"
PORT_FAILED = "PortSetupFailed"


_TIME = "%Y-%m-%dT%H:%M:%SZ"


class EventRecorder:
    """Writes Warning/Normal Events about pods."""

    def __init__(self, client: AsyncClient, instance: str | None = None) -> None:
        self.client = client
        self.instance = instance or socket.gethostname()
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int, float]] = OrderedDict()

    async def pod(
        self, namespace: str, name: str, uid: str, reason: str, message: str, kind: str = "Warning"
    ) -> None:
        """Record an event on pod `namespace/name` (uid `uid`)."""
        key = (namespace, name, uid, reason, message)
        seen = self._seen.get(key)
        now = time.monotonic()
        try:
            if seen is not None and now - seen[2] < REPEAT_WINDOW_S:
                event_name, count = seen[0], seen[1] + 1
                await self.client.patch(
                    Event,
                    event_name,
                    {"count": count, "lastTimestamp": datetime.now(UTC).strftime(_TIME)},
                    namespace=namespace,
                    patch_type=PatchType.MERGE,
                )
            else:
                event_name, count = f"{name}.{secrets.token_hex(8)}", 1
                await self.client.create(
                    self._new(event_name, namespace, name, uid, reason, message, kind)
                )
        except KubeErrors as exc:
            event(
                log, "k8s.event_failed", logging.WARNING, pod=f"{namespace}/{name}", error=str(exc)
            )
            self._seen.pop(key, None)
            return
        self._seen[key] = (event_name, count, now)
        self._seen.move_to_end(key)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        event(log, "k8s.event", pod=f"{namespace}/{name}", reason=reason, count=count)

    def _new(
        self, event_name: str, namespace: str, name: str, uid: str, reason: str, message: str,
        kind: str,
    ) -> Event:  # fmt: skip
        stamp = datetime.now(UTC).replace(microsecond=0)
        return Event(
            metadata=ObjectMeta(name=event_name, namespace=namespace),
            involvedObject=ObjectReference(
                apiVersion="v1", kind="Pod", namespace=namespace, name=name, uid=uid
            ),
            reason=reason,
            message=message,
            type=kind,
            count=1,
            firstTimestamp=stamp,
            lastTimestamp=stamp,
            source=EventSource(component=COMPONENT),
            reportingComponent=COMPONENT,
            reportingInstance=self.instance,
        )
