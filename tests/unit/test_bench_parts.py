"""Benchmark building blocks: statistics, Prometheus parsing, ICMP packets, phase split,
plots. (The benchmarks themselves measure; these tests check correctness only.)"""

from __future__ import annotations

import math
import socket
import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from dpunet.bench import icmp, plots
from dpunet.bench.metrics import http_get, parse_exposition, phase_means
from dpunet.bench.podsetup import Floor, FreeVf, PodSample, summarize_run
from dpunet.bench.stats import percentile, ratio, summarize, versus_host_device
from dpunet.lab.runner import LabError

EXPOSITION_BEFORE = """\
# HELP dpunet_host_cni_phase_seconds Time spent in each phase of a CNI ADD/DEL.
# TYPE dpunet_host_cni_phase_seconds histogram
dpunet_host_cni_phase_seconds_bucket{le="0.01",phase="claim",verb="ADD"} 0.0
dpunet_host_cni_phase_seconds_count{phase="claim",verb="ADD"} 2.0
dpunet_host_cni_phase_seconds_sum{phase="claim",verb="ADD"} 1.0
dpunet_host_cni_phase_seconds_count{phase="total",verb="DEL"} 1.0
dpunet_host_cni_phase_seconds_sum{phase="total",verb="DEL"} 0.5
dpunet_dpu_plug_latency_seconds_count 1.0
dpunet_dpu_plug_latency_seconds_sum 0.02
"""
EXPOSITION_AFTER = """\
dpunet_host_cni_phase_seconds_count{phase="claim",verb="ADD"} 6.0
dpunet_host_cni_phase_seconds_sum{phase="claim",verb="ADD"} 3.0
dpunet_host_cni_phase_seconds_count{phase="total",verb="DEL"} 1.0
dpunet_host_cni_phase_seconds_sum{phase="total",verb="DEL"} 0.5
dpunet_host_cni_phase_seconds_count{phase="plug",verb="ADD"} 2.0
dpunet_host_cni_phase_seconds_sum{phase="plug",verb="ADD"} 0.2
dpunet_dpu_plug_latency_seconds_count 3.0
dpunet_dpu_plug_latency_seconds_sum 0.08
dpunet_escape_test{path="a\\"b"} 1.0
"""


def test_percentiles() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    assert percentile([5.0], 95) == 5.0
    assert math.isnan(percentile([], 50))
    s = summarize([float(v) for v in range(1, 101)])
    assert (s["n"], s["min"], s["max"], s["median"]) == (100, 1.0, 100.0, 50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert summarize([]) == {"n": 0}
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None and ratio(math.nan, 1.0) is None


def test_versus_host_device() -> None:
    samples = {"dpunet": [30.0, 10.0, 20.0], "hostdev": [10.0, 5.0]}
    doc = versus_host_device(samples, "dpunet", "hostdev")
    assert (doc["dpunet_ms"]["median"], doc["host_device_ms"]["median"]) == (20.0, 7.5)
    assert doc["ratio_median"] == pytest.approx(20.0 / 7.5)
    assert doc["samples_ms"] is samples
    assert versus_host_device({"a": [], "b": [1.0]}, "a", "b")["ratio_median"] is None


def test_prometheus_exposition_and_phase_means() -> None:
    before, after = parse_exposition(EXPOSITION_BEFORE), parse_exposition(EXPOSITION_AFTER)
    key = ("dpunet_host_cni_phase_seconds_sum", frozenset({("phase", "claim"), ("verb", "ADD")}))
    assert before[key] == 1.0
    assert after[("dpunet_escape_test", frozenset({("path", 'a\\"b')}))] == 1.0
    host = phase_means(before, after, "dpunet_host_cni_phase_seconds", "phase")
    assert host["ADD:claim"].count == 4 and host["ADD:claim"].mean == pytest.approx(0.5)
    assert host["ADD:plug"].mean == pytest.approx(0.1)  # new series: all of it is this run's
    assert host["DEL:total"].count == 0 and host["DEL:total"].mean is None
    dpu = phase_means(before, after, "dpunet_dpu_plug_latency_seconds")
    assert dpu[""].count == 2 and dpu[""].mean == pytest.approx(0.03)


def test_http_get_over_a_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "metrics.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve(status: str) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n\r\nm 1\n".encode())

    threading.Thread(target=serve, args=("200 OK",)).start()
    assert http_get(None, f"unix:{path}") == "m 1\n"
    threading.Thread(target=serve, args=("503 Service Unavailable",)).start()
    with pytest.raises(OSError, match="503"):
        http_get(None, f"unix:{path}")
    listener.close()


def test_icmp_packets() -> None:
    packet = icmp.echo_request(0x1234, 7)
    kind, code, _checksum, ident, seq = struct.unpack_from("!BBHHH", packet)
    assert (kind, code, ident, seq) == (icmp.ECHO_REQUEST, 0, 0x1234, 7)
    assert icmp.checksum(packet) == 0  # a correct checksum sums to zero
    reply_icmp = struct.pack("!BBHHH", icmp.ECHO_REPLY, 0, 0, 0x1234, 7) + b"x"
    ipv4 = bytes([0x45]) + bytes(19)
    assert icmp.is_reply(ipv4 + reply_icmp, 0x1234, "198.18.1.1", "198.18.1.1")
    assert not icmp.is_reply(ipv4 + reply_icmp, 0x1234, "198.18.1.1", "198.18.1.9")
    assert not icmp.is_reply(ipv4 + reply_icmp, 0x9999, "198.18.1.1", "198.18.1.1")
    assert not icmp.is_reply(ipv4 + packet, 0x1234, "198.18.1.1", "198.18.1.1")


def _run_result(samples: list[float]) -> dict[str, Any]:
    dpunet = [
        PodSample(
            "dpunet", r, f"p{i}", ready_s=v, add_s=v * 0.9, started=float(i), finished=float(i) + v
        )
        for i, (r, v) in enumerate([(0, s) for s in samples])
    ]
    floor = [
        PodSample(
            "floor", 0, f"f{i}", ready_s=0.1, add_s=0.05, steps={"nb_lsp_txn": 0.01}, finished=0.1
        )
        for i in range(len(samples))
    ]
    return {
        "pods": len(samples),
        "concurrency": 1,
        "dpunet": summarize_run(dpunet),
        "floor": summarize_run(floor),
        "phases_mean_s": {
            "host_agent": {
                "ADD:claim": {"mean": 0.2, "count": 2},
                "ADD:controller": {"mean": 0.1, "count": 2},
                "ADD:plug": {"mean": 0.05, "count": 2},
                "ADD:total": {"mean": 0.4, "count": 2},
            },
            "controller": {
                "allocate": {"mean": 0.001, "count": 2},
                "nb_write": {"mean": 0.01, "count": 2},
                "wait_up": {"mean": 0.05, "count": 2},
                "total": {"mean": 0.061, "count": 2},
            },
        },
    }


def test_summarize_run_and_phase_split() -> None:
    run = _run_result([0.5, 0.7])
    assert run["dpunet"]["ready_ms"]["median"] == pytest.approx(600.0)
    assert run["dpunet"]["samples_ms"] == [500.0, 700.0]
    assert run["floor"]["steps_mean_ms"] == {"nb_lsp_txn": pytest.approx(10.0)}
    assert run["floor"]["pods_per_s"] == pytest.approx(20.0)  # 2 pods in 0.1 s
    errored = summarize_run([PodSample("dpunet", 0, "x", error="boom")])
    assert errored["errors"] == ["boom"] and errored["ready_ms"] == {"n": 0}
    dpunet, floor = plots.pod_setup_phases(run)
    parts = dict(dpunet)
    assert parts["claim (VF discovery)"] == pytest.approx(200.0)
    assert parts["ctl wait up (DPU plug + OVN)"] == pytest.approx(50.0)
    assert parts["HTTP + rest"] == pytest.approx(39.0)
    assert parts["shim + CNI server"] == pytest.approx(540.0 - 400.0)
    assert parts["until gateway answers"] == pytest.approx(60.0)
    assert floor == [("nb lsp txn", pytest.approx(10.0))]


def test_plots_are_written(tmp_path: Path) -> None:
    run = _run_result([0.5, 0.7, 0.9])
    run["floor_sb"] = run["floor"]
    assert plots.plot_pod_setup({"runs": [run]}, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    shim = {"samples_ms": {"a": [1.0, 2.0], "b": [3.0, 4.0]}}
    assert plots.plot_shim(shim, tmp_path / "s.png").exists()
    podman = {"samples_ms": {"dpunet": [1.0, 2.0], "hostdev": [0.5, 0.6]}}
    assert plots.plot_podman(podman, tmp_path / "m.png").exists()
    level = {
        "existing_ports": 1000,
        "put_ms": {"median": 100.0, "p99": 300.0},
        "put_ports_per_s": 40.0,
        "floor": {"up_ms": {"median": 50.0}, "commit_ms": {"median": 5.0}, "ports_per_s": 90.0},
        "floor_sb": {"up_ms": {"median": 30.0}, "commit_ms": {"median": 5.0}, "ports_per_s": 99.0},
    }
    controller = {"levels": [level, {**level, "existing_ports": 5000}], "concurrency": 8}
    assert plots.plot_controller(controller, tmp_path / "c.png", 300.0).exists()
    memory = {
        "pods": 7,
        "idle": {
            "dpu1/dpunet-dpu": {"dpunet": True, "rss_mb": 60.0},
            "dpu1/ovsdb-server": {"dpunet": False, "rss_mb": 7.0},
        },
        "all_vfs_in_use": {"dpu1/dpunet-dpu": {"dpunet": True, "rss_mb": 61.0}},
    }
    assert plots.plot_memory(memory, tmp_path / "r.png", 60.0).exists()
    samples = [{"cycle": n, "rss_mb": {"dpu1/dpunet-dpu": 60.0 + n / 100}} for n in (0, 50, 100)]
    memory["cycles"] = {"cycles": 100, "every": 50, "samples": samples}
    assert plots.plot_memory(memory, tmp_path / "cycles.png", 60.0).exists()


class ScriptedFloor(Floor):
    """The floor's plugin runs, failing with the scripted messages first (no lab)."""

    def __init__(self, failures: list[str]) -> None:  # no lab: only the retry policy runs
        self.failures = failures
        self.runs = 0

    def _run_host_device(
        self, command: str, vf: FreeVf, cid: str, netns: str, address: str
    ) -> None:
        self.runs += 1
        if self.failures:
            raise LabError(f"host-device {command}: {self.failures.pop(0)}")


INTERRUPTED = "failed to find host device: failed to list node links: interrupted system call"


@pytest.mark.parametrize(
    ("failures", "runs", "retries", "fails"),
    [
        ([INTERRUPTED, INTERRUPTED], 3, 2, False),  # an interrupted listing is run again
        ([INTERRUPTED] * 3, 3, 2, True),  # at most HOST_DEVICE_ATTEMPTS times
        (["failed to find host device: no such link"], 1, 0, True),  # anything else at once
    ],
)
def test_the_floor_runs_an_interrupted_host_device_again(
    failures: list[str], runs: int, retries: int, fails: bool
) -> None:
    floor, sample = ScriptedFloor(failures), PodSample("floor", 0, "p")
    vf = FreeVf(1, "enp2s0f0v1", "02:00:00:00:00:01")
    if fails:
        with pytest.raises(LabError):
            floor._host_device("ADD", vf, "c1", "/run/netns/p", "10.0.0.9", sample)
    else:
        assert floor._host_device("ADD", vf, "c1", "/run/netns/p", "10.0.0.9", sample) >= 0
    assert (floor.runs, sample.retries) == (runs, retries)
    assert summarize_run([sample])["retries"] == retries
