"""The policy passes' cache (issue 16): a pod LSP is parsed once per change NB reports,
not once per pass, and a stored spec once per text."""

from __future__ import annotations

import uuid
from ipaddress import IPv4Address
from typing import Any

import pytest

from dpunet.contract.policy import NetworkPolicySpec
from dpunet.controller import policy_nb
from dpunet.controller.policy_nb import PolicyCache
from dpunet.controller.topology import KIND_KEY, Kind, PodPort

PORT = PodPort(
    namespace="a", pod="web", node="host1", uid="8f1c", sandbox="c0ffee", ifname="eth0",
    ip=IPv4Address("198.18.1.7"), pci="0000:02:00.3", pf_mac="02:d5:00:01:00:01", vf_num=1,
)  # fmt: skip


class FakeRow:
    """An LSP row of the replica (no transaction pending; `_data` None: read as attributes)."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.uuid = uuid.uuid4()
        self._data = None
        self._changes: dict[str, Any] = {}
        self._mutations: dict[str, Any] = {}
        self.addresses = [f"{PORT.mac} {PORT.ip}"]
        ids = PORT.external_ids() | {KIND_KEY: Kind.POD.value}
        self.external_ids = ids | {f"dpunet:label:{k}": v for k, v in labels.items()}


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The LSPs parsed (a spy on policy_nb._pod)."""
    seen: list[str] = []
    real = policy_nb._pod

    def spy(row: Any) -> Any:
        seen.append(row.uuid)
        return real(row)

    monkeypatch.setattr(policy_nb, "_pod", spy)
    return seen


def test_a_pod_is_parsed_once_per_change(parses: list[str]) -> None:
    cache = PolicyCache()
    row, other = FakeRow({"app": "web"}), FakeRow({})
    for _ in range(3):  # three passes, nothing changed
        pod = cache.pod(row)
        assert cache.pod(other) is not None
    assert pod is not None and pod.labels == {"app": "web"} and pod.lsp == PORT.name
    assert parses == [row.uuid, other.uuid]
    row.external_ids["dpunet:label:app"] = "db"
    cache.changed(row.uuid)  # NB reports the update
    pod = cache.pod(row)
    assert pod is not None and pod.labels == {"app": "db"}
    assert parses == [row.uuid, other.uuid, row.uuid]


def test_a_row_a_transaction_is_changing_is_not_kept(parses: list[str]) -> None:
    cache = PolicyCache()
    row = FakeRow({"app": "web"})
    row._changes = {"external_ids": None}
    cache.pod(row)
    cache.pod(row)
    assert parses == [row.uuid, row.uuid]


def test_specs_are_parsed_once_per_text(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PolicyCache()
    calls: list[str] = []
    real = NetworkPolicySpec.model_validate_json

    def spy(text: str) -> NetworkPolicySpec:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(NetworkPolicySpec, "model_validate_json", spy)
    good, bad = '{"podSelector":{}}', '{"podSelector":{},"policyTypes":["Sideways"]}'
    for _ in range(2):
        out = cache.specs({"a/p": good, "a/q": bad})
        assert isinstance(out["a/p"], NetworkPolicySpec)
        assert not isinstance(out["a/q"], NetworkPolicySpec)
    assert calls == [good, bad, bad]  # a bad spec is not kept: tried again, still bad
    cache.specs({})
    cache.specs({"a/p": good})
    assert calls == [good, bad, bad, good]  # dropped once no policy stores it
