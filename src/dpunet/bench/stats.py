"""Summaries of latency samples: median, p95, p99 (linear interpolation between ranks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of `values`, interpolating between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, min, median, mean, p95, p99, max of `values` (NaN-free: empty gives n=0 only)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "median": percentile(values, 50),
        "mean": sum(values) / len(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing or b is zero."""
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def versus_host_device(samples_ms: dict[str, list[float]], ours: str, peer: str) -> dict[str, Any]:
    """dpunet's samples (`samples_ms[ours]`) against the `host-device` + `static` peer's
    (`samples_ms[peer]`): both summarised, the ratio of their medians, the samples."""
    dpunet, reference = summarize(samples_ms[ours]), summarize(samples_ms[peer])
    return {
        "dpunet_ms": dpunet,
        "host_device_ms": reference,
        "ratio_median": ratio(dpunet.get("median"), reference.get("median")),
        "samples_ms": samples_ms,
    }
