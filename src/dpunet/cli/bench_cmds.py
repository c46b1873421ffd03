"""`dpunet bench ...`: benchmarks in the emulated lab, each against its floor or peer.

Every command writes `<out-dir>/<bench>.json` and `<out-dir>/<bench>.png` and prints a
table with the targets of issue 7. Without `--lab` a lab is brought up for the run (and
always taken down); with `--lab NAME` an existing lab is used and left as found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from dpunet.bench import DEFAULT_BENCH_LAB, DEFAULT_BENCH_VFS
from dpunet.bench.results import TARGETS, envelope, write_json
from dpunet.cli.output import console, emit_data, err_console, fail, output_option, table

if TYPE_CHECKING:
    from dpunet.lab.topology import LabPlan

# The benchmark modules are imported by the commands that use them: every `dpunet`
# invocation (the daemons included) imports this module.

DEFAULT_OUT_DIR = Path("bench-results")


def _say(message: str) -> None:
    err_console.print(f"[dim]{escape(message)}[/]")


def lab_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--lab, --name, --vfs, --out-dir and -o."""

    @click.option("--lab", default=None, help="Run in this existing lab (left as found).")
    @click.option(
        "--name",
        default=DEFAULT_BENCH_LAB,
        show_default=True,
        help="Name of the lab brought up for the run when --lab is not given.",
    )
    @click.option(
        "--vfs",
        default=DEFAULT_BENCH_VFS,
        show_default=True,
        help="VFs of the lab brought up for the run.",
    )
    @out_options
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


def out_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--out-dir and -o."""

    @click.option(
        "--out-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_OUT_DIR,
        show_default=True,
        help="Where the JSON and PNG go.",
    )
    @output_option()
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@contextmanager
def _lab(lab: str | None, name: str, vfs: int, hosts: int = 1) -> Iterator[LabPlan]:
    from dpunet.bench.labctx import bench_lab
    from dpunet.contract.client import ClientError
    from dpunet.lab.runner import LabError

    try:
        with bench_lab(lab, name, vfs, _say, hosts) as plan:
            yield plan
    except (LabError, ClientError) as exc:
        fail(escape(str(exc)))


def _finish(
    bench: str, params: dict[str, Any], results: dict[str, Any], out_dir: Path, output: str,
    plot: Callable[[dict[str, Any], Path], Path], rows: list[tuple[str, Any, Any, Any]],
) -> None:  # fmt: skip
    doc = envelope(bench, params, results)
    path = write_json(out_dir, bench, doc)
    png = plot(results, out_dir / f"{bench}.png")
    if emit_data(doc, output):
        return
    console.print(
        table(
            f"bench {bench}",
            ["measure", "value", "target", "met"],
            [(m, _fmt(v), "" if t is None else _fmt(t), _met(ok)) for m, v, t, ok in rows],
        )
    )
    console.print(f"results: {path}, plot: {png}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return "-" if value is None else str(value)


def _met(ok: Any) -> str:
    if ok is None:
        return ""
    return "[green]yes[/]" if ok else "[red]no[/]"


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


@click.group()
def bench() -> None:
    """Benchmarks in the emulated lab: dpunet against its floor, with plots."""


# ----------------------------------------------------------------- pod-setup
@bench.command("pod-setup")
@lab_options
@click.option("--pods", type=int, default=None, help="Pods per round (default: every free VF).")
@click.option("--concurrency", default=1, show_default=True, help="ADDs in flight at once.")
@click.option("--rounds", default=3, show_default=True, help="Rounds (pods added, then deleted).")
@click.option(
    "--burst/--no-burst",
    default=True,
    show_default=True,
    help="Also a burst: every free VF at once (of the first pair, and with more than one "
    "pair of every pair).",
)
@click.option("--floor/--no-floor", default=True, show_default=True, help="Also the raw floor.")
@click.option(
    "--hosts",
    default=1,
    show_default=True,
    help="Host/DPU pairs of the lab brought up for the run.",
)
def pod_setup_cmd(
    lab: str | None, name: str, vfs: int, out_dir: Path, output: str, pods: int | None,
    concurrency: int, rounds: int, burst: bool, floor: bool, hosts: int,
) -> None:  # fmt: skip
    """CNI ADD -> the container reaches its gateway: dpunet vs the raw floor (the runs on
    the first pair; with --burst and more than one pair, also every VF of every pair at
    once)."""
    from dpunet.bench import plots, podsetup
    from dpunet.lab.lab import up_times

    with _lab(lab, name, vfs, hosts) as plan:
        free = len(podsetup.free_vfs(plan, plan.pairs[0]))
        n = min(pods or free, free)
        if n < 1:
            fail("no free VF in the lab")
        settings = [(n, concurrency)]
        if burst and (n, concurrency) != (free, free):
            settings.append((free, free))
        runs = []
        for count, conc in settings:
            _say(f"pod-setup: {count} pods, concurrency {conc}, {rounds} rounds")
            runs.append(podsetup.run_mode(plan, count, conc, rounds, floor, _say))
        if burst and len(plan.pairs) > 1:
            _say(
                f"pod-setup: every free VF of the {len(plan.pairs)} pairs at once, {rounds} rounds"
            )
            runs.append(podsetup.run_all_pairs_burst(plan, rounds, floor, _say))
        results: dict[str, Any] = {
            "runs": runs,
            "sysfs_discovery_ms": podsetup.sysfs_discovery_ms(plan, plan.pairs[0]),
            "lab_up": up_times(plan.name),
        }
    first, last = runs[0], runs[-1]
    if "pairs" in last:  # the all-pairs burst; the first pair's burst before it
        last = runs[-2]
    rows: list[tuple[str, Any, Any, Any]] = [
        (f"dpunet median ms ({first['pods']} pods, c={first['concurrency']})",
         first["dpunet"]["ready_ms"].get("median"), None, None),
        ("floor median ms", first.get("floor", {}).get("ready_ms", {}).get("median"), None, None),
        ("floor (SB up) median ms",
         first.get("floor_sb", {}).get("ready_ms", {}).get("median"), None, None),
        ("median ratio dpunet/floor", first.get("ratio_median"),
         TARGETS["pod_setup_median_ratio_max"],
         _le(first.get("ratio_median"), TARGETS["pod_setup_median_ratio_max"])),
        (f"burst p99 ms ({last['pods']} pods at once)", last["dpunet"]["ready_ms"].get("p99"),
         TARGETS["pod_setup_burst_p99_ms_max"],
         _le(last["dpunet"]["ready_ms"].get("p99"), TARGETS["pod_setup_burst_p99_ms_max"])),
        ("burst pods/s (dpunet)", last["dpunet"].get("pods_per_s"), None, None),
        ("median ratio dpunet/floor (SB up)", first.get("ratio_median_floor_sb"), None, None),
        ("burst p99 ms, floor / floor (SB up)",
         f"{_fmt(last.get('floor', {}).get('ready_ms', {}).get('p99'))} / "
         f"{_fmt(last.get('floor_sb', {}).get('ready_ms', {}).get('p99'))}", None, None),
        ("burst pods/s (floor)", last.get("floor", {}).get("pods_per_s"), None, None),
    ]  # fmt: skip
    if "pairs" in runs[-1]:
        rows += _all_pairs_rows(runs[-1], results["lab_up"])
    params = {"lab": lab or name, "vfs": vfs, "pods": n, "concurrency": concurrency,
              "rounds": rounds, "burst": burst, "floor": floor,
              "hosts": len(plan.pairs)}  # fmt: skip
    # a lab of several pairs has a file of its own (its first runs are on 1 pair of many)
    bench_name = "pod-setup" if len(plan.pairs) == 1 else "pod-setup-pairs"
    _finish(bench_name, params, results, out_dir, output, plots.plot_pod_setup, rows)


def _all_pairs_rows(
    run: dict[str, Any], lab_up: dict[str, Any] | None
) -> list[tuple[str, Any, Any, Any]]:
    """The table's rows of the all-pairs burst, and the lab's time to come up per pair."""
    d, f = run["dpunet"]["ready_ms"], run.get("floor", {}).get("ready_ms", {})
    rows: list[tuple[str, Any, Any, Any]] = [
        (f"all pairs: p50 / p99 ms ({run['pods']} pods on {len(run['pairs'])} pairs at once)",
         f"{_fmt(d.get('median'))} / {_fmt(d.get('p99'))}", None, None),
        ("all pairs: floor p50 / p99 ms", f"{_fmt(f.get('median'))} / {_fmt(f.get('p99'))}",
         None, None),
        ("all pairs: p99 ratio dpunet/floor", run.get("ratio_p99"), None, None),
        ("all pairs: pods/s dpunet / floor",
         f"{_fmt(run['dpunet'].get('pods_per_s'))} / "
         f"{_fmt(run.get('floor', {}).get('pods_per_s'))}", None, None),
    ]  # fmt: skip
    for host, per in run["per_pair"].items():
        mine = per["dpunet"]["ready_ms"]
        rows.append(
            (f"  {host}: p50 / p99 ms, pods/s",
             f"{_fmt(mine.get('median'))} / {_fmt(mine.get('p99'))}, "
             f"{_fmt(per['dpunet'].get('pods_per_s'))}", None, None)
        )  # fmt: skip
    if lab_up is not None:
        pairs = ", ".join(f"{h} {t['busy_s']:.1f}" for h, t in lab_up["pairs"].items())
        rows.append((f"lab up s (total {lab_up['total_s']:.1f}), per pair", pairs, None, None))
    return rows


# -------------------------------------------------------------------- podman
@bench.command("podman")
@lab_options
@click.option("--repeat", default=10, show_default=True, help="Runs of each network.")
def podman_cmd(
    lab: str | None, name: str, vfs: int, out_dir: Path, output: str, repeat: int
) -> None:
    """A podman container's network life (netns, CNI ADD, `podman run --rm --network
    ns:PATH`, CNI DEL) with dpunet's CNI vs host-device + static on the same VFs."""
    from dpunet.bench import plots
    from dpunet.bench import podman as podman_bench

    with _lab(lab, name, vfs) as plan:
        results = podman_bench.run(plan, repeat, _say)
    params = {"lab": lab or name, "vfs": vfs, "repeat": repeat}
    _finish_versus_host_device(
        "podman", results["podman"], params, results, out_dir, output, plots.plot_podman
    )


def _finish_versus_host_device(
    bench_name: str, runtime: str, params: dict[str, Any], results: dict[str, Any],
    out_dir: Path, output: str, plot: Callable[[dict[str, Any], Path], Path],
) -> None:  # fmt: skip
    """`_finish` of a runtime benchmark: dpunet's and host-device's medians, their ratio."""
    _say(f"path measured ({runtime}): {results['path']}")
    rows = [
        ("dpunet median ms", results["dpunet_ms"].get("median"), None, None),
        ("host-device median ms", results["host_device_ms"].get("median"), None, None),
        ("ratio", results["ratio_median"], None, None),
    ]
    _finish(bench_name, params, results, out_dir, output, plot, rows)


# ----------------------------------------------------------------------- cri
@bench.command("cri")
@lab_options
@click.option("--repeat", default=10, show_default=True, help="Runs of each network.")
def cri_cmd(lab: str | None, name: str, vfs: int, out_dir: Path, output: str, repeat: int) -> None:
    """A pod sandbox's network life through containerd's CRI (RunPodSandbox,
    StopPodSandbox, RemovePodSandbox) with dpunet's CNI vs host-device + static on the
    same VFs."""
    from dpunet.bench import cri as cri_bench
    from dpunet.bench import plots

    with _lab(lab, name, vfs) as plan:
        results = cri_bench.run(plan, repeat, _say)
    params = {"lab": lab or name, "vfs": vfs, "repeat": repeat}
    _finish_versus_host_device(
        "cri", results["containerd"], params, results, out_dir, output, plots.plot_cri
    )


# ---------------------------------------------------------------------- shim
@bench.command("shim")
@out_options
@click.option("--repeat", default=100, show_default=True, help="Runs of each command.")
def shim_cmd(out_dir: Path, output: str, repeat: int) -> None:
    """`dpunet-cni VERSION` vs a bare interpreter start vs the Go reference plugin."""
    from dpunet.bench import plots
    from dpunet.bench import shim as shim_bench

    try:
        results = shim_bench.run(repeat, _say)
    except (RuntimeError, OSError) as exc:
        fail(escape(str(exc)))
    s = results["summaries_ms"]
    rows: list[tuple[str, Any, Any, Any]] = [
        (f"{label} median ms (p95)", f"{v['median']:.1f} ({v['p95']:.1f})", None, None)
        for label, v in s.items()
    ]
    rows.append(
        ("dpunet-cni / bare python3", results["ratio_vs_bare_python"], TARGETS["shim_ratio_max"],
         _le(results["ratio_vs_bare_python"], TARGETS["shim_ratio_max"]))
    )  # fmt: skip
    rows.append(("dpunet-cni / Go plugin", results["ratio_vs_go_plugin"], None, None))
    _finish("shim", {"repeat": repeat}, results, out_dir, output, plots.plot_shim, rows)


# ---------------------------------------------------------------- controller
def _levels(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        levels = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise click.BadParameter("a comma-separated list of port counts, e.g. 1000,5000") from None
    if not levels or levels[0] < 0:
        raise click.BadParameter("at least one non-negative port count")
    return levels


@bench.command("controller")
@lab_options
@click.option(
    "--ports",
    default="1000",
    show_default=True,
    callback=_levels,
    help="Existing-port levels to measure at, comma-separated (e.g. 1000,5000,10000).",
)
@click.option("--sample", default=200, show_default=True, help="Timed PUTs per level.")
@click.option("--concurrency", default=8, show_default=True, help="PUTs in flight at once.")
def controller_cmd(
    lab: str | None, name: str, vfs: int, out_dir: Path, output: str, ports: list[int],
    sample: int, concurrency: int,
) -> None:  # fmt: skip
    """Port PUT throughput/latency at N existing ports vs one raw NB transaction per port."""
    from dpunet.bench import controller as controller_bench
    from dpunet.bench import plots

    with _lab(lab, name, vfs) as plan:
        results = controller_bench.run(plan, ports, sample, concurrency, _say)
    target = TARGETS["controller_ports_per_s_at_10k_min"]
    rows: list[tuple[str, Any, Any, Any]] = []
    for lv in results["levels"]:
        n = lv["existing_ports"]
        if "error" in lv:
            met = False if n >= 10000 else None
            rows.append((f"{n}: not measured", lv["error"], target if n >= 10000 else None, met))
            continue
        rate = lv["put_ports_per_s"]
        put, floor = lv["put_ms"], lv["floor"]
        at_10k = n >= 10000
        rows += [
            (f"{n}: PUT median / p99 ms", f"{put['median']:.0f} / {put['p99']:.0f}", None, None),
            (
                f"{n}: PUT ports/s",
                rate,
                target if at_10k else None,
                rate >= target if at_10k else None,
            ),
            (
                f"{n}: raw txn commit / to-up median ms",
                f"{floor['commit_ms']['median']:.1f} / {floor['up_ms']['median']:.0f}",
                None,
                None,
            ),
            (f"{n}: raw txn ports/s (to up)", floor["ports_per_s"], None, None),
            (
                f"{n}: raw txn to SB up median ms / ports/s",
                f"{lv['floor_sb']['up_ms']['median']:.0f} / {lv['floor_sb']['ports_per_s']:.1f}",
                None,
                None,
            ),
            (
                f"{n}: PUT retries (5xx or no answer)",
                lv["put_503_retries"],
                None,
                None,
            ),
        ]
    params = {"lab": lab or name, "levels": ports, "sample": sample, "concurrency": concurrency}
    _finish(
        "controller", params, results, out_dir, output,
        lambda r, p: plots.plot_controller(r, p, target), rows,
    )  # fmt: skip


# -------------------------------------------------------------------- policy
@bench.command("policy")
@lab_options
@click.option("--pods", default=1000, show_default=True, help="Pods (ports in NB).")
@click.option("--policies", default=100, show_default=True, help="NetworkPolicies applied.")
@click.option("--sample", default=20, show_default=True, help="Timed pod adds per case.")
@click.option("--concurrency", default=4, show_default=True, help="Policy PUTs in flight.")
def policy_cmd(
    lab: str | None, name: str, vfs: int, out_dir: Path, output: str, pods: int,
    policies: int, sample: int, concurrency: int,
) -> None:  # fmt: skip
    """NetworkPolicy apply to enforced at N policies x M pods, and a pod add's cost with
    the policies in place, each vs the same OVN objects written raw."""
    from dpunet.bench import plots
    from dpunet.bench import policy as policy_bench

    if min(pods, policies, sample, concurrency) < 1:
        fail("--pods, --policies, --sample and --concurrency must be at least 1")
    with _lab(lab, name, vfs) as plan:
        results = policy_bench.run(plan, pods, policies, sample, concurrency, _say)
    apply, floor = results["apply"], results["floor_apply"]
    add, add0, add_floor = (
        results["pod_add_with_policies"],
        results["pod_add_no_policy"],
        results["floor_pod_add"],
    )
    rows: list[tuple[str, Any, Any, Any]] = [
        ("objects (port groups / address sets / ACLs)",
         "{port_groups} / {address_sets} / {acls}".format(**results["objects"]), None, None),
        ("apply: API s / enforced s", f"{apply['api_s']:.2f} / {apply['enforced_s']:.2f}",
         None, None),
        ("floor apply: commit s / enforced s",
         f"{floor['commit_s']:.2f} / {floor['enforced_s']:.2f}", None, None),
        ("apply vs floor (enforced)", results["ratio_apply_vs_floor"], None, None),
        ("pod add, no policy: up / enforced median ms",
         f"{add0['up_ms']['median']:.0f} / {add0['enforced_ms']['median']:.0f}", None, None),
        ("pod add with policies: up / in groups / enforced median ms",
         f"{add['up_ms']['median']:.0f} / {add['in_port_groups_ms']['median']:.0f} / "
         f"{add['enforced_ms']['median']:.0f}", None, None),
        ("floor pod add: commit / up / enforced median ms",
         f"{add_floor['commit_ms']['median']:.1f} / {add_floor['up_ms']['median']:.0f} / "
         f"{add_floor['enforced_ms']['median']:.0f}", None, None),
        ("pod add vs floor (enforced)", results["ratio_pod_add_vs_floor"], None, None),
    ]  # fmt: skip
    params = {"lab": lab or name, "pods": pods, "policies": policies, "sample": sample,
              "concurrency": concurrency}  # fmt: skip
    _finish("policy", params, results, out_dir, output, plots.plot_policy, rows)


# -------------------------------------------------------------------- memory
@bench.command("memory")
@lab_options
@click.option(
    "--cycles", default=0, show_default=True, type=click.IntRange(min=0),
    help="Then this many pod add/delete cycles, one pod at a time, RSS recorded along.",
)  # fmt: skip
@click.option(
    "--every", default=100, show_default=True, type=click.IntRange(min=1),
    help="Record the daemons' RSS after every this many cycles.",
)  # fmt: skip
def memory_cmd(
    lab: str | None, name: str, vfs: int, out_dir: Path, output: str, cycles: int, every: int
) -> None:
    """Steady-state RSS of each daemon, idle and with every VF in use; with --cycles, its
    growth over pod add/delete cycles."""
    from dpunet.bench import memory as memory_bench
    from dpunet.bench import plots

    with _lab(lab, name, vfs) as plan:
        results = memory_bench.run(plan, _say, cycles, every)
    target = TARGETS["dpu_agent_rss_mb_max"]
    rows: list[tuple[str, Any, Any, Any]] = []
    for daemon, idle in results["idle"].items():
        if not idle["dpunet"]:
            continue
        loaded = results["all_vfs_in_use"].get(daemon, {}).get("rss_mb")
        is_dpu = daemon.endswith("/dpunet-dpu")
        worst = max(v for v in (idle["rss_mb"], loaded) if v is not None)
        value = f"{idle['rss_mb']:.1f} / " + (f"{loaded:.1f}" if loaded is not None else "-")
        label = f"{daemon} RSS MiB idle / {results['pods']} VFs in use"
        rows.append((label, value, target if is_dpu else None, worst <= target if is_dpu else None))
    if "cycles" in results:
        run = results["cycles"]
        for daemon, grown in run["growth_vs_idle_mb"].items():
            is_dpu = daemon.endswith("/dpunet-dpu")
            limit = TARGETS["dpu_agent_rss_growth_mb_max"] if is_dpu else None
            met = grown <= limit if is_dpu and grown is not None and limit is not None else None
            label = f"{daemon} RSS growth MiB after {run['cycles']} cycles (vs idle)"
            rows.append((label, f"{grown:+.1f}" if grown is not None else "-", limit, met))
    params = {"lab": lab or name, "vfs": vfs, "cycles": cycles, "every": every}
    _finish(
        "memory", params, results, out_dir, output,
        lambda r, p: plots.plot_memory(r, p, target), rows,
    )  # fmt: skip


if __name__ == "__main__":
    bench()
