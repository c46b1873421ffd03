"""The controller's OVN Northbound connection (ovsdbapp), safe to use from asyncio.

- One IDL over every configured remote (`leader_only`: with a raft cluster it follows
  the leader; python-ovs reconnects by itself after a leader change or an outage).
- The controller takes the OVSDB lock `dpunet_controller`: only the holder writes, so
  two controllers on one NB never both allocate addresses.
- Every blocking call runs in a thread pool, never on the event loop. A write is one
  transaction that ovsdbapp retries on transient failures for up to `nb_timeout`.
- A write whose outcome cannot be known (the connection broke after the request was
  sent) raises `NbOutcomeUnknown`; callers then keep what they allocated until a
  resync with NB settles it.
- `wait_port_up` is woken by IDL notifications and re-checks under the IDL lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection, idlutils, transaction
from ovsdbapp.schema.ovn_northbound import impl_idl

from dpunet.controller.errors import Conflict, ControllerError, DeadlineExceeded, Unavailable
from dpunet.controller.nbcommands import LR, LRP, LS, LSP, NAT, ROUTE, PortRow, ReadPort
from dpunet.controller.service_nb import LB, LB_GROUP
from dpunet.logs import event

LOCK_NAME = "dpunet_controller"
SCHEMA = "OVN_Northbound"
TABLES = (LS, LSP, LR, LRP, ROUTE, NAT, LB, LB_GROUP)
_RECHECK_S = 2.0
_POLL_S = 0.1

log = logging.getLogger("dpunet.controller.nb")
T = TypeVar("T")
Command = Any  # an ovsdbapp command (untyped library)


class NbUnavailable(Unavailable):
    """NB cannot be used right now; nothing was written."""


class NbOutcomeUnknown(Unavailable):
    """The connection broke while a write was in flight: it may or may not have happened."""


class _Idl(connection.OvsdbIdl):
    """An IDL that reports every Logical_Switch_Port change to a listener, and the table
    of every change to the change listeners."""

    port_listener: Callable[[str], None] | None = None
    change_listeners: tuple[Callable[[str], None], ...] = ()

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if self.port_listener is not None and row._table.name == LSP:
            self.port_listener(row.name)
        for listener in self.change_listeners:
            listener(row._table.name)


class _Txn(transaction.Transaction):
    """A transaction whose caller waits for the connection thread's verdict.

    ovsdbapp's own `commit` stops waiting after `timeout` even when the transaction is
    still queued and runs later; here the verdict always arrives (the transaction ends
    on its own deadline, counted from when it starts), so a failure means "not written"
    unless it says otherwise.
    """

    def commit(self) -> Any:
        try:
            self.ovsdb_connection.queue_txn(self)
        except ovsdbapp_exceptions.TimeoutException as exc:
            raise NbUnavailable("OVN Northbound is busy or unreachable (queue full)") from exc
        try:
            result = self.results.get(timeout=self.timeout * 3)
        except queue.Empty as exc:
            raise NbOutcomeUnknown("no verdict from OVN Northbound for a write") from exc
        if isinstance(result, idlutils.ExceptionResult):
            raise _translate(result.ex)
        return result


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, ControllerError):
        return exc
    text = str(exc)
    if "database lock" in text:
        return NbUnavailable("this controller does not hold the Northbound lock")
    if "timed out" in text:
        return NbOutcomeUnknown(f"OVN Northbound write did not complete: {text}")
    if isinstance(exc, RuntimeError) and text.startswith("OVSDB Error"):
        return Conflict(f"OVN Northbound refused the write: {text}")
    return exc


class NbClient:
    """Northbound access for the controller (see the module docstring)."""

    def __init__(self, remotes: list[str], timeout: float, workers: int = 8) -> None:
        self.remotes = remotes
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="dpunet-nb")
        # ovsdbapp keeps the connection on the API class: one class per client.
        self._api_cls: type = type("DpunetNbApi", (impl_idl.OvnNbApiIdlImpl,), {})
        self.api: Any = None
        self._idl: _Idl | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._change_listeners: tuple[Callable[[str], None], ...] = ()

    # ------------------------------------------------------------ connection
    async def connect(self, retry_interval: float = 1.0) -> None:
        """Connect (retrying until it works); python-ovs keeps it connected afterwards."""
        self._loop = asyncio.get_running_loop()
        while self.api is None:
            try:
                await self._loop.run_in_executor(self._executor, self._connect_blocking)
            except Exception as exc:
                event(
                    log,
                    "nb.connect_failed",
                    logging.WARNING,
                    remotes=",".join(self.remotes),
                    error=str(exc) or repr(exc),
                )
                await asyncio.sleep(retry_interval)
        event(log, "nb.connected", remotes=",".join(self.remotes))

    def _connect_blocking(self) -> None:
        remote = ",".join(self.remotes)
        helper = idlutils.get_schema_helper(remote, SCHEMA)
        for table in TABLES:
            helper.register_table(table)
        idl = _Idl(remote, helper, leader_only=True)
        idl.set_lock(LOCK_NAME)
        idl.port_listener = self._port_changed
        idl.change_listeners = self._change_listeners
        conn = connection.Connection(idl, timeout=self.timeout)
        self.api = self._api_cls(conn)
        self._idl = idl

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(table)` (in the IDL thread) on every change NB reports; register
        before `connect`."""
        self._change_listeners += (listener,)

    @property
    def connected(self) -> bool:
        """Connected to the leader with a complete copy of the tables."""
        idl = self._idl
        return idl is not None and idl._session.is_connected() and idl.state == idl.IDL_S_MONITORING

    @property
    def has_lock(self) -> bool:
        """This controller holds the Northbound lock (it may write)."""
        return self._idl is not None and bool(self._idl.has_lock)

    @property
    def ready(self) -> bool:
        """Connected and holding the lock."""
        return self.connected and self.has_lock

    async def close(self) -> None:
        """Stop the connection thread and the thread pool."""
        if self.api is not None:
            conn = self.api.ovsdb_connection
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.stop, 5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ commands
    async def _wait_ready(self, until: float, lock: bool) -> Any:
        """The API once connected (and holding the lock if `lock`); NbUnavailable at `until`."""
        loop = asyncio.get_running_loop()
        while not (self.ready if lock else self.connected):
            if loop.time() >= until:
                what = "connected to the leader and holding the lock" if lock else "connected"
                raise NbUnavailable(f"OVN Northbound is not {what}")
            await asyncio.sleep(_POLL_S)
        return self.api

    async def read(self, make: Callable[[Any], Command]) -> Any:
        """Run a read-only command against the IDL replica (waits up to `timeout` for a
        live connection)."""
        loop = asyncio.get_running_loop()
        api = await self._wait_ready(loop.time() + self.timeout, lock=False)
        return await loop.run_in_executor(self._executor, make(api).execute, True, False)

    async def write(self, make: Callable[[Any], Command]) -> Any:
        """Run one write command as one transaction and return its result. While NB is
        unreachable or the lock is not held, waits and retries, up to `timeout`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.timeout
        while True:
            api = await self._wait_ready(until, lock=True)
            cmd = make(api)
            budget = max(until - loop.time(), 1.0)
            try:
                return await loop.run_in_executor(self._executor, self._commit, api, cmd, budget)
            except NbUnavailable:
                if loop.time() >= until:
                    raise
                await asyncio.sleep(_POLL_S)

    @staticmethod
    def _commit(api: Any, cmd: Command, timeout: float) -> Any:
        txn = _Txn(api, api.ovsdb_connection, timeout, check_error=True, log_errors=False)
        txn.add(cmd)
        txn.commit()
        return cmd.result

    # ------------------------------------------------------------ port up
    def _port_changed(self, name: str) -> None:
        """IDL thread: some LSP changed; wake whoever waits for it."""
        loop = self._loop
        if loop is not None and name in self._waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._wake, name)

    def _wake(self, name: str) -> None:
        for fut in self._waiters.get(name, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait_port_up(self, name: str, row: uuid.UUID, deadline: float, what: str) -> None:
        """Return once LSP `name` (row `row`) has `up=true`; DeadlineExceeded at `deadline`
        (event-loop time). `what` describes the wait for the error message."""
        loop = asyncio.get_running_loop()
        last_error = ""
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(name, set()).add(fut)
            try:
                try:
                    state: PortRow | None = await asyncio.wait_for(
                        self.read(lambda api: ReadPort(api, name)),
                        max(deadline - loop.time(), _POLL_S),
                    )
                except (NbUnavailable, TimeoutError):
                    last_error = " (OVN Northbound not connected meanwhile)"
                else:
                    if state is None or state.uuid != row:
                        raise Conflict(f"port {name} was removed or replaced while waiting for it")
                    if state.up:
                        return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DeadlineExceeded(f"timed out waiting for {what}{last_error}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, min(remaining, _RECHECK_S))
            finally:
                waiters = self._waiters.get(name)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[name]
