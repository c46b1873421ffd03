"""When the policy controller runs a pass (issue 16): its own writes wake no pass, others'
changes do. A fake Northbound client stands in for NbClient: it reports changes the way
the IDL thread does (before the write's reply) and counts the passes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from dpunet.controller.config import ControllerConfig
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import ChangeListener
from dpunet.controller.nbcommands import LS, LSP
from dpunet.controller.policies import PolicyController
from dpunet.controller.policy_nb import ACL_TABLE, ADDRESS_SET, PORT_GROUP, PolicySyncResult

Change = tuple[str, frozenset[str] | None]


class FakeNb:
    """Ready at once; each write reports `echo` (then `during`, once) as NB would while the
    transaction is in flight, and answers that a policy exists (the controller is busy)."""

    def __init__(self, echo: list[Change], during: list[Change] | None = None) -> None:
        self.ready = True
        self.echo = echo
        self.during = during or []
        self.listeners: list[ChangeListener] = []
        self.writes = 0

    def on_change(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)

    async def write(self, make: Any) -> PolicySyncResult:
        self.writes += 1
        await asyncio.sleep(0)
        changes, self.during = self.echo + self.during, []
        for table, columns in changes:  # the IDL thread reports before the reply
            for listener in self.listeners:
                await asyncio.to_thread(listener, table, uuid.uuid4(), columns)
        await asyncio.sleep(0)
        return PolicySyncResult(3, {"ns/p": (["lsp"], 1)}, {})


async def _passes(nb: FakeNb, after: Callable[[], None] | None = None) -> int:
    """How many passes run in 1.5 s (well below the reconcile interval); `after` is called
    once the first has run."""
    ctl = PolicyController(ControllerConfig(reconcile_interval=60), nb, Metrics(list))  # type: ignore[arg-type]
    task = asyncio.create_task(ctl.run())
    try:
        await asyncio.sleep(0.6)
        if after is not None:
            after()
        await asyncio.sleep(0.9)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return nb.writes


OWN_ECHO = [
    (PORT_GROUP, None),
    (ADDRESS_SET, frozenset({"addresses"})),
    (ACL_TABLE, None),
    (PORT_GROUP, frozenset({"ports", "acls"})),
    (LS, frozenset({"acls"})),
]


def test_own_writes_wake_no_pass() -> None:
    assert asyncio.run(_passes(FakeNb(OWN_ECHO))) == 1


@pytest.mark.parametrize(
    "other",
    [
        (LSP, None),  # a pod added while the pass wrote
        (LS, frozenset({"ports"})),  # a switch's ports changed
        (LS, None),  # a node switch added
    ],
)
def test_others_changes_during_a_pass_wake_one(other: Change) -> None:
    assert asyncio.run(_passes(FakeNb(OWN_ECHO, [other]))) == 2


def test_change_to_policy_objects_between_passes_wakes_one() -> None:
    nb = FakeNb(OWN_ECHO)

    def tamper() -> None:  # someone edits an owned ACL while no pass runs
        for listener in nb.listeners:
            listener(ACL_TABLE, uuid.uuid4(), frozenset({"match"}))

    assert asyncio.run(_passes(nb, tamper)) == 2
