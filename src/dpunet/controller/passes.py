"""Level-triggered passes over Northbound, shared by the service and policy controllers.

A pass recomputes what a controller owns in NB and writes the difference. `PassLoop`
runs one as soon as NB is usable, when woken (an NB change, a new source state), and
every `reconcile_interval`; a failed pass is retried after `RETRY_S`. After a pass it
waits `SETTLE_S`, so a burst of changes costs one more pass, not one per change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter

from dpunet.logs import event

TICK_S = 0.5
RETRY_S = 1.0
SETTLE_S = 0.2


class PassLoop:
    """Runs `one_pass` whenever `can_run()` and there is a reason to (see module doc)."""

    def __init__(
        self,
        what: str,
        reconcile_interval: float,
        can_run: Callable[[], bool],
        one_pass: Callable[[], Awaitable[object]],
        syncs: Counter,
        log: logging.Logger,
    ) -> None:
        """`what` names the passes in `log` (`<what>.sync_failed`); `syncs` counts them by
        result (`ok` is counted by the pass itself, `error` here)."""
        self.what = what
        self.log = log
        self.reconcile_interval = reconcile_interval
        self.can_run = can_run
        self.one_pass = one_pass
        self.syncs = syncs
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake_from_thread(self) -> None:
        """Ask for a pass from another thread (the NB IDL's)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self.wake.set)

    async def run(self) -> None:
        """Pass after pass, forever (cancel to stop)."""
        self._loop = loop = asyncio.get_running_loop()
        synced = False  # a pass ran since passes became possible
        last = float("-inf")
        while True:
            if not self.can_run():
                synced = False  # a pass runs as soon as it can; until then nothing to wake for
                self.wake.clear()
            elif not synced or self.wake.is_set() or loop.time() - last >= self.reconcile_interval:
                self.wake.clear()
                try:
                    await self.one_pass()
                except Exception as exc:
                    self.syncs.labels("error").inc()
                    error = str(exc) or repr(exc)
                    event(self.log, f"{self.what}.sync_failed", logging.ERROR, error=error)
                    await asyncio.sleep(RETRY_S)
                    continue
                synced, last = True, loop.time()
                await asyncio.sleep(SETTLE_S)  # changes meanwhile: one more pass for all
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_S):  # (3.11's wait_for can lose a cancel)
                    await self.wake.wait()
