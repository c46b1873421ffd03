"""PNG plots of the benchmark results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DPUNET_COLOR = "#2563eb"
FLOOR_COLOR = "#9ca3af"
SB_FLOOR_COLOR = "#4b5563"
TARGET_COLOR = "#dc2626"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write and release a figure; returns `path`."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ecdf(ax: Any, values: Sequence[float], label: str, color: str, style: str = "-") -> None:
    ordered = sorted(values)
    if not ordered:
        return
    ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
    ax.step(ordered, ys, where="post", label=label, color=color, linestyle=style)


def pod_setup_phases(
    run: dict[str, Any],
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(dpunet, floor) mean time per phase in ms, in order, from one run's results."""
    phases = run.get("phases_mean_s", {})
    host = {
        k.split(":", 1)[1]: v["mean"]
        for k, v in phases.get("host_agent", {}).items()
        if k.startswith("ADD:") and v["mean"] is not None
    }
    ctl = {k: v["mean"] for k, v in phases.get("controller", {}).items() if v["mean"] is not None}
    add = run["dpunet"]["add_ms"].get("mean")
    ready = run["dpunet"]["ready_ms"].get("mean")
    dpunet: list[tuple[str, float]] = []
    if add is not None and "total" in host:
        dpunet.append(("shim + CNI server", max(add - host["total"] * 1000, 0.0)))
    dpunet.append(("claim (VF discovery)", host.get("claim", 0.0) * 1000))
    dpunet.append(("prepare", host.get("prepare", 0.0) * 1000))
    controller = host.get("controller", 0.0) * 1000
    if ctl:
        for key, label in (
            ("allocate", "ctl allocate"),
            ("nb_write", "ctl NB write"),
            ("wait_up", "ctl wait up (DPU plug + OVN)"),
        ):
            dpunet.append((label, ctl.get(key, 0.0) * 1000))
        dpunet.append(("HTTP + rest", max(controller - ctl.get("total", 0.0) * 1000, 0.0)))
    else:
        dpunet.append(("controller", controller))
    dpunet.append(("plug VF into pod", host.get("plug", 0.0) * 1000))
    if ready is not None and add is not None:
        dpunet.append(("until gateway answers", max(ready - add, 0.0)))
    floor_steps = run.get("floor", {}).get("steps_mean_ms", {})
    floor = [(k.replace("_", " "), v) for k, v in floor_steps.items()]
    return dpunet, floor


def plot_pod_setup(results: dict[str, Any], path: Path) -> Path:
    """ECDFs of pod-ready latency per run, and the phase split of the first run."""
    plt = _pyplot()
    runs = results["runs"]
    pairs = runs[-1] if "per_pair" in runs[-1] else None
    if pairs is None:
        fig, (ax1, ax2) = plt.subplots(
            1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [1.1, 1]}
        )
    else:
        fig, (ax1, ax2, ax3) = plt.subplots(
            1, 3, figsize=(21, 5), gridspec_kw={"width_ratios": [1.1, 1, 0.8]}
        )
        _per_pair(ax3, pairs, results.get("lab_up"))
    styles = ["-", "--", ":", "-."]
    for i, run in enumerate(runs):
        style = styles[i % len(styles)]
        label = f"{run['pods']} pods, concurrency {run['concurrency']}"
        if "pairs" in run:
            label += f", {len(run['pairs'])} pairs"
        _ecdf(ax1, run["dpunet"]["samples_ms"], f"dpunet ({label})", DPUNET_COLOR, style)
        if "floor" in run:
            _ecdf(ax1, run["floor"]["samples_ms"], f"floor ({label})", FLOOR_COLOR, style)
        if "floor_sb" in run:
            _ecdf(
                ax1, run["floor_sb"]["samples_ms"], f"floor, SB up ({label})", SB_FLOOR_COLOR, style
            )
    ax1.set_xscale("log")
    ax1.set_xlabel("CNI ADD -> gateway answers (ms, log)")
    ax1.set_ylabel("fraction of pods")
    ax1.set_title("pod setup latency")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=7)

    dpunet, floor = pod_setup_phases(runs[0])
    rows = [("dpunet", dpunet), ("floor", floor)] if floor else [("dpunet", dpunet)]
    cmap = plt.get_cmap("tab20")
    color_index = 0
    for y, (name, parts) in enumerate(rows):
        left = 0.0
        for label, value in parts:
            ax2.barh(y, value, left=left, color=cmap(color_index % 20), label=f"{name}: {label}")
            left += value
            color_index += 1
    ax2.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax2.set_xlabel("mean ms")
    ax2.set_title(
        f"where the time goes ({runs[0]['pods']} pods, concurrency {runs[0]['concurrency']})"
    )
    ax2.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(plt, fig, path)


def _per_pair(ax: Any, run: dict[str, Any], lab_up: dict[str, Any] | None) -> None:
    """p50 (bar) and p99 (tick) per pair of the all-pairs burst, dpunet beside its
    floor; each pair's `lab up` time in its label."""
    hosts = list(run["per_pair"])
    modes = [(m, c) for m, c in (("dpunet", DPUNET_COLOR), ("floor", FLOOR_COLOR))
             if all(m in run["per_pair"][h] for h in hosts)]  # fmt: skip
    width = 0.8 / max(len(modes), 1)
    for k, (mode, color) in enumerate(modes):
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(hosts))]
        stats = [run["per_pair"][h][mode]["ready_ms"] for h in hosts]
        ax.bar(xs, [st.get("median", 0.0) for st in stats], width, color=color,
               label=f"{mode} p50")  # fmt: skip
        ax.scatter(xs, [st.get("p99", 0.0) for st in stats], color=color, marker="_", s=300,
                   linewidths=3, label=f"{mode} p99")  # fmt: skip
    up = (lab_up or {}).get("pairs", {})
    labels = [f"{h}\nup {up[h]['busy_s']:.1f}s" if h in up else h for h in hosts]
    ax.set_xticks(range(len(hosts)), labels, fontsize=8)
    ax.set_ylabel("CNI ADD -> gateway answers (ms)")
    ax.set_title(f"per pair, {run['pods']} pods on {len(hosts)} pairs at once")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def _box(ax: Any, data: dict[str, list[float]], title: str, ylabel: str) -> None:
    labels = list(data)
    ax.boxplot([data[k] for k in labels], showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)


def _plot_versus_host_device(results: dict[str, Any], path: Path, title: str) -> Path:
    """Box plot of a runtime benchmark's wall times, dpunet's network vs host-device's."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    samples = results["samples_ms"]
    _box(
        ax,
        {"dpunet CNI": samples["dpunet"], "host-device + static": samples["hostdev"]},
        title,
        "ms",
    )
    return _save(plt, fig, path)


def plot_podman(results: dict[str, Any], path: Path) -> Path:
    """Box plot of `podman run --rm` wall times."""
    return _plot_versus_host_device(
        results, path, "podman container network life (netns, CNI ADD, run --rm, DEL)"
    )


def plot_cri(results: dict[str, Any], path: Path) -> Path:
    """Box plot of the CRI pod sandbox wall times."""
    return _plot_versus_host_device(
        results, path, "CRI pod sandbox network life (Run, Stop, Remove)"
    )


def plot_shim(results: dict[str, Any], path: Path) -> Path:
    """Box plot of the plugins' VERSION wall times."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    _box(ax, results["samples_ms"], "CNI plugin start-up (VERSION)", "ms")
    return _save(plt, fig, path)


def plot_controller(results: dict[str, Any], path: Path, target: float) -> Path:
    """PUT latency and throughput against the number of existing ports, with the floor."""
    plt = _pyplot()
    levels = [lv for lv in results["levels"] if "put_ms" in lv]  # not the failed ones
    xs = [lv["existing_ports"] for lv in levels]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.plot(
        xs, [lv["put_ms"]["median"] for lv in levels], "o-", color=DPUNET_COLOR, label="PUT median"
    )
    ax1.plot(xs, [lv["put_ms"]["p99"] for lv in levels], "o--", color=DPUNET_COLOR, label="PUT p99")
    ax1.plot(
        xs,
        [lv["floor"]["up_ms"]["median"] for lv in levels],
        "s-",
        color=FLOOR_COLOR,
        label="raw txn -> up, median",
    )
    if all("floor_sb" in lv for lv in levels):
        ax1.plot(
            xs,
            [lv["floor_sb"]["up_ms"]["median"] for lv in levels],
            "^-",
            color=SB_FLOOR_COLOR,
            label="raw txn -> SB up, median",
        )
    ax1.plot(
        xs,
        [lv["floor"]["commit_ms"]["median"] for lv in levels],
        "s:",
        color=FLOOR_COLOR,
        label="raw txn commit, median",
    )
    ax1.set_xlabel("existing ports")
    ax1.set_ylabel("ms")
    ax1.set_yscale("log")
    ax1.set_title("port PUT latency")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    ax2.plot(
        xs,
        [lv["put_ports_per_s"] for lv in levels],
        "o-",
        color=DPUNET_COLOR,
        label="dpunet PUT (to up)",
    )
    ax2.plot(
        xs,
        [lv["floor"]["ports_per_s"] for lv in levels],
        "s-",
        color=FLOOR_COLOR,
        label="raw txn (to up)",
    )
    if all("floor_sb" in lv for lv in levels):
        ax2.plot(
            xs,
            [lv["floor_sb"]["ports_per_s"] for lv in levels],
            "^-",
            color=SB_FLOOR_COLOR,
            label="raw txn (to SB up)",
        )
    ax2.axhline(target, color=TARGET_COLOR, linestyle="--", label=f"target {target:g}/s at 10k")
    ax2.set_xlabel("existing ports")
    ax2.set_ylabel("ports/s")
    ax2.set_title(f"throughput (concurrency {results['concurrency']})")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_memory(results: dict[str, Any], path: Path, target: float) -> Path:
    """RSS of the dpunet daemons idle vs with every VF in use."""
    plt = _pyplot()
    names = [n for n, v in results["idle"].items() if v["dpunet"]]
    idle = [results["idle"][n]["rss_mb"] or 0 for n in names]
    loaded = [results["all_vfs_in_use"].get(n, {}).get("rss_mb") or 0 for n in names]
    cycles = results.get("cycles")
    if cycles:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
        xs_cycles = [s["cycle"] for s in cycles["samples"]]
        for name in names:
            ys = [s["rss_mb"].get(name) for s in cycles["samples"]]
            ax2.plot(xs_cycles, ys, marker=".", label=name)
        ax2.set_xlabel("pod add/delete cycles")
        ax2.set_ylabel("RSS (MiB)")
        ax2.set_title("RSS over pod add/delete cycles")
        ax2.legend(fontsize=8)
        ax2.grid(True, alpha=0.3)
    else:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], idle, width=0.4, color=FLOOR_COLOR, label="idle")
    ax.bar(
        [x + 0.2 for x in xs],
        loaded,
        width=0.4,
        color=DPUNET_COLOR,
        label=f"{results['pods']} VFs in use",
    )
    ax.axhline(target, color=TARGET_COLOR, linestyle="--", label=f"DPU agent target {target:g} MB")
    ax.set_xticks(list(xs), names, fontsize=8)
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("dpunet daemon memory")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(plt, fig, path)


def plot_policy(results: dict[str, Any], path: Path) -> Path:
    """Policy apply (to the API's answers, northd, enforced) and pod add (to up, enforced),
    dpunet vs the raw floor."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    apply, floor = results["apply"], results["floor_apply"]
    stages = ["written", "northd", "enforced"]
    ours = [apply["api_s"], apply["northd_s"], apply["enforced_s"]]
    raw = [floor["commit_s"], floor["northd_s"], floor["enforced_s"]]
    xs = range(len(stages))
    ax1.bar([x - 0.2 for x in xs], ours, 0.4, color=DPUNET_COLOR, label="dpunet (API PUTs)")
    ax1.bar([x + 0.2 for x in xs], raw, 0.4, color=FLOOR_COLOR, label="raw, one transaction")
    ax1.set_xticks(list(xs), stages)
    ax1.set_yscale("log")
    ax1.set_ylabel("s from the first write (log)")
    ax1.set_title(f"{results['policies']} policies x {results['pods']} pods: apply")
    ax1.legend(fontsize=8)
    cases = [
        ("no policy", results["pod_add_no_policy"], DPUNET_COLOR, "o"),
        ("with policies", results["pod_add_with_policies"], DPUNET_COLOR, "s"),
        ("raw floor", results["floor_pod_add"], FLOOR_COLOR, "s"),
    ]
    for n, (_, case, color, marker) in enumerate(cases):
        for m, key in enumerate(("up_ms", "enforced_ms")):
            summary = case[key]
            if summary.get("n"):
                ax2.errorbar(
                    [n * 3 + m],
                    [summary["median"]],
                    yerr=[
                        [summary["median"] - summary["min"]],
                        [summary["p95"] - summary["median"]],
                    ],
                    fmt=marker,
                    color=color,
                    capsize=4,
                )
    ax2.set_xticks(
        [n * 3 + m for n in range(len(cases)) for m in range(2)],
        [f"{c[0]}\n{k}" for c in cases for k in ("up", "enforced")],
        fontsize=7,
    )
    ax2.set_ylabel("ms (median, min..p95)")
    ax2.set_title(f"pod add ({results['sample']} each)")
    ax2.grid(True, axis="y", alpha=0.3)
    return _save(plt, fig, path)
