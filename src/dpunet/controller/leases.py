"""DPU leases: the DPU agent of each dpu-host node renews its node's lease every few
seconds (`PUT /v1/nodes/{node}/dpu-lease`), so that the host agent learns within one lease
duration that its DPU is gone, instead of from a port request that times out.

Kept in memory only: a restarted controller has seen no renewal, and reports every lease
`unknown` (not expired) for one duration, time for every live DPU to renew.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dpunet.contract.api import DpuLease, LeaseState


class DpuLeases:
    """The last renewal of each node's DPU lease (see module docstring)."""

    def __init__(self, duration: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.duration = duration
        self._clock = clock
        self._started = clock()
        self._renewed: dict[str, tuple[str, float]] = {}  # node -> (chassis, when)

    def renew(self, node: str, chassis: str) -> DpuLease:
        """`chassis`, the DPU serving `node`, is alive now."""
        self._renewed[node] = (chassis, self._clock())
        return self.lease(node, chassis)

    def lease(self, node: str, chassis: str) -> DpuLease:
        """The lease of `node` served by `chassis` (a renewal by a DPU that served the node
        before does not count)."""
        now = self._clock()
        last = self._renewed.get(node)
        renewed_at = last[1] if last is not None and last[0] == chassis else None
        silent_for = now - (self._started if renewed_at is None else renewed_at)
        if silent_for > self.duration:
            state = LeaseState.EXPIRED
        else:
            state = LeaseState.UNKNOWN if renewed_at is None else LeaseState.HELD
        return DpuLease(
            chassis=chassis,
            state=state,
            duration=self.duration,
            renewed_ago=None if renewed_at is None else round(now - renewed_at, 3),
            silent_for=round(silent_for, 3),
        )

    def forget(self, node: str) -> None:
        """`node` was removed."""
        self._renewed.pop(node, None)
