"""The controller's OVN Northbound connection (ovsdbapp), safe to use from asyncio.

- One IDL over every configured remote (`leader_only`: with a raft cluster it follows
  the leader; python-ovs reconnects by itself after a leader change or an outage).
- The controller takes the OVSDB lock `dpunet_controller`: only the holder writes, so
  two controllers on one NB never both allocate addresses.
- Every blocking call runs in a thread pool, never on the event loop. A write is one
  transaction that ovsdbapp retries on transient failures for up to `nb_timeout`.
- Writes go through one queue, committed in order, one transaction at a time. Writes
  marked `coalesce` (commands on distinct objects, e.g. ports under their port lock)
  that queue up while a transaction is in flight are committed together in the next
  one; each caller still gets its own result or error: when such a shared transaction
  fails for a reason of one command, each member is committed again on its own.
- A write whose outcome cannot be known (the connection broke after the request was
  sent) raises `NbOutcomeUnknown`; callers then keep what they allocated until a
  resync with NB settles it.
- `wait_port_up` needs no read: the IDL thread keeps the set of LSP rows that are up
  (from its change notifications) and wakes the waiters of a port that changed; with an
  SB view (controller/sb.py) the SB binding's `up` on the requested chassis counts as
  well, whichever comes first. A read under the IDL lock every few seconds catches a
  port removed or replaced meanwhile. (Reads wait for the IDL lock, which a transaction
  holds for its whole round trip; which row holds an LSP name is known without a read,
  from the rows kept current by the same notifications.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import uuid
from collections import deque
from collections.abc import Callable, Container
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ovs.db.idl import ROW_DELETE
from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import connection, idlutils, transaction

from dpunet.controller.errors import Conflict, ControllerError, DeadlineExceeded, Unavailable
from dpunet.controller.nbcommands import (
    LR,
    LRP,
    LS,
    LSP,
    NAT,
    POLICY,
    ROUTE,
    NbSnapshot,
    PortRow,
    PortRows,
    ReadPort,
    Snapshot,
    read_column,
)
from dpunet.controller.policy_nb import ACL_TABLE, ADDRESS_SET, NB_GLOBAL, PORT_GROUP
from dpunet.controller.sb import Expected, SbBindings
from dpunet.controller.service_nb import LB, LB_GROUP
from dpunet.logs import event
from dpunet.ovsdb.api import NbApi
from dpunet.ovsdb.own import NoYieldIdl
from dpunet.ovsdb.rpc import NB_SCHEMA, schema_helper

LOCK_NAME = "dpunet_controller"
TABLES = (
    LS,
    LSP,
    LR,
    LRP,
    ROUTE,
    NAT,
    POLICY,
    LB,
    LB_GROUP,
    PORT_GROUP,
    ADDRESS_SET,
    ACL_TABLE,
    NB_GLOBAL,
)
_RECHECK_S = 2.0
_POLL_S = 0.1
MAX_BATCH = 256  # commands in one coalesced transaction

log = logging.getLogger("dpunet.controller.nb")
T = TypeVar("T")
Command = Any  # an ovsdbapp command (untyped library)


class NbUnavailable(Unavailable):
    """NB cannot be used right now; nothing was written."""


class NbOutcomeUnknown(Unavailable):
    """The connection broke while a write was in flight: it may or may not have happened."""


ChangeListener = Callable[[str, uuid.UUID, frozenset[str] | None], None]
"""(table, row, the columns an update changed or None for an insert or delete)"""


class _Idl(NoYieldIdl):
    """An IDL that reports every Logical_Switch_Port change (event, row) to a listener,
    and every change (table, row, columns an update changed or None) to the change
    listeners."""

    port_listener: Callable[[str, Any], None] | None = None
    change_listeners: tuple[ChangeListener, ...] = ()

    def notify(self, event: str, row: Any, updates: Any = None) -> None:
        if self.port_listener is not None and row._table.name == LSP:
            self.port_listener(event, row)
        # python-ovs passes an update's old values as a Row holding only the changed columns
        columns = frozenset(updates.__dict__["_data"]) if updates is not None else None
        for listener in self.change_listeners:
            listener(row._table.name, row.uuid, columns)


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


MakeCommand = Callable[[Any], Command]  # the API -> the command to run


@dataclass
class _QueuedWrite:
    """A write waiting in the queue; `done` gets its result or error."""

    make: MakeCommand
    coalesce: bool
    until: float  # event-loop time its caller stops waiting
    done: asyncio.Future[Any]


class WriteQueue:
    """Commits queued writes in order, one transaction at a time, coalescing consecutive
    `coalesce` writes into one transaction (see the module docstring)."""

    def __init__(
        self, commit: Callable[[list[MakeCommand], float], list[Any]], executor: Executor
    ) -> None:
        # commit(makes, timeout) -> one result or exception per command, run in `executor`
        self._commit = commit
        self._executor = executor
        self._queue: deque[_QueuedWrite] = deque()
        self._runner: asyncio.Task[None] | None = None
        self.transactions = 0  # committed (or attempted) so far
        self.writes_sent = 0  # the writes those transactions carried (coalescing: more)

    async def submit(self, make: MakeCommand, coalesce: bool, until: float) -> Any:
        """Queue a write and return its command's result (or raise its error)."""
        loop = asyncio.get_running_loop()
        item = _QueuedWrite(make, coalesce, until, loop.create_future())
        self._queue.append(item)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run(), name="dpunet-nb-writes")
        return await item.done

    def _next_batch(self) -> list[_QueuedWrite]:
        """The head of the queue: one plain write, or the coalescable writes before the
        next plain one (at most MAX_BATCH); writes whose caller left are dropped."""
        batch: list[_QueuedWrite] = []
        while self._queue and len(batch) < MAX_BATCH:
            item = self._queue[0]
            if batch and not item.coalesce:
                break
            self._queue.popleft()
            if item.done.done():  # cancelled before it was sent: nothing to do
                continue
            batch.append(item)
            if not item.coalesce:
                break
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_QueuedWrite] = []
        try:
            while self._queue:
                batch = self._next_batch()
                if not batch:
                    continue
                timeout = max(min(w.until for w in batch) - loop.time(), 1.0)
                self.transactions += 1
                self.writes_sent += len(batch)
                outcomes = await loop.run_in_executor(
                    self._executor, self._commit, [w.make for w in batch], timeout
                )
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.done.done():
                        continue
                    if isinstance(outcome, BaseException):
                        item.done.set_exception(outcome)
                    else:
                        item.done.set_result(outcome)
                batch = []
        finally:  # cancelled (shutdown): nobody may wait forever
            for item in (*batch, *self._queue):
                if not item.done.done():
                    item.done.cancel()
            self._queue.clear()


class NbClient:
    """Northbound access for the controller (see the module docstring)."""

    def __init__(
        self, remotes: list[str], timeout: float, workers: int = 8, sb: SbBindings | None = None
    ) -> None:
        self.remotes = remotes
        self.timeout = timeout
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="dpunet-nb")
        self.api: Any = None
        self._idl: _Idl | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._up_rows: dict[str, uuid.UUID] = {}  # LSP name -> its row, while up=true
        self.port_rows = PortRows()
        self._change_listeners: tuple[ChangeListener, ...] = ()
        self.writes = WriteQueue(self._commit_batch, self._executor)
        self.sb = sb
        if sb is not None:
            sb.listener = self._port_event

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
        helper = schema_helper(self.remotes, NB_SCHEMA, TABLES)
        idl = _Idl(remote, helper, leader_only=True)
        idl.set_lock(LOCK_NAME)
        idl.port_listener = self._port_changed
        idl.change_listeners = self._change_listeners
        conn = connection.Connection(idl, timeout=self.timeout)
        self.api = NbApi(conn)
        self._idl = idl

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(table, row uuid, columns)` (in the IDL thread) on every change NB
        reports (`columns`: those an update changed, None for an insert or delete);
        register before `connect`."""
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

    def kept_port_name(self, name: str) -> tuple[PortRow | None, bool] | None:
        """Who holds LSP name `name` (`ReadPortName`'s answer) from the kept rows, without
        waiting behind transactions in flight; None when they cannot tell (read then)."""
        return self.port_rows.by_name(name, self._has_row) if self.connected else None

    async def snapshot(self) -> NbSnapshot:
        """dpunet's view of NB (nbcommands.Snapshot), pod ports from the kept PortRows."""
        snap: NbSnapshot = await self.read(
            lambda api: Snapshot(api, self.port_rows, self._forget_dropped)
        )
        return snap

    def _forget_dropped(self, present: Container[uuid.UUID]) -> None:
        """Under the connection lock: forget the up ports whose rows a resync dropped
        without reporting them deleted (`present`: the replica's LSPs)."""
        for name in [n for n, row in self._up_rows.items() if row not in present]:
            del self._up_rows[name]

    async def write(self, make: MakeCommand, *, coalesce: bool = False) -> Any:
        """Run one write command and return its result. With `coalesce`, it may share a
        transaction with other coalescable writes queued meanwhile (only for commands on
        distinct objects). While NB is unreachable or the lock is not held, waits and
        retries, up to `timeout`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.timeout
        while True:
            await self._wait_ready(until, lock=True)
            try:
                return await self.writes.submit(make, coalesce, until)
            except NbUnavailable:
                if loop.time() >= until:
                    raise
                await asyncio.sleep(_POLL_S)

    def _commit_batch(self, makes: list[MakeCommand], timeout: float) -> list[Any]:
        """Worker thread: the commands of `makes` in one transaction; one result or
        exception per command. When the transaction fails because of what a command
        did (not because NB is unusable), each command is committed again on its own, so
        only the failing ones fail."""
        api = self.api
        try:
            commands = [make(api) for make in makes]
            self._commit(api, commands, timeout)
            return [cmd.result for cmd in commands]
        except Exception as exc:
            if len(makes) == 1 or isinstance(exc, Unavailable):
                return [exc] * len(makes)
        outcomes: list[Any] = []
        for make in makes:
            try:
                cmd = make(api)
                self._commit(api, [cmd], timeout)
                outcomes.append(cmd.result)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _commit(api: Any, commands: list[Command], timeout: float) -> None:
        txn = _Txn(api, api.ovsdb_connection, timeout, check_error=True, log_errors=False)
        for cmd in commands:
            txn.add(cmd)
        txn.commit()

    # ------------------------------------------------------------ port up
    def _port_changed(self, event: str, row: Any) -> None:
        """IDL thread: an LSP changed; note whether it is up and wake whoever waits for it."""
        self.port_rows.changed(event == ROW_DELETE, row)
        name = read_column(row, "name")
        up = read_column(row, "up") if event != ROW_DELETE else []
        if up and up[0]:
            self._up_rows[name] = row.uuid
        elif self._up_rows.get(name) == row.uuid:
            del self._up_rows[name]
        self._port_event(name)

    def _port_event(self, name: str) -> None:
        """Any thread: something port `name`'s waiters look at changed."""
        loop = self._loop
        if loop is not None and name in self._waiters:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._wake, name)

    def _wake(self, name: str) -> None:
        for fut in self._waiters.get(name, ()):
            if not fut.done():
                fut.set_result(None)

    def _has_row(self, row: uuid.UUID) -> bool:
        """The replica holds LSP row `row` (no lock needed)."""
        idl = self._idl
        return idl is not None and row in idl.tables[LSP].rows

    def _seen_up(self, name: str, row: uuid.UUID) -> bool:
        """LSP `name` is row `row` with up=true in the replica (no lock needed)."""
        # (the row check: not dropped by a reconnection since)
        return self._up_rows.get(name) == row and self._has_row(row)

    async def wait_port_up(
        self,
        name: str,
        row: uuid.UUID,
        deadline: float,
        what: str,
        expect: Expected | None = None,
    ) -> str:
        """Return once LSP `name` (row `row`) has `up=true` ("nb") or, with `expect` and
        an SB view, once SB shows its binding up as `expect` says while the row is still
        in NB ("sb"), whichever first; DeadlineExceeded at `deadline` (event-loop time).
        `what` describes the wait for the error message. A port removed or replaced
        meanwhile is a Conflict."""
        loop = asyncio.get_running_loop()
        last_error = ""
        read_at = loop.time() + _RECHECK_S
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(name, set()).add(fut)
            try:
                # SB first: "nb" then says SB's view did not have it yet, not that both did
                if (
                    expect is not None
                    and self.sb is not None
                    and self.sb.ready(name, expect)
                    and self._has_row(row)  # (else replaced: the next read says so)
                ):
                    return "sb"
                if self._seen_up(name, row):
                    return "nb"
                if loop.time() >= read_at:
                    read_at = loop.time() + _RECHECK_S
                    try:
                        state: PortRow | None = await asyncio.wait_for(
                            self.read(lambda api: ReadPort(api, name)),
                            max(deadline - loop.time(), _POLL_S),
                        )
                    except (NbUnavailable, TimeoutError):
                        last_error = " (OVN Northbound not connected meanwhile)"
                    else:
                        if state is None or state.uuid != row:
                            raise Conflict(
                                f"port {name} was removed or replaced while waiting for it"
                            )
                        if state.up:
                            return "nb"
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DeadlineExceeded(f"timed out waiting for {what}{last_error}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fut, min(remaining, max(read_at - loop.time(), 0)))
            finally:
                waiters = self._waiters.get(name)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[name]
