"""Prometheus metrics of `dpunet-dpu` (served by `dpunet.observability`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Every metric the daemon exports, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.plug_latency = Histogram(
            "dpunet_dpu_plug_latency_seconds",
            "From the first reconcile that saw a Port_Binding to its representor being a "
            "working port of br-int (ofport assigned).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ports_owned = Gauge(
            "dpunet_dpu_ports_owned", "br-int ports carrying dpunet-owned=true.", registry=r
        )
        self.actions = Counter(
            "dpunet_dpu_reconcile_actions_total",
            "Changes made by the reconcile loop, by action.",
            ["action"],
            registry=r,
        )
        self.reconciles = Counter(
            "dpunet_dpu_reconciles_total", "Reconcile passes, by result.", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "dpunet_dpu_reconcile_duration_seconds",
            "Duration of one reconcile pass.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refused = Gauge(
            "dpunet_dpu_refused_bindings",
            "Port_Bindings for this chassis the agent currently refuses, by reason.",
            ["reason"],
            registry=r,
        )
        self.refusals = Counter(
            "dpunet_dpu_refusals_total",
            "Port_Bindings newly refused (once per binding and reason), by reason.",
            ["reason"],
            registry=r,
        )
        self.sb_synced = Gauge(
            "dpunet_dpu_sb_synced", "1 while the SB replica is complete and current.", registry=r
        )
        self.lease_renewals = Counter(
            "dpunet_dpu_lease_renewals_total",
            "Renewals of the DPU lease at the controller, by result (ok, error).",
            ["result"],
            registry=r,
        )
        self.lease_held = Gauge(
            "dpunet_dpu_lease_held", "1 while the last lease renewal went through.", registry=r
        )
        self.registered = Gauge(
            "dpunet_dpu_registered",
            "1 while the controller holds this DPU's registration (its host node's binding).",
            registry=r,
        )
        self.gateway_flows = Gauge(
            "dpunet_dpu_gateway_flows",
            "Flows of the shared gateway's pipeline wanted on the external bridge.",
            registry=r,
        )
        self.gateway_flow_changes = Counter(
            "dpunet_dpu_gateway_flow_changes_total",
            "Flows of dpunet's cookie the agent added or removed on the external bridge.",
            ["action"],
            registry=r,
        )
        self.gateway_ok = Gauge(
            "dpunet_dpu_gateway_ok",
            "1 while the last check of the shared gateway's flows completed.",
            registry=r,
        )
        self.sb_resyncs = Counter(
            "dpunet_dpu_sb_resyncs_total",
            "Times the SB monitor (re)synchronised (each one triggers a full reconcile).",
            registry=r,
        )
