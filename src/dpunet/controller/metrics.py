"""Prometheus metrics of the controller (served at `/metrics`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dpunet.contract.api import DpuLease, LeaseState

NodeStats = Callable[[], list[tuple[str, int, int]]]  # (node, ports, free addresses)
LeaseSource = Callable[[], list[tuple[str, DpuLease]]]  # (dpu-host node, its DPU's lease)
WriteCounts = Callable[[], tuple[int, int]]  # (NB transactions, the writes they carried)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _NodeCollector(Collector):
    def __init__(self, stats: NodeStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        ports = GaugeMetricFamily("dpunet_controller_ports", "Pod ports per node", labels=["node"])
        free = GaugeMetricFamily(
            "dpunet_controller_free_ips", "Free pod addresses per node", labels=["node"]
        )
        for node, n_ports, n_free in self._stats():
            ports.add_metric([node], n_ports)
            free.add_metric([node], n_free)
        yield ports
        yield free


class _WriteCollector(Collector):
    def __init__(self, counts: WriteCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        transactions, writes = self._counts()
        yield CounterMetricFamily(
            "dpunet_controller_nb_transactions",
            "Northbound write transactions committed or attempted",
            value=transactions,
        )
        yield CounterMetricFamily(
            "dpunet_controller_nb_writes",
            "Writes those transactions carried (port writes queued while one is in flight "
            "share the next)",
            value=writes,
        )


class _LeaseCollector(Collector):
    def __init__(self, leases: LeaseSource) -> None:
        self._leases = leases

    def collect(self) -> Iterator[Metric]:
        expired = GaugeMetricFamily(
            "dpunet_controller_dpu_lease_expired",
            "1 while the DPU of a dpu-host node has not renewed its lease within its duration",
            labels=["node", "chassis"],
        )
        silent = GaugeMetricFamily(
            "dpunet_controller_dpu_lease_silent_seconds",
            "Seconds since the DPU's last renewal (since the controller started if none)",
            labels=["node", "chassis"],
        )
        for node, lease in self._leases():
            expired.add_metric([node, lease.chassis], lease.state is LeaseState.EXPIRED)
            silent.add_metric([node, lease.chassis], lease.silent_for)
        yield expired
        yield silent


class Metrics:
    """All controller metrics, in their own registry."""

    def __init__(self, node_stats: NodeStats) -> None:
        self.registry = CollectorRegistry()
        self.port_setup = Histogram(
            "dpunet_controller_port_setup_seconds",
            "Port PUT latency by phase (allocate, nb_write, wait_up, total)",
            ["phase"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.port_ready = Counter(
            "dpunet_controller_port_ready",
            "Port PUTs answered ready, by what showed it first (sb: Port_Binding.up, nb: "
            "Logical_Switch_Port.up)",
            ["source"],
            registry=self.registry,
        )
        self.requests = Counter(
            "dpunet_controller_requests",
            "API requests by method, route and status code",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.reconcile_runs = Counter(
            "dpunet_controller_reconcile_runs",
            "Reconcile passes by result",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_repairs = Counter(
            "dpunet_controller_reconcile_repairs",
            "Objects repaired or removed by reconcile, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.nb_ready = Gauge(
            "dpunet_controller_nb_ready",
            "1 when connected to the Northbound leader and holding the dpunet lock",
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(node_stats))

    def watch_nb_writes(self, counts: WriteCounts) -> None:
        """Export how many NB write transactions carried how many writes."""
        self.registry.register(_WriteCollector(counts))

    def watch_dpu_leases(self, leases: LeaseSource) -> None:
        """Export the DPU leases (none while leases are off)."""
        self.registry.register(_LeaseCollector(leases))

    def watch_token_file(self, valid: Callable[[], bool]) -> None:
        """Export whether the token file (Kubernetes mode: the DPU token file) is usable
        (0: no token of it is valid)."""
        gauge = Gauge(
            "dpunet_controller_token_file_valid",
            "1 while the token file is readable, well-formed and private to its owner",
            registry=self.registry,
        )
        gauge.set_function(lambda: 1.0 if valid() else 0.0)
