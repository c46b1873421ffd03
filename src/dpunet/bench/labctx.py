"""The lab a benchmark runs in: an existing one (left as found) or one brought up for the
run and always taken down again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from dpunet.bench import DEFAULT_BENCH_LAB, DEFAULT_BENCH_VFS
from dpunet.lab.lab import Lab, down, load_plan
from dpunet.lab.topology import LabPlan, LabSpec


@contextlib.contextmanager
def bench_lab(
    existing: str | None,
    name: str = DEFAULT_BENCH_LAB,
    vfs: int = DEFAULT_BENCH_VFS,
    say: Callable[[str], None] = lambda _: None,
    hosts: int = 1,
) -> Iterator[LabPlan]:
    """`existing` lab's plan, or a new lab `name` with `hosts` pairs of `vfs` VFs,
    downed on exit."""
    if existing is not None:
        yield load_plan(existing)
        return
    plan = LabPlan(LabSpec(name=name, hosts=hosts, vfs=vfs, total_vfs=max(16, vfs)))
    say(f"bringing up lab {name} ({hosts} pair(s), {vfs} VFs each)")
    try:
        Lab(plan).up(lambda title, elapsed: None)
        yield plan
    finally:
        say(f"taking lab {name} down")
        down(name)
