"""API bodies: what is accepted and what is refused (with a reason)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dpunet.contract.api import NodeSpec, PortRequest, check_node_name

NODE = {"role": "dpu-host", "chassis": "dpu1", "node_ip": "192.0.2.101/24", "next_hop": "192.0.2.1"}
PORT = {
    "node": "host1",
    "sandbox": "c0ffee",
    "uid": "8f1c-11",
    "pci": "0000:02:00.3",
    "pf_mac": "02:D5:00:01:00:01",
    "vf_num": 1,
}


def test_valid_bodies() -> None:
    spec = NodeSpec.model_validate({**NODE, "mgmt_pf_mac": "02:D5:00:01:00:01", "mgmt_vf_num": 0})
    assert spec.mgmt_pf_mac == "02:d5:00:01:00:01"
    req = PortRequest.model_validate(PORT)
    assert req.is_vf and req.pf_mac == "02:d5:00:01:00:01" and req.ifname == "eth0"
    veth = PortRequest.model_validate({"node": "cp", "sandbox": "s", "uid": "u"})
    assert not veth.is_vf


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"next_hop": "198.51.100.1"}, "must be another address inside"),
        ({"next_hop": "192.0.2.101"}, "must be another address inside"),
        ({"node_ip": "192.0.2.255/24"}, "not a host address"),
        ({"node_ip": "192.0.2.101"}, None),
        (
            {"role": "full", "mgmt_pf_mac": "02:00:00:00:00:01", "mgmt_vf_num": 0},
            "no management VF",
        ),
        ({"mgmt_pf_mac": "02:00:00:00:00:01"}, "go together"),
        ({"gateway_mac": "01:00:5e:00:00:01"}, "multicast"),
        ({"chassis": "bad chassis"}, None),
        ({"extra": True}, None),
    ],
)
def test_bad_node_specs(changes: dict[str, Any], message: str | None) -> None:
    with pytest.raises(ValidationError, match=message):
        NodeSpec.model_validate({**NODE, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"pci": None},
        {"vf_num": 4096},
        {"pf_mac": "00:00:00:00:00:00"},
        {"pci": "0000:02:00.8"},
        {"sandbox": "a/b"},
        {"uid": ""},
        {"ifname": "a" * 16},
        {"node": "Host1"},
    ],
)
def test_bad_port_requests(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PortRequest.model_validate({**PORT, **changes})


def test_reserved_node_name() -> None:
    with pytest.raises(ValueError, match="reserved"):
        check_node_name("join")
    assert check_node_name("host1") == "host1"
