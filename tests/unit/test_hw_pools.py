"""Device pools: the device-plugin config, its errors, and which devices land where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hw_sysfs_tree import SEED_CONFIGMAP, SEED_PF, SEED_PF_ADDRESS, SysfsTree, seed_host

from dpunet.hw.pools import (
    ManagementVf,
    PoolAssignment,
    PoolConfigError,
    assign_pools,
    discover_pool_devices,
    load_pool_config,
    parse_function_ranges,
    parse_pf_selector_entry,
    parse_pool_config,
    read_default_route_netdevs,
)

SEED_SELECTOR = {
    "vendors": ["15b3"],
    "devices": ["101e"],
    "drivers": ["mlx5_core"],
    "pfNames": ["enp2s0f0np0#1-2"],
}


def resource(name: str = "pool", **fields: Any) -> dict[str, Any]:
    return {"resourceName": name, "selectors": fields.pop("selectors", [SEED_SELECTOR]), **fields}


def config_of(*resources: dict[str, Any], prefix: str = "mellanox.com") -> Any:
    return parse_pool_config({"resourceList": list(resources)}, prefix)


def pooled(assignment: PoolAssignment) -> dict[str, list[str]]:
    return {pool.resource: [d.address for d in pool.devices] for pool in assignment.pools}


def reasons(assignment: PoolAssignment) -> dict[str, str]:
    return {e.device.address: e.reason for e in assignment.excluded}


@pytest.fixture
def host(tmp_path: Path) -> SysfsTree:
    return seed_host(tmp_path / "sys")


def test_seed_configmap_yields_vf1_and_vf2(host: SysfsTree, tmp_path: Path) -> None:
    path = tmp_path / "configMap.yaml"
    path.write_text(SEED_CONFIGMAP)
    config = load_pool_config(path, default_prefix="mellanox.com")
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    assert pooled(assignment) == {"mellanox.com/mlnx_sriov_cx6": ["0000:02:00.4", "0000:02:00.5"]}
    [pool] = assignment.pools
    assert [(d.pf_netdev, d.vf_index, d.netdev) for d in pool.devices] == [
        (SEED_PF, 1, "enp2s0f0v1"),
        (SEED_PF, 2, "enp2s0f0v2"),
    ]
    why = reasons(assignment)
    assert why[SEED_PF_ADDRESS] == "SR-IOV PF with 3 VFs enabled"
    assert "pfNames: VF 0 is not selected by enp2s0f0np0#1-2" in why["0000:02:00.3"]
    assert "vendors: 8086 is not one of 15b3" in why["0000:00:1f.6"]


def test_plain_config_json_and_default_prefix(host: SysfsTree, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"resourceList": [resource("mlnx_sriov_cx6")]}))
    assignment = assign_pools(load_pool_config(path), discover_pool_devices(host.sysfs))
    assert list(pooled(assignment)) == ["intel.com/mlnx_sriov_cx6"]


def test_explicit_resource_prefix_wins(host: SysfsTree) -> None:
    config = config_of(resource("x", resourcePrefix="nvidia.com"))
    assert [r.full_name for r in config.resource_list] == ["nvidia.com/x"]


def test_management_vf_and_default_route_are_excluded(host: SysfsTree) -> None:
    config = config_of(resource(selectors={"vendors": ["15b3", "8086"]}))
    assignment = assign_pools(
        config,
        discover_pool_devices(host.sysfs),
        default_route_netdevs={"eno1"},
        management_vfs=[ManagementVf.parse(f"{SEED_PF}:0")],
    )
    assert pooled(assignment) == {"mellanox.com/pool": ["0000:02:00.4", "0000:02:00.5"]}
    assert reasons(assignment) == {
        "0000:00:1f.6": "holds the default route (eno1)",
        SEED_PF_ADDRESS: "SR-IOV PF with 3 VFs enabled",
        "0000:02:00.3": f"management-port VF ({SEED_PF}:0)",
    }


def test_management_vf_by_pf_pci_address(host: SysfsTree) -> None:
    config = config_of(resource(selectors={"devices": ["101e"]}))
    mgmt = ManagementVf.parse(f"{SEED_PF_ADDRESS.upper()}:2")
    assert mgmt == ManagementVf(SEED_PF_ADDRESS, 2)
    assignment = assign_pools(config, discover_pool_devices(host.sysfs), management_vfs=[mgmt])
    assert pooled(assignment) == {"mellanox.com/pool": ["0000:02:00.3", "0000:02:00.4"]}


@pytest.mark.parametrize("text", ["enp2s0f0np0", "enp2s0f0np0:", ":0", "pf:-1", "pf:x"])
def test_management_vf_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="PF:VF-index"):
        ManagementVf.parse(text)


def test_pf_without_vfs_can_be_pooled_but_not_by_pfnames(tmp_path: Path) -> None:
    tree = SysfsTree(tmp_path)
    tree.sriov_pf("0000:05:00.0", "ens5f0np0")
    devices = discover_pool_devices(tree.sysfs)
    by_vendor = assign_pools(config_of(resource(selectors={"vendors": ["15b3"]})), devices)
    assert pooled(by_vendor) == {"mellanox.com/pool": ["0000:05:00.0"]}
    by_pf = assign_pools(config_of(resource(selectors={"pfNames": ["ens5f0np0"]})), devices)
    assert "pfNames: not a VF" in reasons(by_pf)["0000:05:00.0"]


def test_first_matching_resource_wins_and_selectors_are_ored(host: SysfsTree) -> None:
    config = config_of(
        resource(
            "first", selectors=[{"pfNames": ["enp2s0f0np0#2"]}, {"pciAddresses": ["0000:02:00.3"]}]
        ),
        resource("second", selectors={"devices": ["101e"]}),
    )
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    assert pooled(assignment) == {
        "mellanox.com/first": ["0000:02:00.3", "0000:02:00.5"],
        "mellanox.com/second": ["0000:02:00.4"],
    }


def test_keys_of_one_selector_are_anded(host: SysfsTree) -> None:
    config = config_of(resource(selectors={"devices": ["101e"], "drivers": ["vfio-pci"]}))
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    assert pooled(assignment) == {"mellanox.com/pool": []}
    assert "drivers: mlx5_core is not one of vfio-pci" in reasons(assignment)["0000:02:00.4"]


def test_pfnames_ignore_case_and_root_devices_select_by_pf_address(host: SysfsTree) -> None:
    config = config_of(
        resource("byname", selectors={"pfNames": ["ENP2S0F0NP0#0"]}),
        resource("byaddr", selectors={"rootDevices": ["0000:02:00.0#1,2"]}),
    )
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    assert pooled(assignment) == {
        "mellanox.com/byname": ["0000:02:00.3"],
        "mellanox.com/byaddr": ["0000:02:00.4", "0000:02:00.5"],
    }


def test_vfio_vf_and_vf_in_pod_stay_candidates(host: SysfsTree, tmp_path: Path) -> None:
    host.move_to_other_netns("enp2s0f0v1")
    host.vf(SEED_PF_ADDRESS, 3, "0000:02:00.6", driver="vfio-pci")
    config = config_of(
        resource("dpdk", selectors={"drivers": ["vfio-pci"], "linkTypes": ["ether"]}),
        resource("net", selectors={"pfNames": ["enp2s0f0np0#1-2"], "linkTypes": ["ether"]}),
    )
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    # Link type of a VF without a netdev here comes from its PF, as in the device plugin.
    assert pooled(assignment) == {
        "mellanox.com/dpdk": ["0000:02:00.6"],
        "mellanox.com/net": ["0000:02:00.4", "0000:02:00.5"],
    }


def test_is_rdma_selects_only_devices_with_rdma(host: SysfsTree) -> None:
    host.rdma("0000:02:00.5")
    config = config_of(resource(selectors={"devices": ["101e"], "isRdma": True}))
    assignment = assign_pools(config, discover_pool_devices(host.sysfs))
    assert pooled(assignment) == {"mellanox.com/pool": ["0000:02:00.5"]}
    assert "isRdma" in reasons(assignment)["0000:02:00.4"]


def test_keys_are_case_insensitive_like_the_plugin() -> None:
    config = config_of({"ResourceName": "x", "Selectors": [{"PfNames": ["p#1"], "IsRdma": False}]})
    [res] = config.resource_list
    assert res.resource_name == "x"
    assert [e.text for e in res.selectors[0].pf_names or ()] == ["p#1"]


def test_no_resources_is_valid(host: SysfsTree) -> None:
    assignment = assign_pools(config_of(), discover_pool_devices(host.sysfs))
    assert assignment.pools == ()
    assert set(reasons(assignment).values()) >= {"no resources configured"}


# --- config errors -----------------------------------------------------------------------


def config_errors(data: Any, prefix: str = "mellanox.com") -> list[str]:
    with pytest.raises(PoolConfigError) as caught:
        parse_pool_config(data, prefix)
    return list(caught.value.problems)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "resourceList: required key is missing"),
        ({"resourceList": [], "extra": 1}, "extra: unknown key"),
        ({"resourceList": {}}, "resourceList: must be a list"),
        (
            {"resourceList": [{"selectors": [{}]}]},
            "resourceList[0].resourceName: required key is missing",
        ),
        (
            {"resourceList": [{"resourceName": "x"}]},
            "resourceList[0].selectors: required key is missing",
        ),
        (
            {"resourceList": [resource(selectors=[])]},
            "resourceList[0].selectors: needs at least one selector object",
        ),
        (
            {"resourceList": [resource(selectors={"vendors": []})]},
            "resourceList[0].selectors[0].vendors: must not be empty",
        ),
        (
            {"resourceList": [resource(selectors={"vendor": ["15b3"]})]},
            "resourceList[0].selectors[0].vendor: unknown key",
        ),
        (
            {"resourceList": [resource(selectors={"vdpaType": "vhost"})]},
            "selectors[0].vdpaType: this device-plugin key is not supported by dpunet",
        ),
        (
            {"resourceList": [resource(selectors={"vendors": "15b3"})]},
            "resourceList[0].selectors[0].vendors: must be a list",
        ),
        (
            {"resourceList": [resource(selectors={"vendors": [5555]})]},
            "resourceList[0].selectors[0].vendors[0]: Input should be a valid string",
        ),
        (
            {"resourceList": [resource(selectors={"vendors": ["0x15b3"]})]},
            "resourceList[0].selectors[0].vendors: '0x15b3' is not a 4-digit hex id like '15b3'",
        ),
        (
            {"resourceList": [resource(selectors={"isRdma": "true"})]},
            "resourceList[0].selectors[0].isRdma: Input should be a valid boolean",
        ),
        (
            {"resourceList": [resource(selectors={"pciAddresses": ["02:00.3"]})]},
            "resourceList[0].selectors[0].pciAddresses: '02:00.3' is not a PCI address",
        ),
        (
            {"resourceList": [resource(selectors={"pfNames": ["enp2s0f0np0#2-1"]})]},
            "pfNames: invalid entry 'enp2s0f0np0#2-1': range '2-1' ends before it starts",
        ),
        (
            {"resourceList": [resource(selectors={"pfNames": ["enp2s0f0np0#1-x"]})]},
            "invalid entry 'enp2s0f0np0#1-x': '1-x' is neither an index nor a range like 2-7",
        ),
        (
            {"resourceList": [resource(selectors={"pfNames": ["enp2s0f0np0#"]})]},
            "invalid entry 'enp2s0f0np0#': no VF indices after '#'",
        ),
        (
            {"resourceList": [resource(selectors={"pfNames": ["a#1", "A#3"]})]},
            "entries 'a#1' and 'A#3' name the same PF",
        ),
        (
            {"resourceList": [resource(selectors={"pfNames": [7]})]},
            "pfNames: 7 is not a string",
        ),
        (
            {"resourceList": [resource(selectors={"rootDevices": ["eth0#1"]})]},
            "rootDevices: invalid entry 'eth0#1': 'eth0' is not a PCI address",
        ),
        (
            {"resourceList": [resource("bad-name!")]},
            "resourceList[0].resourceName: 'bad-name!' may only contain letters, digits",
        ),
        (
            {"resourceList": [resource(resourcePrefix="Mellanox_com")]},
            "resourceList[0].resourcePrefix: 'Mellanox_com' is not a lower-case DNS name",
        ),
        (
            {"resourceList": [resource(deviceType="accelerator")]},
            "deviceType: 'accelerator' is not supported by dpunet (only 'netDevice')",
        ),
        (
            {"resourceList": [resource("a"), resource("b"), resource("a")]},
            "resourceList[2].resourceName: 'mellanox.com/a' is already defined by resourceList[0]",
        ),
        (
            {"resourceList": [resource("a"), resource("a", resourcePrefix="mellanox.com")]},
            "resourceList[1].resourceName: 'mellanox.com/a' is already defined by resourceList[0]",
        ),
    ],
)
def test_config_errors_name_the_field(data: Any, expected: str) -> None:
    problems = config_errors(data)
    assert any(expected in problem for problem in problems), problems


def test_same_name_under_different_prefixes_is_fine() -> None:
    config = config_of(resource("a"), resource("a", resourcePrefix="nvidia.com"))
    assert [r.full_name for r in config.resource_list] == ["mellanox.com/a", "nvidia.com/a"]


def test_bad_default_prefix() -> None:
    assert config_errors({"resourceList": []}, prefix="not a prefix") == [
        "default resource prefix: 'not a prefix' is not a lower-case DNS name like 'mellanox.com'"
    ]


def test_every_problem_is_reported(host: SysfsTree) -> None:
    problems = config_errors(
        {"resourceList": [resource(selectors={"vendors": [], "bogus": 1}), {"resourceName": "y"}]}
    )
    assert len(problems) == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("kind: ConfigMap\ndata:\n  a: '{}'\n  b: '{}'\n", "no data.config.json"),
        ("kind: ConfigMap\ndata:\n  config.json: '{oops'\n", "config.json is not valid JSON"),
    ],
)
def test_undecodable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(PoolConfigError, match=expected):
        load_pool_config(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PoolConfigError, match=r"cannot read .*missing\.json"):
        load_pool_config(tmp_path / "missing.json")


def test_range_and_entry_parsers() -> None:
    ranges = parse_function_ranges("0,2-7,9")
    assert [i for i in range(12) if i in ranges] == [0, 2, 3, 4, 5, 6, 7, 9]
    assert str(ranges) == "0,2-7,9"
    entry = parse_pf_selector_entry("netpf0#0-1,3")
    assert (entry.pf, entry.selects(1), entry.selects(2)) == ("netpf0", True, False)
    whole = parse_pf_selector_entry("netpf0")
    assert (whole.functions, whole.selects(63)) == (None, True)
    for bad in ("#1", "a#1#2", "a#-1", "a#1-", "a#,1", "a# 1"):
        with pytest.raises(ValueError):
            parse_pf_selector_entry(bad)


def test_default_route_netdevs_from_proc_net_route(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eno1\t00000000\t0128A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eno1\t0028A8C0\t00000000\t0001\t0\t0\t100\t00FCFFFF\t0\t0\t0\n"
        "enp2s0f0v0\t0040E90A\t00000000\t0001\t0\t0\t0\t00C0FFFF\t0\t0\t0\n"
    )
    assert read_default_route_netdevs(table) == {"eno1"}
    assert read_default_route_netdevs(tmp_path / "absent") == frozenset()
