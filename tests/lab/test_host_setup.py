"""`dpunet host setup` against the lab's emulated SR-IOV NIC (`dpunet.lab.nicd`, FUSE sysfs).

Each test starts its own NIC daemon for one host/DPU pair of throwaway namespaces
(`dpst-<id>-host`, `dpst-<id>-dpu`), PF `enp2s0f0np0` with 8 total VFs and none created,
and runs the real command inside the host namespace with `--sysfs-root` (or
`DPUNET_SYSFS_ROOT`) pointing at the emulated tree: writing `sriov_numvfs` there creates
and destroys VF/representor veth pairs with the kernel's semantics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nic_harness import PF, emulated_nic

pytestmark = pytest.mark.lab

TOTAL_VFS = 8


@dataclass
class Nic:
    """One emulated NIC: the host and DPU namespaces and the host's sysfs root."""

    host_ns: str
    dpu_ns: str
    sysfs_root: Path

    def setup(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `host setup` in the host namespace (with `--sysfs-root` unless `env` says)."""
        root = [] if env else ["--sysfs-root", str(self.sysfs_root)]
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        cmd = ["ip", "netns", "exec", self.host_ns, "env", *extra, sys.executable, "-m",
               "dpunet.cli.setup_cmds", "host", "setup", "--pf", PF, *root, *args]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def setup_json(self, *args: str) -> dict[str, Any]:
        proc = self.setup(*args, "-o", "json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def numvfs(self) -> int:
        return int((self.sysfs_root / "class/net" / PF / "device/sriov_numvfs").read_text())

    def links(self, ns: str) -> dict[str, dict[str, Any]]:
        out = subprocess.run(
            ["ip", "-n", ns, "-j", "link"], capture_output=True, text=True, check=True
        )
        return {link["ifname"]: link for link in json.loads(out.stdout)}

    def vf_netdevs(self) -> dict[str, int]:
        """VF netdev name -> ifindex in the host namespace."""
        return {
            n: li["ifindex"]
            for n, li in self.links(self.host_ns).items()
            if n.startswith(f"{PF[:-3]}v")
        }

    def representors(self) -> list[str]:
        return sorted(n for n in self.links(self.dpu_ns) if n.startswith("pf0vf"))


@pytest.fixture
def nic() -> Iterator[Nic]:
    with emulated_nic("dpst", numvfs=0, total_vfs=TOTAL_VFS) as emulated:
        # start from the PF administratively down, as after a boot
        subprocess.run(["ip", "-n", emulated.host_ns, "link", "set", PF, "down"], check=True)
        yield Nic(emulated.host_ns, emulated.dpu_ns, emulated.sysfs_root)


def test_creates_vfs_from_zero_and_second_run_is_a_no_op(nic: Nic) -> None:
    dry = nic.setup_json("--num-vfs", "3", "--dry-run")
    assert dry["dry_run"] is True and dry["summary"] == "dry run: 2 change(s) planned"
    assert nic.numvfs() == 0 and nic.vf_netdevs() == {}
    assert nic.links(nic.host_ns)[PF]["operstate"] == "DOWN"

    first = nic.setup_json("--num-vfs", "3")
    steps = {s["kind"]: s for s in first["steps"]}
    assert (steps["sriov_numvfs"]["current"], steps["sriov_numvfs"]["outcome"]) == ("0", "changed")
    assert steps["link_up"]["outcome"] == "changed"
    # the emulated PF is a veth: hw-tc-offload is fixed off -> a warning, not a failure
    assert steps["feature"]["outcome"] == "warning"
    assert "not supported by this device" in steps["feature"]["detail"]
    assert nic.numvfs() == 3
    assert [(v["index"], v["pci"], v["netdev"], v["role"]) for v in first["vfs"]] == [
        (0, "0000:02:00.3", f"{PF[:-3]}v0", "mgmt"),
        (1, "0000:02:00.4", f"{PF[:-3]}v1", "pool"),
        (2, "0000:02:00.5", f"{PF[:-3]}v2", "pool"),
    ]
    netdevs = nic.vf_netdevs()
    assert sorted(netdevs) == [v["netdev"] for v in first["vfs"]]
    assert [v["mac"] for v in first["vfs"]] == [
        nic.links(nic.host_ns)[v["netdev"]]["address"] for v in first["vfs"]
    ]
    assert nic.representors() == ["pf0vf0", "pf0vf1", "pf0vf2"]
    assert "UP" in nic.links(nic.host_ns)[PF]["flags"]

    again = nic.setup_json("--num-vfs", "3")
    assert again["summary"] == "no change"
    assert {s["outcome"] for s in again["steps"]} <= {"no change", "warning"}
    assert nic.vf_netdevs() == netdevs  # same VFs, not recreated
    text = nic.setup("--num-vfs", "3")
    assert text.returncode == 0
    assert "no change" in text.stdout and f"{PF[:-3]}v2" in text.stdout


def test_more_than_totalvfs_fails_and_changes_nothing(nic: Nic) -> None:
    nic.setup_json("--num-vfs", "2")
    before = nic.vf_netdevs()
    proc = nic.setup("--num-vfs", str(TOTAL_VFS + 1))
    assert proc.returncode != 0
    assert (
        f"supports at most {TOTAL_VFS} VFs (sriov_totalvfs); {TOTAL_VFS + 1} requested"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert nic.numvfs() == 2 and nic.vf_netdevs() == before


def test_changing_the_count_goes_through_zero(nic: Nic) -> None:
    nic.setup_json("--num-vfs", "2")
    grown = nic.setup_json("--num-vfs", "5")
    step = next(s for s in grown["steps"] if s["kind"] == "sriov_numvfs")
    assert (step["current"], step["desired"], step["outcome"]) == ("2", "5", "changed")
    assert "through 0" in step["detail"]
    assert any("removes the 2 existing VFs" in w for w in grown["warnings"])
    assert nic.numvfs() == 5 and len(nic.vf_netdevs()) == 5
    assert nic.representors() == [f"pf0vf{i}" for i in range(5)]
    nic.setup_json("--num-vfs", "0")
    assert nic.numvfs() == 0 and nic.vf_netdevs() == {} and nic.representors() == []


def test_sysfs_root_from_environment_and_bad_input(nic: Nic) -> None:
    via_env = nic.setup(
        "--num-vfs", "1", "-o", "json", env={"DPUNET_SYSFS_ROOT": str(nic.sysfs_root)}
    )
    assert via_env.returncode == 0, via_env.stderr
    assert nic.numvfs() == 1
    for args, message in (
        (("--num-vfs", "1", "--mgmt-vf", "1"), "--mgmt-vf 1 is not one of VFs 0..0"),
        (("--num-vfs", "-1"), "--num-vfs"),
    ):
        proc = nic.setup(*args)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert nic.numvfs() == 1
