"""The benchmarks' floors wait for a name to join a set (an LSP up, an interface
installed): each waiter is woken by its own name, and only once it is in."""

from __future__ import annotations

import threading
import time

import pytest

from dpunet.bench.ovsdb import MemberSets


def _waiting(
    sets: MemberSets, which: str, name: str, timeout: float = 5.0
) -> tuple[threading.Thread, list[TimeoutError | None]]:
    """A thread waiting for `name` in `which`, and where its outcome will be."""
    outcome: list[TimeoutError | None] = []

    def wait() -> None:
        try:
            sets.wait(which, name, timeout)
            outcome.append(None)
        except TimeoutError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, outcome


def test_a_member_already_in_returns_at_once() -> None:
    sets = MemberSets("up")
    sets.mark("up", "p1", True)
    sets.wait("up", "p1", timeout=0.0)


def test_a_waiter_wakes_for_its_own_name_only() -> None:
    sets = MemberSets("up", "installed")
    waiter, outcome = _waiting(sets, "up", "p1")
    sets.mark("up", "p2", True)  # another port
    sets.mark("installed", "p1", True)  # the same name, another set
    sets.mark("up", "p1", False)  # a change that does not put it in
    time.sleep(0.1)
    assert waiter.is_alive()
    sets.mark("up", "p1", True)
    waiter.join(5)
    assert not waiter.is_alive() and outcome == [None]


def test_every_waiter_of_a_name_wakes() -> None:
    sets = MemberSets("up")
    waiters = [_waiting(sets, "up", "p1") for _ in range(3)]
    time.sleep(0.05)
    sets.mark("up", "p1", True)
    for waiter, outcome in waiters:
        waiter.join(5)
        assert outcome == [None]


def test_a_name_that_left_again_is_waited_for_again() -> None:
    sets = MemberSets("up")
    sets.mark("up", "p1", True)
    sets.mark("up", "p1", False)
    with pytest.raises(TimeoutError, match="p1 not up"):
        sets.wait("up", "p1", timeout=0.05)


def test_a_timed_out_waiter_leaves_nothing_behind() -> None:
    sets = MemberSets("up")
    with pytest.raises(TimeoutError):
        sets.wait("up", "p1", timeout=0.05)
    assert sets._waiters == {}
