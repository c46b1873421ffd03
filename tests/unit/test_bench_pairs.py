"""The multi-pair parts of `dpunet bench pod-setup`: which pod goes where, per-pair
summaries, the pairs' metrics added up."""

from __future__ import annotations

from pathlib import Path

from dpunet.bench import plots
from dpunet.bench.metrics import phase_means
from dpunet.bench.podsetup import PodSample, Scrapes, merge_scrapes, per_pair_summary, pod_jobs
from dpunet.lab.topology import LabPlan, LabSpec

PLAN = LabPlan(LabSpec(name="unit", hosts=3, vfs=4))
P1, P2, P3 = PLAN.pairs


def test_one_pair_keeps_the_single_pair_names() -> None:
    assert pod_jobs([(P1, 3)], "b", 2) == [(P1, 0, "b2x0"), (P1, 1, "b2x1"), (P1, 2, "b2x2")]


def test_pairs_are_interleaved_with_names_unique_across_pairs() -> None:
    jobs = pod_jobs([(P1, 2), (P2, 3), (P3, 1)], "f", 0)
    assert [(pair.host.name, i) for pair, i, _ in jobs] == [
        ("host1", 0), ("host2", 0), ("host3", 0), ("host1", 1), ("host2", 1), ("host2", 2),
    ]  # fmt: skip
    names = [name for _, _, name in jobs]
    assert len(set(names)) == len(names) == 6
    assert names[:3] == ["f0p1x0", "f0p2x0", "f0p3x0"]


def _sample(pair: str, ready: float | None, started: float, error: str | None = None) -> PodSample:
    s = PodSample("dpunet", 0, f"{pair}-{started}", pair, ready_s=ready, error=error)
    s.started, s.finished = started, started + (ready or 0.0)
    return s


def test_per_pair_summary_counts_each_pairs_pods_rate_and_failures() -> None:
    samples = [
        _sample("host1", 0.1, 0.0),
        _sample("host1", 0.3, 0.0),
        _sample("host2", 0.2, 0.0),
        _sample("host2", None, 0.0, error="timeout"),
    ]
    out = per_pair_summary({"dpunet": samples})
    assert set(out) == {"host1", "host2"}
    one, two = out["host1"]["dpunet"], out["host2"]["dpunet"]
    assert one["ready_ms"]["n"] == 2 and abs(one["ready_ms"]["max"] - 300.0) < 1e-9
    assert abs(one["pods_per_s"] - 2 / 0.3) < 1e-9  # 2 pods, first start to last reply
    assert one["errors"] == 0
    assert two["ready_ms"]["n"] == 1 and two["errors"] == 1


def test_merged_scrapes_add_the_pairs_histograms_and_keep_one_controller() -> None:
    key_sum = ("dpunet_host_cni_phase_seconds_sum", frozenset({("phase", "claim")}))
    key_count = ("dpunet_host_cni_phase_seconds_count", frozenset({("phase", "claim")}))
    ctl = {("dpunet_controller_port_setup_seconds_count", frozenset()): 5.0}
    before = [Scrapes({key_sum: 1.0, key_count: 1.0}, ctl, {}), Scrapes({}, ctl, {})]
    after = [
        Scrapes({key_sum: 2.0, key_count: 2.0}, ctl, {}),
        Scrapes({key_sum: 3.0, key_count: 3.0}, ctl, {}),
    ]
    merged_before, merged_after = merge_scrapes(before), merge_scrapes(after)
    assert merged_after.host == {key_sum: 5.0, key_count: 5.0}
    assert merged_after.controller == ctl  # one controller, not counted twice
    means = phase_means(
        merged_before.host, merged_after.host, "dpunet_host_cni_phase_seconds", "phase"
    )
    assert means["claim"].count == 4 and means["claim"].mean == 1.0  # (5 - 1) s / (5 - 1)


def test_the_plot_has_a_per_pair_panel_for_an_all_pairs_run(tmp_path: Path) -> None:
    summary = {"ready_ms": {"n": 1, "median": 100.0, "p99": 120.0}, "pods_per_s": 5.0, "errors": 0}
    mode = {
        "ready_ms": summary["ready_ms"],
        "add_ms": {"mean": 50.0},
        "samples_ms": [100.0, 120.0],
    }
    run = {
        "pods": 2,
        "concurrency": 2,
        "dpunet": mode,
        "floor": mode,
        "pairs": {"host1": 1, "host2": 1},
        "per_pair": {h: {"dpunet": summary, "floor": summary} for h in ("host1", "host2")},
    }
    lab_up = {"pairs": {"host1": {"busy_s": 3.0, "ready_s": 4.0}}}
    out = plots.plot_pod_setup({"runs": [run], "lab_up": lab_up}, tmp_path / "p.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
