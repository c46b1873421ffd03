"""`dpunet sriov list` and `dpunet sriov pools` on fixture trees, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from hw_sysfs_tree import (
    DPU_HOST_PF_MACS,
    SEED_CONFIGMAP,
    SEED_PF,
    SEED_PF_ADDRESS,
    bluefield2_dpu,
    seed_host,
)

from dpunet.cli import output
from dpunet.cli.sriov import sriov
from dpunet.hw.sysfs import SYSFS_ROOT_ENV


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich wraps to the terminal width; give it room so cells and messages stay whole."""
    monkeypatch.setattr(output.console, "width", 250)
    monkeypatch.setattr(output.err_console, "width", 250)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(sriov, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def host_root(tmp_path: Path) -> Path:
    tree = seed_host(tmp_path / "host")
    tree.vf(SEED_PF_ADDRESS, 3, "0000:02:00.6", driver="vfio-pci")
    tree.move_to_other_netns("enp2s0f0v2")
    return tree.root


@pytest.fixture
def configmap(tmp_path: Path) -> Path:
    path = tmp_path / "configMap.yaml"
    path.write_text(SEED_CONFIGMAP)
    return path


@pytest.fixture
def no_routes(tmp_path: Path) -> Path:
    path = tmp_path / "route"
    path.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    )
    return path


def test_list_host_table(host_root: Path) -> None:
    result = run("list", "--sysfs-root", str(host_root))
    assert result.exit_code == 0, result.output
    assert "Physical functions" in result.output
    assert "Virtual functions" in result.output
    assert "Representors" not in result.output
    assert SEED_PF in result.output
    assert "4/16" in result.output
    for address in ("0000:02:00.3", "0000:02:00.4", "0000:02:00.5", "0000:02:00.6"):
        assert address in result.output
    assert "(other netns)" in result.output
    assert "(none: vfio-pci)" in result.output


def test_list_host_json(host_root: Path) -> None:
    result = run("list", "--sysfs-root", str(host_root), "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sysfs_root"] == str(host_root)
    [pf] = data["pfs"]
    assert (pf["netdev"], pf["address"], pf["index"], pf["total_vfs"], pf["num_vfs"]) == (
        SEED_PF,
        SEED_PF_ADDRESS,
        0,
        16,
        4,
    )
    vfs = {vf["index"]: vf for vf in data["vfs"]}
    assert vfs[1]["netdev"] == "enp2s0f0v1"
    assert (vfs[2]["netdev"], vfs[2]["netdev_elsewhere"]) == (None, True)
    assert (vfs[3]["driver"], vfs[3]["netdev"], vfs[3]["netdev_elsewhere"]) == (
        "vfio-pci",
        None,
        False,
    )
    assert vfs[0]["pf_mac"] == pf["mac"]
    assert data["representors"] == []


def test_list_root_from_env(host_root: Path) -> None:
    result = run("list", "-o", "yaml", env={SYSFS_ROOT_ENV: str(host_root)})
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["pfs"][0]["netdev"] == SEED_PF


def test_list_dpu(tmp_path: Path) -> None:
    tree = bluefield2_dpu(tmp_path / "dpu")
    tree.rename_netdev("pf0vf0", "ovn-k8s-mp0")
    table_result = run("list", "--sysfs-root", str(tree.root))
    assert table_result.exit_code == 0, table_result.output
    assert "Representors" in table_result.output
    assert "ovn-k8s-mp0" in table_result.output
    assert DPU_HOST_PF_MACS[1] in table_result.output
    data = json.loads(run("list", "--sysfs-root", str(tree.root), "-o", "json").output)
    reps = {rep["netdev"]: rep for rep in data["representors"]}
    assert (reps["ovn-k8s-mp0"]["phys_port_name"], reps["ovn-k8s-mp0"]["kind"]) == ("pf0vf0", "vf")
    assert reps["pf1hpf"]["kind"] == "pf"
    assert reps["p0"]["kind"] == "uplink"
    assert [pf["netdev"] for pf in data["pfs"]] == ["p0", "p1"]


def test_list_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "class" / "net").mkdir(parents=True)
    result = run("list", "--sysfs-root", str(tmp_path))
    assert result.exit_code == 0
    assert "No SR-IOV PFs or representors" in result.output


def test_list_not_a_sysfs_tree(tmp_path: Path) -> None:
    result = run("list", "--sysfs-root", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "is not a sysfs tree" in result.output
    assert "Traceback" not in result.output


def test_pools_seed_configmap_json(host_root: Path, configmap: Path, no_routes: Path) -> None:
    result = run(
        "pools",
        "--config",
        str(configmap),
        "--resource-prefix",
        "mellanox.com",
        "--sysfs-root",
        str(host_root),
        "--route-table",
        str(no_routes),
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [resource] = data["resources"]
    assert resource["resource"] == "mellanox.com/mlnx_sriov_cx6"
    assert resource["count"] == 2
    assert [(d["pci"], d["vf"], d["netdev"]) for d in resource["devices"]] == [
        ("0000:02:00.4", 1, "enp2s0f0v1"),
        ("0000:02:00.5", 2, None),  # in use by a pod: its netdev is in another netns
    ]
    excluded = {e["pci"]: e["reason"] for e in data["excluded"]}
    assert excluded[SEED_PF_ADDRESS] == "SR-IOV PF with 4 VFs enabled"
    assert "pfNames" in excluded["0000:02:00.3"]
    assert "drivers: vfio-pci is not one of mlx5_core" in excluded["0000:02:00.6"]


def test_pools_table_with_mgmt_vf_and_default_route(
    host_root: Path, configmap: Path, tmp_path: Path
) -> None:
    routes = tmp_path / "route"
    routes.write_text(
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
        "eno1\t00000000\t0128A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    )
    result = run(
        "pools",
        "--config",
        str(configmap),
        "--mgmt-vf",
        f"{SEED_PF}:0",
        "--sysfs-root",
        str(host_root),
        "--route-table",
        str(routes),
        env={"DPUNET_RESOURCE_PREFIX": "mellanox.com"},
    )
    assert result.exit_code == 0, result.output
    assert "mellanox.com/mlnx_sriov_cx6" in result.output
    assert f"management-port VF ({SEED_PF}:0)" in result.output
    assert "holds the default route (eno1)" in result.output
    assert "Excluded" in result.output


def test_pools_default_prefix_is_the_plugins(
    host_root: Path, configmap: Path, no_routes: Path
) -> None:
    args = ["pools", "--config", str(configmap), "--sysfs-root", str(host_root)]
    result = run(*args, "--route-table", str(no_routes), "-o", "json")
    assert json.loads(result.output)["resources"][0]["resource"] == "intel.com/mlnx_sriov_cx6"


def test_pools_invalid_config(host_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "resourceList": [
                    {
                        "resourceName": "a",
                        "selectors": {"pfNames": ["enp2s0f0np0#2-1"], "vendor": ["x"]},
                    }
                ]
            }
        )
    )
    result = run("pools", "--config", str(config), "--sysfs-root", str(host_root))
    assert result.exit_code == 1
    assert "invalid pool config" in result.output
    assert "resourceList[0].selectors[0].pfNames: invalid entry 'enp2s0f0np0#2-1'" in result.output
    assert "resourceList[0].selectors[0].vendor: unknown key" in result.output
    assert "Traceback" not in result.output


def test_pools_missing_config(host_root: Path, tmp_path: Path) -> None:
    result = run("pools", "--config", str(tmp_path / "nope.json"), "--sysfs-root", str(host_root))
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_pools_bad_mgmt_vf(host_root: Path, configmap: Path) -> None:
    result = run(
        "pools",
        "--config",
        str(configmap),
        "--mgmt-vf",
        "enp2s0f0np0",
        "--sysfs-root",
        str(host_root),
    )
    assert result.exit_code == 2
    assert "PF:VF-index" in result.output


def test_pools_bad_resource_prefix(host_root: Path, configmap: Path) -> None:
    result = run(
        "pools",
        "--config",
        str(configmap),
        "--resource-prefix",
        "Bad_Prefix",
        "--sysfs-root",
        str(host_root),
    )
    assert result.exit_code == 1
    assert "default resource prefix" in result.output
