"""The step runner of `lab up`: order, overlap, failures, per-pair times."""

from __future__ import annotations

import threading
import time

import pytest

from dpunet.lab.steps import (
    Step,
    StepReporter,
    StepTime,
    dependencies,
    pair_times,
    run_steps,
    timing_record,
)


def _recorder() -> tuple[list[str], StepReporter]:
    events: list[str] = []
    lock = threading.Lock()

    def report(title: str, elapsed: float | None) -> None:
        with lock:
            events.append(f"{'start' if elapsed is None else 'end'} {title}")

    return events, report


def test_steps_without_needs_run_in_order_one_at_a_time() -> None:
    events, report = _recorder()
    steps = [Step(t, lambda: time.sleep(0.01)) for t in "abc"]
    times = run_steps(steps, report, workers=4)
    assert events == ["start a", "end a", "start b", "end b", "start c", "end c"]
    assert [t.title for t in times] == ["a", "b", "c"]


def test_independent_chains_overlap_and_respect_their_needs() -> None:
    both_running = threading.Barrier(2, timeout=5)
    order: list[str] = []

    def first(name: str) -> None:
        both_running.wait()  # fails (BrokenBarrierError) unless the two run at once
        order.append(name)

    steps = [
        Step("root", lambda: order.append("root"), needs=()),
        Step("p1 a", lambda: first("p1 a"), key="p1a", needs=("root",), pair="h1"),
        Step("p2 a", lambda: first("p2 a"), key="p2a", needs=("root",), pair="h2"),
        Step("p1 b", lambda: order.append("p1 b"), needs=("p1a",), pair="h1"),
        Step("p2 b", lambda: order.append("p2 b"), needs=("p2a",), pair="h2"),
    ]
    times = run_steps(steps, lambda *_: None, workers=2)
    assert order[0] == "root"
    assert order.index("p1 b") > order.index("p1 a") and order.index("p2 b") > order.index("p2 a")
    assert set(pair_times(times)) == {"h1", "h2"}


def test_workers_bound_how_many_run_at_once() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    run_steps([Step(str(i), work, needs=()) for i in range(6)], lambda *_: None, workers=2)
    assert peak[0] == 2


def test_a_failure_starts_nothing_new_and_raises_the_first_error() -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    steps = [
        Step("ok", lambda: ran.append("ok"), needs=()),
        Step("bad", boom, needs=("ok",)),
        Step("after", lambda: ran.append("after"), needs=("bad",)),
        Step("last", lambda: ran.append("last")),  # after every earlier step
    ]
    with pytest.raises(RuntimeError, match="boom"):
        run_steps(steps, lambda *_: None, workers=4)
    assert ran == ["ok"]


def test_dependencies_refuse_unknown_later_and_duplicate_names() -> None:
    noop = lambda: None  # noqa: E731
    with pytest.raises(ValueError, match="unknown or later"):
        dependencies([Step("a", noop, needs=("b",)), Step("b", noop)])
    with pytest.raises(ValueError, match="two steps named 'a'"):
        dependencies([Step("a", noop), Step("x", noop, key="a")])
    assert dependencies([Step("a", noop), Step("b", noop), Step("c", noop, needs=("a",))]) == {
        "a": set(),
        "b": {"a"},
        "c": {"a"},
    }


def test_pair_times_sum_a_pairs_steps_and_take_its_last_end() -> None:
    times = [
        StepTime("shared", None, 0.0, 1.0),
        StepTime("h1 a", "host1", 1.0, 3.0),
        StepTime("h2 a", "host2", 1.0, 2.0),
        StepTime("h1 b", "host1", 4.0, 4.5),
    ]
    assert pair_times(times) == {
        "host1": {"busy_s": 2.5, "ready_s": 4.5},
        "host2": {"busy_s": 1.0, "ready_s": 2.0},
    }
    record = timing_record(times, 4)
    assert record["total_s"] == 4.5 and record["workers"] == 4
    assert [s["title"] for s in record["steps"]] == ["shared", "h1 a", "h2 a", "h1 b"]
