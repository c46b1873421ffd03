"""Steps of `lab up` (and of a DPU's reboot): run in order, or side by side where they
say what they need, each timed.

A step with `needs=None` waits for every step listed before it (a plain sequence); one
with a tuple of keys waits for those only, so the steps of different host/DPU pairs
overlap. At most `workers` steps run at once; after a failure no new step starts, the
running ones finish and the first error is raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

StepReporter = Callable[[str, float | None], None]
DEFAULT_WORKERS = 4


@dataclass(frozen=True)
class Step:
    """One step, shown to the user as it runs. `key`: the name later steps' `needs` use
    (default: the title); `needs`: the keys it waits for, None for every earlier step;
    `pair`: the host/DPU pair it belongs to (its host's name), for per-pair times."""

    title: str
    action: Callable[[], None]
    key: str = ""
    needs: tuple[str, ...] | None = None
    pair: str | None = None

    @property
    def name(self) -> str:
        """The key, or the title without one."""
        return self.key or self.title


@dataclass(frozen=True)
class StepTime:
    """When one step ran, in seconds from the start of the run."""

    title: str
    pair: str | None
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """How long it took."""
        return self.end - self.start


def dependencies(steps: Sequence[Step]) -> dict[str, set[str]]:
    """Each step's keys it waits for; ValueError on a duplicate key, a need that no
    earlier step provides (which also rules out cycles)."""
    seen: list[str] = []
    out: dict[str, set[str]] = {}
    for step in steps:
        if step.name in out:
            raise ValueError(f"two steps named {step.name!r}")
        if step.needs is None:
            out[step.name] = set(seen)
        else:
            unknown = [n for n in step.needs if n not in out]
            if unknown:
                raise ValueError(f"step {step.name!r} needs unknown or later steps {unknown}")
            out[step.name] = set(step.needs)
        seen.append(step.name)
    return out


def run_steps(
    steps: Sequence[Step], report: StepReporter, workers: int = DEFAULT_WORKERS
) -> list[StepTime]:
    """Run `steps` as their needs allow, reporting each as it starts (elapsed None) and
    when it is done; returns their times in the order they finished."""
    needs = dependencies(steps)
    pending = list(steps)
    done: set[str] = set()
    times: list[StepTime] = []
    lock = threading.Lock()
    origin = time.monotonic()
    error: BaseException | None = None

    def timed(step: Step) -> None:
        report(step.title, None)
        started = time.monotonic()
        step.action()
        ended = time.monotonic()
        report(step.title, ended - started)
        with lock:
            times.append(StepTime(step.title, step.pair, started - origin, ended - origin))

    running: dict[Future[Any], Step] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="lab-step") as pool:
        try:
            while pending or running:
                if error is None:
                    for step in [s for s in pending if needs[s.name] <= done]:
                        if len(running) >= max(1, workers):
                            break
                        pending.remove(step)
                        running[pool.submit(timed, step)] = step
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    step = running.pop(future)
                    exc = future.exception()
                    if exc is None:
                        done.add(step.name)
                    elif error is None:
                        error = exc
        except BaseException:
            for future in running:
                future.cancel()
            raise
    if error is not None:
        raise error
    return times


def pair_times(times: Sequence[StepTime]) -> dict[str, dict[str, float]]:
    """Per pair: `busy_s`, the seconds its own steps took, and `ready_s`, when its last
    step ended (seconds from the start of the run)."""
    out: dict[str, dict[str, float]] = {}
    for t in times:
        if t.pair is None:
            continue
        entry = out.setdefault(t.pair, {"busy_s": 0.0, "ready_s": 0.0})
        entry["busy_s"] += t.seconds
        entry["ready_s"] = max(entry["ready_s"], t.end)
    return {k: {m: round(v, 3) for m, v in e.items()} for k, e in sorted(out.items())}


def timing_record(times: Sequence[StepTime], workers: int) -> dict[str, Any]:
    """What `lab up` keeps of its times (lab.json's `up`): total, per pair, per step."""
    return {
        "total_s": round(max((t.end for t in times), default=0.0), 3),
        "workers": workers,
        "pairs": pair_times(times),
        "steps": [
            {
                "title": t.title,
                "pair": t.pair,
                "start_s": round(t.start, 3),
                "seconds": round(t.seconds, 3),
            }
            for t in sorted(times, key=lambda t: t.start)
        ],
    }
