"""The sandbox files of the node daemons: format 2 round trip, format 1 still read, and
what an unreadable file still tells (the devices that stay claimed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pod_agent_fakes import port_info, vf_device

from dpunet.cni.sandboxes import (
    Phase,
    SandboxRecord,
    SandboxStore,
    UnreadableRecord,
    VethDevice,
    device_json,
)
from dpunet.contract.api import PortInfo


def record(ifname: str, network: str | None, pci: str) -> SandboxRecord:
    return SandboxRecord(
        "c1", "/run/netns/p", ifname, "default", "web", "uid", vf_device(pci),
        Phase.ATTACHED, port_info("web", "c1", "uid"), network,
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
    assert data["format"] == 2 and data["device"] == device_json(first.device)
    assert PortInfo.model_validate(data["port"]) == first.port
    store.remove(first)
    assert store.load("c1") == [second] and store.exists("c1")
    store.remove(second)
    assert not store.exists("c1") and store.load("c1") == []


def test_a_format_1_record_is_read_as_network_none(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path)
    legacy = {
        "container_id": "c1", "netns": "/run/netns/p", "ifname": "eth0", "namespace": "ns",
        "pod": "web", "pod_uid": "u", "device": device_json(vf_device("0000:02:00.2")),
        "phase": "attached", "port": {},
    }  # fmt: skip
    store.path("c1").write_text(json.dumps(legacy))
    (old,) = store.load("c1")
    assert old.network is None and old.is_attachment("eth0", "any-network")
    assert not old.is_attachment("net1", "any-network")


VALID = record("eth0", "dpunet", "0000:02:00.2")
FIELDS = VALID.to_json()
UNREADABLE: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "garbage": ("{not json", []),
    "a list": ("[1, 2]", []),
    "newer format": (
        json.dumps({**FIELDS, "format": 3, "others": []}),
        [FIELDS["device"]],
    ),
    "format not a number": (json.dumps({**FIELDS, "format": "2"}), [FIELDS["device"]]),
    "one more field": (
        json.dumps({**FIELDS, "format": 2, "others": [], "qos": 1}),
        [FIELDS["device"]],
    ),
    "another sandbox's": (
        json.dumps({**FIELDS, "container_id": "c2", "format": 2, "others": []}),
        [FIELDS["device"]],
    ),
    "phase unknown": (
        json.dumps({**FIELDS, "phase": "moving", "format": 2, "others": []}),
        [FIELDS["device"]],
    ),
    "a VF without its index": (
        json.dumps({**FIELDS, "device": {**FIELDS["device"], "vf_num": "3"}, "format": 2}),
        [{**FIELDS["device"], "vf_num": "3"}],
    ),
    "a port that is no answer": (
        json.dumps({**FIELDS, "port": {"mac": "0a:58:00:00:00:01"}, "format": 2}),
        [FIELDS["device"]],
    ),
    "two records of eth0": (
        json.dumps({**FIELDS, "format": 2, "others": [FIELDS]}),
        [FIELDS["device"], FIELDS["device"]],
    ),
    "nested too deeply for the parser": ("[" * 100_000 + "]" * 100_000, []),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_file_is_reported_with_the_devices_it_names(
    tmp_path: Path, case: str
) -> None:
    text, devices = UNREADABLE[case]
    store = SandboxStore(tmp_path)
    store.path("c1").write_text(text)
    store.save(
        SandboxRecord("c9", "/run/netns/q", "eth0", "ns", "db", "u", vf_device("0000:02:00.5"))
    )
    with pytest.raises(UnreadableRecord) as err:
        store.load("c1")
    assert err.value.devices == devices and str(store.path("c1")) in str(err.value)
    scan = store.scan()
    assert [r.container_id for r in scan.records] == ["c9"]
    assert [u.container_id for u in scan.unreadable] == ["c1"]
    assert scan.container_ids == {"c1", "c9"}
    assert scan.claimed == {"0000:02:00.5"} | {d["pci"] for d in devices}


def test_a_veth_record_and_one_without_a_port_round_trip(tmp_path: Path) -> None:
    store = SandboxStore(tmp_path)
    veth = SandboxRecord(
        "c1", "/run/netns/p", "net1", "default", "web", "uid", VethDevice(veth="dpv1", peer="dpt1"),
        network="storage",
    )  # fmt: skip
    store.save(veth)
    assert store.load("c1") == [veth] and veth.port is None
    data = json.loads(store.path("c1").read_text())
    assert data["device"] == {"veth": "dpv1", "peer": "dpt1"} and data["port"] == {}
    assert store.scan().claimed == {"dpv1"}
