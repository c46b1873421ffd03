"""The DPU lease of this dpu-host node as the controller reports it (`NodeInfo.dpu_lease`):
its DPU agent renews it every few seconds, so an expired lease means the DPU is down.

The view is cached for `ttl` seconds: CNI STATUS hands in the node record it fetched
anyway, ADD and the device plugin's health poll fetch it again only when it is older.
When the controller cannot be asked, or reports no lease (a full node, leases off), or
the lease is `unknown` (the controller restarted less than a lease ago), the DPU counts
as up: only a lease the controller saw expire stops ADDs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dpunet.contract.api import DpuLease, LeaseState, NodeInfo
from dpunet.contract.client import ClientError


class DpuLeaseView:
    """Why this node's DPU is down, from its lease (see module docstring)."""

    def __init__(
        self,
        node: str,
        fetch: Callable[[], NodeInfo],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.fetch = fetch
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._lease: DpuLease | None = None
        self._seen_at: float | None = None  # when the controller's answer came

    def _observe(self, lease: DpuLease | None) -> None:
        with self._lock:
            self._lease, self._seen_at = lease, self._clock()

    def problem(self, node: NodeInfo | None = None) -> str | None:
        """Why no pod can be attached now (None: the DPU is up, as far as anyone knows).
        `node`: the node record just fetched; None: the cached one, fetched again when it
        is `ttl` old (blocking)."""
        if node is not None:
            self._observe(node.dpu_lease)
        elif self._seen_at is None or self._clock() - self._seen_at >= self.ttl:
            try:
                self._observe(self.fetch().dpu_lease)
            except ClientError:
                self._observe(None)  # the controller cannot say: the port request will
        with self._lock:
            lease, seen_at = self._lease, self._seen_at
        if lease is None or seen_at is None or lease.state is not LeaseState.EXPIRED:
            return None
        silent = lease.silent_for + (self._clock() - seen_at)
        when = (
            f"no lease renewal in the {silent:.0f} s since the controller started"
            if lease.renewed_ago is None
            else f"its last lease renewal was {silent:.0f} s ago"
        )
        return (
            f"the DPU {lease.chassis} of node {self.node} is down: {when} (a lease holds "
            f"{lease.duration:g} s); pods on this node get no network until dpunet-dpu on "
            "the DPU renews it"
        )
