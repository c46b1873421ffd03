"""Result shapes per CNI version, prevResult parsing, chaining, and the network config."""

from __future__ import annotations

from typing import Any

import pytest
from cni_harness import NETNS, VF_PCI, netconf, sample_result
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dpunet.cni.models import NetConf, parse_netconf
from dpunet.cni.results import AddResult, Interface, IPConfig, Route
from dpunet.cni.wire import SUPPORTED_VERSIONS, CniError, ErrorCode

RESULT = sample_result(NETNS)


def test_0_3_1_shape() -> None:
    assert RESULT.render("0.3.1") == {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "eth0", "mac": "0a:58:c6:12:00:05", "sandbox": NETNS}],
        "ips": [
            {"version": "4", "address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 0},
            {"version": "6", "address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 0},
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
            {"dst": "198.18.0.0/15", "gw": "198.18.0.1"},
        ],
        "dns": {"nameservers": ["198.18.0.10"], "search": ["svc.cluster.local"]},
    }


def test_1_0_0_shape() -> None:
    out = RESULT.render("1.0.0")
    assert out["ips"][0] == {"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 0}
    assert out["interfaces"] == [{"name": "eth0", "mac": "0a:58:c6:12:00:05", "sandbox": NETNS}]
    assert out["routes"][1] == {"dst": "198.18.0.0/15", "gw": "198.18.0.1"}


def test_1_1_0_shape() -> None:
    out = RESULT.render("1.1.0")
    assert out["interfaces"] == [
        {"name": "eth0", "mac": "0a:58:c6:12:00:05", "mtu": 1400, "sandbox": NETNS, "pciID": VF_PCI}
    ]
    assert out["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "198.18.0.1", "mtu": 1400},
        {"dst": "198.18.0.0/15", "gw": "198.18.0.1", "priority": 10},
    ]
    full = Route.model_validate(
        {"dst": "::/0", "gw": "fe80::1", "advmss": 1360, "table": 100, "scope": 0}
    )
    assert full.render("1.1.0") == {
        "dst": "::/0",
        "gw": "fe80::1",
        "advmss": 1360,
        "table": 100,
        "scope": 0,
    }
    socket_iface = Interface.model_validate({"name": "vhost0", "socketPath": "/run/vhost0.sock"})
    assert socket_iface.render("1.1.0") == {"name": "vhost0", "socketPath": "/run/vhost0.sock"}
    assert socket_iface.render("1.0.0") == {"name": "vhost0"}


def test_empty_parts_are_left_out() -> None:
    assert AddResult().render("0.4.0") == {"cniVersion": "0.4.0"}
    host_side = Interface(name="pf0vf1")
    assert host_side.render("1.1.0") == {"name": "pf0vf1"}


def test_render_refuses_unsupported_versions() -> None:
    with pytest.raises(ValueError):
        RESULT.render("0.2.0")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_prev_result_round_trip(version: str) -> None:
    wire = RESULT.render(version)
    assert AddResult.from_wire(wire).render(version) == wire


def test_from_wire_accepts_foreign_results() -> None:
    # What the reference bridge plugin prints for 0.4.0: host-side interfaces, no dns.
    foreign = {
        "cniVersion": "0.4.0",
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
        ],
        "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "10.1.2.3/24"}],
        "dns": {},
    }
    result = AddResult.from_wire(foreign)
    assert result.ips[0].interface == 2
    assert str(result.routes[0].dst) == "10.1.2.0/24"
    assert result.dns.is_empty


@pytest.mark.parametrize(
    "bad",
    [
        {"ips": [{"address": "198.18.0.5/24", "interface": 0}]},
        {"ips": [{"address": "198.18.0.5/24", "gateway": "2001:db8::1"}]},
        {"ips": [{"address": "not-an-address"}]},
        {"routes": [{"dst": "0.0.0.0/0", "gw": "2001:db8::1"}]},
        {"interfaces": [{"mac": "00:11:22:33:44:55"}]},
        {"interfaces": [{"name": "eth0", "mtu": -1}]},
        [],
    ],
)
def test_from_wire_rejects(bad: Any) -> None:
    with pytest.raises(ValidationError):
        AddResult.from_wire(bad)


def test_chained_after_shifts_interface_indices() -> None:
    prev = AddResult.from_wire(
        {
            "interfaces": [{"name": "lo"}, {"name": "tap0"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}, {"address": "192.0.2.9/32"}],
            "dns": {"domain": "lab"},
        }
    )
    merged = RESULT.chained_after(prev)
    assert [i.name for i in merged.interfaces] == ["lo", "tap0", "eth0"]
    assert [ip.interface for ip in merged.ips] == [0, None, 2, 2]
    assert merged.routes == RESULT.routes
    assert merged.dns == RESULT.dns
    assert AddResult().chained_after(prev).dns == prev.dns


ipv4 = st.ip_addresses(v=4)


@given(st.lists(ipv4, min_size=1, max_size=4), st.integers(0, 32))
def test_ips_render_in_every_version(addresses: list[Any], prefix: int) -> None:
    result = AddResult(
        interfaces=(Interface(name="eth0"),),
        ips=tuple(
            IPConfig.model_validate({"address": f"{a}/{prefix}", "interface": 0}) for a in addresses
        ),
    )
    for version in SUPPORTED_VERSIONS:
        wire = result.render(version)
        assert [ip["address"] for ip in wire["ips"]] == [f"{a}/{prefix}" for a in addresses]
        assert all(("version" in ip) == version.startswith("0.") for ip in wire["ips"])
        assert AddResult.from_wire(wire).render(version) == wire


# --- network config ------------------------------------------------------------------


def test_seed_nad_config() -> None:
    seed = {
        "cniVersion": "0.3.1",
        "name": "ovn-kubernetes",
        "type": "ovn-k8s-cni-overlay",
        "ipam": {},
        "dns": {},
    }
    conf = parse_netconf(seed)
    assert (conf.cni_version, conf.name, conf.type) == (
        "0.3.1",
        "ovn-kubernetes",
        "ovn-k8s-cni-overlay",
    )
    assert conf.vf_pci_address is None and conf.resource_name is None
    assert conf.state_dir == "/var/lib/dpunet" and conf.socket is None
    assert conf.dns.is_empty and conf.prev_result is None and conf.valid_attachments is None


@pytest.mark.parametrize(
    "injected",
    [
        {"deviceID": "0000:02:00.2"},
        {"pciBusID": "0000:02:00.2"},
        {"runtimeConfig": {"deviceID": "0000:02:00.2"}},
        {"deviceID": "0000:02:00.2", "runtimeConfig": {"deviceID": "0000:02:00.2"}},
        {"deviceID": "0000:02:00.2", "pciBusID": "0000:02:00.2"},
    ],
)
def test_multus_injected_device(injected: dict[str, Any]) -> None:
    assert parse_netconf({**netconf(), "deviceID": None, **injected}).vf_pci_address == (
        "0000:02:00.2"
    )


def test_unknown_fields_and_runtime_config_are_kept() -> None:
    conf = parse_netconf(
        netconf(
            runtimeConfig={"mac": "0a:58:00:00:00:01", "portMappings": []},
            capabilities={"mac": True},
            args={"cni": {"labels": []}},
            mtu=1400,
        )
    )
    assert conf.runtime_config.mac == "0a:58:00:00:00:01"
    assert conf.runtime_config.model_extra == {"portMappings": []}
    assert conf.capabilities == {"mac": True}
    assert conf.model_extra == {"mtu": 1400}


def test_invalid_config_details_name_the_field() -> None:
    with pytest.raises(CniError) as info:
        parse_netconf(netconf(deviceID="zz"))
    assert info.value.code == ErrorCode.INVALID_CONFIG
    assert info.value.details.startswith("deviceID:")


def test_netconf_is_immutable() -> None:
    conf = NetConf.model_validate(netconf())
    with pytest.raises(ValidationError):
        conf.name = "other"  # type: ignore[misc]
