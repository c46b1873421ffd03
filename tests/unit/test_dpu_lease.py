"""The DPU agent's lease keeper: renewals through the controller API, failures logged once
per change and shown by the metrics; the lease settings go together."""

from __future__ import annotations

import logging

import pytest

from dpunet.contract.api import DpuLease, LeaseState
from dpunet.contract.client import ClientError
from dpunet.dpu.config import ConfigError, load_config
from dpunet.dpu.lease import LeaseKeeper
from dpunet.dpu.metrics import Metrics


class Api:
    """The controller's renewal: the scripted errors first, then success."""

    def __init__(self, *errors: ClientError) -> None:
        self.errors = list(errors)
        self.renewed: list[str] = []

    def renew_dpu_lease(self, node: str) -> DpuLease:
        if self.errors:
            raise self.errors.pop(0)
        self.renewed.append(node)
        return DpuLease(
            chassis="dpu1", state=LeaseState.HELD, duration=15, renewed_ago=0, silent_for=0
        )


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_renewals_and_failures(caplog: pytest.LogCaptureFixture) -> None:
    down = ClientError(0, "cannot reach the controller")
    api, metrics = Api(down, down, ClientError(403, "dpu:dpu1 may not renew")), Metrics()
    keeper = LeaseKeeper(api, "host1", 5, metrics)
    with caplog.at_level(logging.INFO, logger="dpunet.dpu.lease"):
        assert [keeper.renew_once() for _ in range(5)] == [False, False, False, True, True]
    events = [r.getMessage() for r in caplog.records]
    # the same error twice is logged once
    assert events == ["lease-renew-failed", "lease-renew-failed", "lease-held"]
    assert api.renewed == ["host1", "host1"]
    assert sample(metrics, "dpunet_dpu_lease_renewals_total", result="error") == 3
    assert sample(metrics, "dpunet_dpu_lease_renewals_total", result="ok") == 2
    assert sample(metrics, "dpunet_dpu_lease_held") == 1


def test_lease_settings() -> None:
    cfg = load_config(
        environ={"DPUNET_CONTROLLER_URL": "http://192.0.2.10:9477", "DPUNET_TOKEN_FILE": "/t",
                 "DPUNET_LEASE_INTERVAL": "2"}
    )  # fmt: skip
    assert (cfg.controller_url, str(cfg.token_file), cfg.lease_interval) == (
        "http://192.0.2.10:9477", "/t", 2.0,
    )  # fmt: skip
    assert load_config(environ={}).controller_url is None  # no lease by default
    with pytest.raises(ConfigError, match="controller_url and token_file go together"):
        load_config(environ={"DPUNET_CONTROLLER_URL": "http://192.0.2.10:9477"})
