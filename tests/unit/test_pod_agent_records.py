"""The sandbox files of the node daemons: format 2 round trip, format 1 still read, and
what an unreadable file still tells (the devices that stay claimed)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from dpunet.agent.sandboxes import Phase, SandboxRecord, SandboxStore, UnreadableRecord


def record(ifname: str, network: str | None, pci: str) -> SandboxRecord:
    return SandboxRecord(
        "c1", "/run/netns/p", ifname, "default", "web", "uid", {"pci": pci},
        Phase.ATTACHED, {"mac": "0a:58:00:00:00:01"}, network,
    )  # fmt: skip


def test_records_per_interface_round_trip_and_keep_the_first_at_the_top(
    tmp_path: Path,
) -> None:
    store = SandboxStore(tmp_path)
    first, second = record("eth0", "dpunet", "0000:02:00.2"), record("net1", "san", "0000:02:00.3")
    store.save(first)
    store.save(second)
    assert store.load("c1") == [first, second]
    data = json.loads(store.path("c1").read_text())
    assert data["format"] == 2 and data["device"] == first.device and data["port"] == first.port
    store.remove(first)
    assert store.load("c1") == [second] and store.exists("c1")
    store.remove(second)
    assert not store.exists("c1") and store.load("c1") == []


def test_a_format_1_record_is_read_as_network_none(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path)
    legacy = {
        "container_id": "c1", "netns": "/run/netns/p", "ifname": "eth0", "namespace": "ns",
        "pod": "web", "pod_uid": "u", "device": {"pci": "0000:02:00.2"}, "phase": "attached",
        "port": {},
    }  # fmt: skip
    store.path("c1").write_text(json.dumps(legacy))
    (old,) = store.load("c1")
    assert old.network is None and old.is_attachment("eth0", "any-network")
    assert not old.is_attachment("net1", "any-network")


VALID = record("eth0", "dpunet", "0000:02:00.2")
FIELDS = asdict(VALID)
UNREADABLE: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "garbage": ("{not json", []),
    "a list": ("[1, 2]", []),
    "newer format": (
        json.dumps({**FIELDS, "format": 3, "others": []}),
        [VALID.device],
    ),
    "format not a number": (json.dumps({**FIELDS, "format": "2"}), [VALID.device]),
    "one more field": (
        json.dumps({**FIELDS, "format": 2, "others": [], "qos": 1}),
        [VALID.device],
    ),
    "another sandbox's": (
        json.dumps({**FIELDS, "container_id": "c2", "format": 2, "others": []}),
        [VALID.device],
    ),
    "phase unknown": (
        json.dumps({**FIELDS, "phase": "moving", "format": 2, "others": []}),
        [VALID.device],
    ),
    "two records of eth0": (
        json.dumps({**FIELDS, "format": 2, "others": [FIELDS]}),
        [VALID.device, VALID.device],
    ),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_file_is_reported_with_the_devices_it_names(
    tmp_path: Path, case: str
) -> None:
    text, devices = UNREADABLE[case]
    store = SandboxStore(tmp_path)
    store.path("c1").write_text(text)
    store.save(
        SandboxRecord("c9", "/run/netns/q", "eth0", "ns", "db", "u", {"pci": "0000:02:00.5"})
    )
    with pytest.raises(UnreadableRecord) as err:
        store.load("c1")
    assert err.value.devices == devices and str(store.path("c1")) in str(err.value)
    scan = store.scan()
    assert [r.container_id for r in scan.records] == ["c9"]
    assert [u.container_id for u in scan.unreadable] == ["c1"]
    assert scan.container_ids == {"c1", "c9"}
    assert scan.devices == [{"pci": "0000:02:00.5"}, *devices]
