"""`lab up --from-image`: the podman command of each daemon follows its rendered manifest."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dpunet.deploy.manifests import TOKEN_DIR
from dpunet.lab import image
from dpunet.lab.topology import LabPlan, LabSpec

IMAGE = "localhost/dpunet:test"


def plan() -> LabPlan:
    return LabPlan(LabSpec(name="u", image=IMAGE))


def sources(names: list[str]) -> dict[str, Path]:
    return {name: Path("/src") / name for name in names}


def volumes(argv: list[str]) -> dict[str, str]:
    """--volume SOURCE:TARGET:OPTIONS as {target: SOURCE:OPTIONS}."""
    out = {}
    for flag, value in itertools.pairwise(argv):
        if flag == "--volume":
            source, target, options = value.split(":")
            out[target] = f"{source}:{options}"
    return out


def test_dpu_agent_as_its_daemonset_runs_it() -> None:
    p = plan()
    dpu = p.node("dpu1")
    argv = image.container_argv(
        p, dpu, "dpunet-dpu", IMAGE, sources(["config", "dpu-token", "ovs-run", "sys", "tls"])
    )
    assert argv[argv.index(IMAGE) + 1 :] == ["dpu", "run", "--config", "/etc/dpunet/dpu.yaml"]
    assert "--privileged" in argv and "--pid" not in argv
    assert ["--network", f"ns:/run/netns/{dpu.netns}"] == argv[
        argv.index("--network") : argv.index("--network") + 2
    ]
    assert "DPU_NODE=dpu1" in argv
    mounts = volumes(argv)
    # subPath / subPathExpr pick the key; the token read-only
    assert mounts["/etc/dpunet/dpu.yaml"] == "/src/config/dpu.yaml:rw"
    assert mounts[f"{TOKEN_DIR}/token"] == "/src/dpu-token/dpu1:ro"
    assert mounts["/var/run/openvswitch"] == "/src/ovs-run:rw"
    assert mounts["/sys"] == "/src/sys:rw"
    assert mounts["/etc/dpunet/tls"] == "/src/tls:ro"  # its dpunet-tls-dpu Secret
    assert f"{image.LAB_LABEL}=u" in argv


def test_host_agent_shares_the_host_pid_namespace_and_sees_netns_changes() -> None:
    p = plan()
    names = ["config", "pools", "dpunet-token", "kubelet", "run-dpunet", "state", "devinfo", "tls"]
    argv = image.container_argv(
        p, p.node("host1"), "dpunet-host", IMAGE, sources([*names, "netns", "sys"])
    )
    assert argv[argv.index("--pid") + 1] == "host"
    assert volumes(argv)["/var/run/netns"] == "/src/netns:rw,rslave"
    assert "DPUNET_NODE=host1" in argv


def test_controller_is_not_privileged_and_gets_the_labs_own_paths() -> None:
    p = plan()
    cp = p.node("cp")
    argv = image.container_argv(
        p,
        cp,
        "dpunet-controller",
        IMAGE,
        sources(["config", "tokens", "dpu-tokens", "tls"]),
        (Path("/lab/cp"),),
    )
    assert "--privileged" not in argv
    assert volumes(argv)["/lab/cp"] == "/lab/cp:rw"
    assert argv[-4:] == ["controller", "run", "--config", "/etc/dpunet/controller.yaml"]
    assert image.config_key(IMAGE, "dpunet-controller") == "controller.yaml"


def test_a_volume_the_lab_does_not_supply_gets_a_directory_of_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dpunet.lab.topology.RUN_ROOT", tmp_path)  # made here, not in /run
    p = plan()
    dpu = p.node("dpu1")
    dpu_dir = p.node_dir(dpu)
    assert (
        image.volume_source(p, dpu, {"name": "x", "hostPath": {"path": "/etc/thing"}})
        == dpu_dir / "host" / "etc" / "thing"
    )
    assert image.volume_source(p, dpu, {"name": "certs", "secret": {}}) == (
        dpu_dir / "volumes" / "certs"
    )
    assert (dpu_dir / "host" / "etc" / "thing").is_dir()
    assert dpu_dir.is_relative_to(tmp_path)
