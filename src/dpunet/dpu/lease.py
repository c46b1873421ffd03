"""The DPU's registration and lease at the controller, with the DPU's own token
(`dpu:<chassis>`, no Kubernetes credentials).

Registration (`PUT /v1/nodes/{node}/dpu`): "I am chassis C with tunnel endpoint E, I serve
host node H"; the controller checks it against OVN Southbound and binds H to C (in
Kubernetes mode, the Node's `k8s.ovn.org/node-chassis-id` annotation). Made before the
first renewal, retried each interval until it is taken, and made again whenever a
renewal is refused (403: the node lost its binding, e.g. its Node was re-created).

Lease: renewed every `lease_interval` seconds, so the host agent of the node this DPU
serves learns within one lease duration that the DPU agent is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from dpunet.contract.api import DpuBinding, DpuLease, DpuRegistration
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.dpu.metrics import Metrics
from dpunet.logs import event

log = logging.getLogger(__name__)


class LeaseApi(Protocol):
    """The controller calls the keeper makes (`ControllerClient`'s)."""

    def renew_dpu_lease(self, node: str) -> DpuLease:
        """Renew the lease of the DPU serving `node`."""
        ...

    def register_dpu(self, node: str, registration: DpuRegistration) -> DpuBinding:
        """Bind `node` to this DPU's chassis."""
        ...


class LeaseKeeper:
    """Registers this DPU for `node` (when `registration` is given) and renews `node`'s
    DPU lease until stopped; a change (held, registered, or a new error) is logged once."""

    def __init__(
        self,
        api: LeaseApi,
        node: str,
        interval: float,
        metrics: Metrics,
        registration: DpuRegistration | None = None,
    ) -> None:
        self.api = api
        self.node = node
        self.interval = interval
        self.metrics = metrics
        self.registration = registration
        self.held = False  # the last renewal went through
        self.registered = False  # the controller took the registration
        self._error: str | None = None  # the last renewal's error
        self._register_error: str | None = None  # the last registration's error

    def register_once(self) -> bool:
        """One registration (blocking); True when the controller took it."""
        assert self.registration is not None
        reg = self.registration
        try:
            binding = self.api.register_dpu(self.node, reg)
        except ClientError as exc:
            if self._register_error != exc.detail:
                event(
                    log, "register-failed", logging.WARNING, node=self.node,
                    chassis=reg.chassis, encap_ip=str(reg.encap_ip), status=exc.status,
                    error=exc.detail,
                )  # fmt: skip
            self._register_error = exc.detail
            return False
        event(
            log, "registered", node=self.node, chassis=binding.chassis,
            encap_ip=binding.encap_ip, gateway_mac=binding.gateway_mac, changed=binding.changed,
            recorded_in=binding.recorded_in,
        )  # fmt: skip
        self.registered, self._register_error = True, None
        self.metrics.registered.set(1)
        return True

    def renew_once(self) -> bool:
        """One renewal (blocking), after the registration when it is due; True when the
        controller took the renewal."""
        if self.registration is not None and not self.registered:
            self.register_once()
        try:
            lease = self.api.renew_dpu_lease(self.node)
        except ClientError as exc:
            if exc.status == 403 and self.registered:  # the binding is gone: register again
                self.registered = False
                self.metrics.registered.set(0)
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
    client: ControllerClient,
    node: str,
    interval: float,
    metrics: Metrics,
    stop: asyncio.Event,
    registration: DpuRegistration | None = None,
) -> None:
    """Register (with `registration`) and renew `node`'s DPU lease through `client` until
    `stop` is set, then close it."""
    try:
        await LeaseKeeper(client, node, interval, metrics, registration).run(stop)
    finally:
        client.close()
