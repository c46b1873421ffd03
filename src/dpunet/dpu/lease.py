"""The DPU's lease at the controller: renewed every `lease_interval` seconds with the
DPU's own token (`dpu:<chassis>`, no Kubernetes credentials), so the host agent of the
node this DPU serves learns within one lease duration that the DPU agent is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from dpunet.contract.api import DpuLease
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.dpu.metrics import Metrics
from dpunet.logs import event

log = logging.getLogger(__name__)


class LeaseApi(Protocol):
    """The controller call the keeper makes (`ControllerClient`'s)."""

    def renew_dpu_lease(self, node: str) -> DpuLease:
        """Renew the lease of the DPU serving `node`."""
        ...


class LeaseKeeper:
    """Renews `node`'s DPU lease until stopped; a change (held, or a new error) is logged
    once."""

    def __init__(self, api: LeaseApi, node: str, interval: float, metrics: Metrics) -> None:
        self.api = api
        self.node = node
        self.interval = interval
        self.metrics = metrics
        self.held = False  # the last renewal went through
        self._error: str | None = None  # the last renewal's error

    def renew_once(self) -> bool:
        """One renewal (blocking); True when the controller took it."""
        try:
            lease = self.api.renew_dpu_lease(self.node)
        except ClientError as exc:
            self.metrics.lease_renewals.labels(result="error").inc()
            if self.held or self._error != exc.detail:
                event(
                    log, "lease-renew-failed", logging.WARNING, node=self.node,
                    status=exc.status, error=exc.detail,
                )  # fmt: skip
            self.held, self._error = False, exc.detail
            self.metrics.lease_held.set(0)
            return False
        self.metrics.lease_renewals.labels(result="ok").inc()
        if not self.held:
            event(log, "lease-held", node=self.node, chassis=lease.chassis, duration=lease.duration)
        self.held, self._error = True, None
        self.metrics.lease_held.set(1)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Renew every `interval` until `stop` is set."""
        while not stop.is_set():
            await asyncio.to_thread(self.renew_once)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


async def keep_lease(
    client: ControllerClient, node: str, interval: float, metrics: Metrics, stop: asyncio.Event
) -> None:
    """Renew `node`'s DPU lease through `client` until `stop` is set, then close it."""
    try:
        await LeaseKeeper(client, node, interval, metrics).run(stop)
    finally:
        client.close()
