"""Leader election through a coordination.k8s.io/v1 Lease (the client-go recipe).

A candidate takes the Lease when it has no holder or when its record (holder, renew time,
transitions) has not changed for `duration` seconds of the candidate's own clock (no clock
comparison between machines). The leader renews every `retry_period`; when it could not
renew for `renew_deadline` it has lost and must stop acting. Both clocks start at one
instant of each try, after its read and before its write: a candidate sees a write only
after it was sent, so however slowly the API server answers, the leader's deadline ends
before a candidate's `duration` does, and the times written are those the decision used.
Every write is a merge patch carrying the resourceVersion that was read, so the API server
turns a race between two candidates into a 409 for one of them. Stopping releases the
Lease (no holder), so a successor does not wait for it to expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.types import PatchType

from dpunet.controller.k8s.kube import KubeErrors, status_code
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s.leader")


class LeadershipLost(Exception):
    """The Lease could not be renewed within the renew deadline."""


def micro_time(when: datetime) -> str:
    """A Kubernetes MicroTime."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for the Lease `namespace/name`."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        name: str,
        identity: str,
        duration: float,
        renew_deadline: float,
        retry_period: float,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = False
        self._record: tuple[Any, ...] | None = None
        self._observed = 0.0
        self._sent = 0.0  # monotonic: when the last successful write was sent

    async def acquire(self) -> None:
        """Return once this candidate holds the Lease."""
        event(log, "leader.candidate", lease=f"{self.namespace}/{self.name}", id=self.identity)
        while not await self._try():
            await asyncio.sleep(self.retry_period)
        self.is_leader = True
        event(log, "leader.elected", lease=f"{self.namespace}/{self.name}", id=self.identity)

    async def hold(self) -> None:
        """Renew until cancelled; LeadershipLost when a renewal deadline passed."""
        while True:
            await asyncio.sleep(self.retry_period)
            left = self._sent + self.renew_deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(left, 0.001)):
                    while not await self._try():
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                self.is_leader = False
                event(log, "leader.lost", logging.ERROR, id=self.identity)
                raise LeadershipLost(
                    f"Lease {self.namespace}/{self.name} not renewed for {self.renew_deadline}s"
                ) from None

    async def release(self) -> None:
        """Give the Lease up (best effort) so that a successor takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        patch = {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1}}
        try:
            await self.client.patch(
                Lease, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE
            )
        except KubeErrors as exc:
            event(log, "leader.release_failed", logging.WARNING, error=str(exc))
            return
        event(log, "leader.released", id=self.identity)

    async def _try(self) -> bool:
        """Take or renew the Lease; False when someone else holds it or on any error."""
        try:
            return await self._try_once()
        except KubeErrors as exc:
            if status_code(exc) != 409:
                event(log, "leader.try_failed", logging.WARNING, error=str(exc) or repr(exc))
            return False

    async def _try_once(self) -> bool:
        seconds = max(1, math.ceil(self.duration))
        try:
            lease = await self.client.get(Lease, self.name, namespace=self.namespace)
        except KubeErrors as exc:
            if status_code(exc) != 404:
                raise
            sent, now = time.monotonic(), datetime.now(UTC)
            spec = LeaseSpec(
                holderIdentity=self.identity,
                leaseDurationSeconds=seconds,
                acquireTime=now,
                renewTime=now,
                leaseTransitions=0,
            )
            await self.client.create(
                Lease(metadata=ObjectMeta(name=self.name, namespace=self.namespace), spec=spec)
            )
            self._sent = sent
            return True
        sent, now = time.monotonic(), datetime.now(UTC)  # after the read (module docstring)
        spec_now = lease.spec or LeaseSpec()
        holder = spec_now.holderIdentity or None
        record = (holder, str(spec_now.renewTime), spec_now.leaseTransitions)
        if record != self._record:
            self._record, self._observed = record, sent
        held_by_other = holder is not None and holder != self.identity
        if held_by_other and sent - self._observed < self.duration:
            return False
        change: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": seconds,
            "renewTime": micro_time(now),
        }
        if holder != self.identity:
            change["acquireTime"] = micro_time(now)
            change["leaseTransitions"] = (spec_now.leaseTransitions or 0) + 1
        patch: dict[str, Any] = {"spec": change}
        version = lease.metadata.resourceVersion if lease.metadata else None
        if version:
            patch["metadata"] = {"resourceVersion": version}
        await self.client.patch(
            Lease, self.name, patch, namespace=self.namespace, patch_type=PatchType.MERGE
        )
        self._sent = sent
        return True
