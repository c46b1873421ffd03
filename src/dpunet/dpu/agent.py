"""The `dpunet-dpu` main loop (asyncio).

Start: `dpu setup` (idempotent), connect to the local OVS, learn who this chassis is,
start the SB monitor and the HTTP endpoint. Then loop: take a snapshot of the SB replica,
run one full reconcile in the worker thread, sleep until something changes (SB, OVS), a
retry is due (something was refused or not ready) or the periodic resync comes. Every
pass is a full reconcile, so events only make it come sooner; a restart after kill -9
converges on its first pass. Blocking work (ovsdbapp, pyroute2, sysfs) runs in one
worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from dpunet.contract.lsp import gateway_external_port
from dpunet.dpu import heap
from dpunet.dpu.config import (
    ConfigError,
    DpuAgentConfig,
    Identity,
    resolve_identity,
    setup_config,
)
from dpunet.dpu.gateway import GatewayFlows, GatewayResult
from dpunet.dpu.metrics import Metrics
from dpunet.dpu.plug import Reconciler, ReconcileResult
from dpunet.dpu.sb import SbMonitor, SbSnapshot
from dpunet.hw.representors import read_smart_nic_pf_mac
from dpunet.hw.sysfs import Sysfs
from dpunet.linux.netlink import Netlink
from dpunet.logs import event
from dpunet.observability import check_handler, metrics_handler, parse_listen, start_http
from dpunet.ovsdb.local import LocalOvs, connect
from dpunet.ovsdb.remote import OvsdbError, OvsdbUnavailable
from dpunet.settings import describe
from dpunet.setup import dpu as dpu_setup
from dpunet.setup.plan import Outcome, SetupError
from dpunet.tls import TlsError, check_files, client_context, warn_insecure

log = logging.getLogger(__name__)
T = TypeVar("T")
_START_RETRY_MAX = 10.0


class AgentError(Exception):
    """The agent cannot run (bad config, failed setup); the message says why."""


def run_setup(cfg: DpuAgentConfig) -> None:
    """`dpunet dpu setup` with the agent's config, gaps filled from OVS (blocking)."""
    with connect(cfg.ovs_db) as db, Netlink() as nl:
        setup_cfg = setup_config(cfg, db.snapshot().external_ids)
        state = dpu_setup.gather_state(setup_cfg, nl=nl, db=db)
        plan = dpu_setup.plan_dpu(setup_cfg, state)
        dpu_setup.apply_dpu(setup_cfg, plan, state, db, nl)
    changed = [s.what for s in plan.steps if s.outcome is Outcome.CHANGED]
    event(log, "setup-done", changed=len(changed), steps=changed or None)
    for warning in plan.warnings:
        event(log, "setup-warning", logging.WARNING, detail=warning)


class Agent:
    """One `dpunet-dpu` process."""

    def __init__(self, cfg: DpuAgentConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.identity: Identity | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dpu-agent")
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ovs: LocalOvs | None = None
        self._monitor: SbMonitor | None = None
        self._reconciler: Reconciler | None = None
        self._gateway: GatewayFlows | None = None
        self._gateway_problem: str | None = None
        self._server: asyncio.Server | None = None
        self._lease: asyncio.Task[None] | None = None
        self._last_pass: float | None = None
        self._ready = False
        self._sb_synced = False

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _trigger(self) -> None:
        """Wake the main loop; callable from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing
                loop.call_soon_threadsafe(self._wake.set)

    # --------------------------------------------------------------- start
    async def _start(self, stop: asyncio.Event) -> bool:
        """Setup and OVS connection, retried while OVS is unreachable; False if stopped."""
        delay = 0.5
        while not stop.is_set():
            try:
                if self.cfg.run_setup:
                    await self._blocking(run_setup, self.cfg)
                ovs = LocalOvs(self.cfg.ovs_db, on_change=self._trigger)
                await self._blocking(ovs.start)
            except OvsdbUnavailable as exc:
                event(log, "ovs-unavailable", logging.WARNING, error=str(exc), retry=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, _START_RETRY_MAX)
                continue
            except (SetupError, OvsdbError, ConfigError) as exc:
                raise AgentError(f"dpu setup: {exc}") from exc
            self._ovs = ovs
            return True
        return False

    async def _start_http(self) -> None:
        if not self.cfg.metrics_address:
            return
        host, port = parse_listen(self.cfg.metrics_address)
        routes = {
            "/metrics": metrics_handler(self.metrics.registry),
            "/healthz": check_handler(self.health),
            "/readyz": check_handler(self.readiness),
        }
        try:
            self._server = await start_http(host, port, routes)
        except OSError as exc:
            raise AgentError(f"cannot listen on {self.cfg.metrics_address}: {exc}") from exc
        event(log, "http-listening", address=self.cfg.metrics_address)

    # -------------------------------------------------------------- checks
    def health(self) -> tuple[bool, str]:
        """Alive: the loop finished a pass recently (or has not started its first one)."""
        if self._last_pass is None:
            return True, "starting"
        age = time.monotonic() - self._last_pass
        limit = 2 * self.cfg.resync_interval + 60
        return age < limit, f"last reconcile {age:.1f}s ago"

    def readiness(self) -> tuple[bool, str]:
        """Ready: a reconcile ran against a synced SB replica."""
        if self._ready:
            return True, "ready"
        return False, "waiting for the first reconcile with a synced SB replica"

    # ---------------------------------------------------------------- loop
    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; AgentError when the agent cannot work at all."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._start_http()
            if not await self._start(stop):
                return
            assert self._ovs is not None
            ovs_state = await self._blocking(self._ovs.state)
            try:
                self.identity = resolve_identity(self.cfg, ovs_state.external_ids)
                if self.cfg.sb_ssl is not None:
                    check_files("sb_ssl", self.cfg.sb_ssl)
            except (ConfigError, TlsError) as exc:
                raise AgentError(str(exc)) from exc
            ident = self.identity
            if self.cfg.insecure:
                warn_insecure(log, self.cfg.plain_transports(ident.sb_remotes))
            event(
                log,
                "agent-start",
                chassis=ident.chassis,
                hostname=ident.hostname,
                host_node=ident.host_node,
                sb=ident.sb_remotes,
                plug_mode=self.cfg.plug_mode,
                bridge=self.cfg.integration_bridge,
            )
            sysfs = Sysfs.from_env(self.cfg.sysfs_root)
            self._reconciler = Reconciler(self.cfg, ident, self._ovs, sysfs, self.metrics)
            self._gateway = GatewayFlows(
                self.cfg.gateway,
                self.cfg.ovs_db,
                ident.host_node,
                self.cfg.setup.host_pf_rep,
                self.cfg.setup.uplink,
                sysfs,
            )
            lports = [ident.mgmt_lport] if ident.mgmt_lport and self.cfg.mgmt_port.enabled else []
            if ident.host_node and self.cfg.gateway.enabled:
                lports.append(gateway_external_port(ident.host_node))
            self._monitor = SbMonitor(
                ident.sb_remotes,
                ident.chassis,
                sorted(ident.chassis_names),
                self._trigger,
                lports=lports,
                ssl=self.cfg.sb_ssl,
            )
            self._monitor.start()
            self._start_lease(ident, stop, sysfs)
            await self._loop_until(stop)
        finally:
            await self._shutdown()

    async def _loop_until(self, stop: asyncio.Event) -> None:
        assert self._monitor is not None and self._reconciler is not None
        stop_task = asyncio.ensure_future(stop.wait())
        rescan_due = 0.0
        try:
            while not stop.is_set():
                self._wake.clear()
                snapshot = self._monitor.snapshot()
                rescan = time.monotonic() >= rescan_due
                if snapshot.synced != self._sb_synced:
                    self._sb_synced = snapshot.synced
                    self.metrics.sb_synced.set(1 if snapshot.synced else 0)
                    if snapshot.synced:
                        self.metrics.sb_resyncs.inc()
                if rescan:
                    rescan_due = time.monotonic() + self.cfg.resync_interval
                result = await self._pass(snapshot, rescan)
                if result is None:
                    rescan_due = 0.0
                delay = (
                    self.cfg.retry_interval
                    if result is None or result.retry
                    else self.cfg.resync_interval
                )
                if self.cfg.gateway.enabled:
                    delay = min(delay, self.cfg.gateway.interval)
                wake_task = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    {wake_task, stop_task}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                wake_task.cancel()
        finally:
            stop_task.cancel()

    async def _pass(self, snapshot: SbSnapshot, rescan: bool) -> ReconcileResult | None:
        """One reconcile in the worker thread; None when it failed."""
        assert self._reconciler is not None
        started = time.monotonic()
        try:
            result = await self._blocking(self._reconciler.reconcile, snapshot, rescan)
        except Exception as exc:  # keep the daemon alive; the next pass retries
            self.metrics.reconciles.labels(result="error").inc()
            event(log, "reconcile-failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
            return None
        finally:
            elapsed = time.monotonic() - started
            self.metrics.reconcile_seconds.observe(elapsed)
            self._last_pass = time.monotonic()
        self.metrics.reconciles.labels(result="ok").inc()
        await self._gateway_pass(snapshot)
        if result.actions:  # ports came or went: hand the pass's garbage back
            await self._blocking(heap.trim)
        if snapshot.synced and result.waiting_for is None:
            self._ready = True
        if result.actions or log.isEnabledFor(logging.DEBUG):
            event(
                log,
                "reconciled",
                actions=",".join(f"{k}:{v}" for k, v in sorted(result.actions.items())) or "-",
                owned=result.owned,
                refused=len(result.refusals),
                sb_synced=snapshot.synced,
                rescan=rescan,
                seconds=round(elapsed, 4),
            )
        elif result.waiting_for:
            event(log, "reconcile-waiting", logging.DEBUG, waiting_for=result.waiting_for)
        return result

    async def _gateway_pass(self, snapshot: SbSnapshot) -> None:
        """The shared gateway's flows on the external bridge (dpu/gateway.py)."""
        assert self._gateway is not None and self._ovs is not None
        try:
            state = await self._blocking(self._ovs.state)
            result: GatewayResult = await self._blocking(self._gateway.reconcile, snapshot, state)
        except Exception as exc:  # keep the daemon alive; the next pass retries
            result = GatewayResult(problem=f"{type(exc).__name__}: {exc}")
        self.metrics.gateway_ok.set(0 if result.problem else 1)
        if result.problem is None:
            self.metrics.gateway_flows.set(result.flows)
        self.metrics.gateway_flow_changes.labels("added").inc(len(result.changes.added))
        self.metrics.gateway_flow_changes.labels("removed").inc(len(result.changes.removed))
        if result.problem != self._gateway_problem:
            self._gateway_problem = result.problem
            if result.problem:
                event(log, "gateway-flows-waiting", logging.WARNING, problem=result.problem)

    def _start_lease(self, ident: Identity, stop: asyncio.Event, sysfs: Sysfs) -> None:
        """Register this DPU (with its host PF's MAC, when the uplink says it) and renew
        the DPU lease at the controller, when one is configured."""
        if self.cfg.controller_url is None or self.cfg.token_file is None:
            return
        from pydantic import ValidationError

        from dpunet.contract.api import DpuRegistration
        from dpunet.contract.client import ClientError, ControllerClient  # lease only
        from dpunet.dpu.lease import keep_lease

        if ident.host_node is None:
            raise AgentError(
                "the DPU lease needs the host node: host_node or external_ids:host-k8s-nodename"
            )
        try:
            client = ControllerClient(
                self.cfg.controller_url,
                token_file=str(self.cfg.token_file),
                timeout=self.cfg.lease_interval,
                tls=client_context(self.cfg.controller_tls),
            )
        except (OSError, ClientError) as exc:
            raise AgentError(f"token_file {self.cfg.token_file}: {exc}") from exc
        if ident.encap_ip is None:
            client.close()
            raise AgentError(
                "the DPU registration needs the tunnel endpoint: external_ids:ovn-encap-ip "
                "(run `dpunet dpu setup`)"
            )
        try:
            pf_mac = read_smart_nic_pf_mac(sysfs, ident.uplink) if ident.uplink else None
            registration = DpuRegistration(
                chassis=ident.chassis, encap_ip=ident.encap_ip, host_pf_mac=pf_mac
            )
        except ValidationError as exc:
            client.close()
            raise AgentError(f"the DPU registration: {describe(exc)}") from exc
        event(log, "lease-start", node=ident.host_node, controller=self.cfg.controller_url)
        interval = self.cfg.lease_interval
        self._lease = asyncio.create_task(
            keep_lease(client, ident.host_node, interval, self.metrics, stop, registration)
        )

    async def _shutdown(self) -> None:
        if self._lease is not None:
            self._lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease
        if self._monitor is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._monitor.stop)
        if self._reconciler is not None:
            await self._blocking(self._reconciler.close)
        if self._ovs is not None:
            await self._blocking(self._ovs.stop)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._executor.shutdown(wait=False, cancel_futures=True)
        event(log, "agent-stop")
