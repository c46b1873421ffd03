"""The Lease elector's clocks when the API server answers slowly (a loaded machine): a
fake Lease API whose answers come late, or never."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from lightkube import AsyncClient
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from dpunet.controller.k8s.leader import LeaderElector, LeadershipLost


class SlowLeases:
    """One Lease behind an API that applies a write at once but answers it `patch_delay`
    seconds later, answers reads after `get_delay` (from the second read on), and answers
    nothing once `down` is set."""

    def __init__(self, **spec: Any) -> None:
        self.spec: dict[str, Any] = dict(spec)
        self.version = 1
        self.get_delay = 0.0
        self.patch_delay = 0.0
        self.down = False
        self.reads = 0
        self.sent: list[float] = []  # loop time of each write
        self.first_answer: datetime | None = None

    async def _answer(self, delay: float) -> None:
        if self.down:
            await asyncio.Event().wait()
        await asyncio.sleep(delay)

    async def get(self, kind: Any, name: str, namespace: str) -> Lease:
        self.reads += 1
        await self._answer(self.get_delay if self.reads > 1 else 0.0)
        if self.first_answer is None:
            self.first_answer = datetime.now(UTC)
        meta = ObjectMeta(name=name, namespace=namespace, resourceVersion=str(self.version))
        return Lease(metadata=meta, spec=LeaseSpec(**self.spec))

    async def patch(self, kind: Any, name: str, patch: dict[str, Any], **_: Any) -> None:
        self.sent.append(asyncio.get_running_loop().time())
        self.spec.update(patch["spec"])
        self.version += 1
        await self._answer(self.patch_delay)


def elector(api: SlowLeases, duration: float, deadline: float) -> LeaderElector:
    return LeaderElector(cast(AsyncClient, api), "dpunet", "lease", "b", duration, deadline, 0.05)


@pytest.mark.asyncio
async def test_the_renew_deadline_counts_from_when_the_write_was_sent() -> None:
    """A candidate counts the lease duration from when it saw the write, which may be long
    before the leader got the answer: the leader must give up `renew_deadline` after it
    sent its last write, not after the answer came (two leaders at once otherwise)."""
    api = SlowLeases()  # no holder: free
    api.patch_delay = 0.8
    lead = elector(api, duration=1.2, deadline=1.0)
    await lead.acquire()  # answered 0.8 s after the write was sent
    api.down = True  # then the API server answers nothing more
    with pytest.raises(LeadershipLost):
        await lead.hold()
    lost_after = asyncio.get_running_loop().time() - api.sent[0]
    assert lost_after < 1.0 + 0.5, lost_after  # not 0.8 + 1.0
    assert not lead.is_leader


@pytest.mark.asyncio
async def test_a_candidate_writes_the_time_it_decided_at() -> None:
    """A dead holder's record, then reads that take 0.6 s: the acquireTime written is at
    least one lease duration after the candidate first saw the record (the time stamped
    before a slow read would be earlier than the expiry it decided on)."""
    api = SlowLeases(
        holderIdentity="a",
        leaseDurationSeconds=1,
        renewTime="2026-01-01T00:00:00.000000Z",
        leaseTransitions=0,
    )
    api.get_delay = 0.6
    candidate = elector(api, duration=1.0, deadline=0.6)
    await asyncio.wait_for(candidate.acquire(), 5)
    assert api.spec["holderIdentity"] == "b" and api.spec["leaseTransitions"] == 1
    assert api.first_answer is not None
    acquired = datetime.fromisoformat(api.spec["acquireTime"])
    assert acquired >= api.first_answer + timedelta(seconds=1.0), (acquired, api.first_answer)
    assert api.spec["renewTime"] == api.spec["acquireTime"]
