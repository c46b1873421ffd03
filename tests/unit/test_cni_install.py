"""Installing dpunet-cni as a launcher + compiled package, and running it like a runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cni_harness import attachment_env, netconf, run_shim

from dpunet.cni.install import PACKAGE_NAME, install_shim
from dpunet.cni.wire import ErrorCode


def test_installed_launcher_runs_the_shim(tmp_path: Path) -> None:
    bin_dir, lib_dir = tmp_path / "opt" / "cni" / "bin", tmp_path / "lib" / "dpunet"
    launcher = install_shim(bin_dir, lib_dir, python=sys.executable)
    assert launcher == bin_dir / "dpunet-cni"
    assert os.access(launcher, os.X_OK)
    assert launcher.read_text().startswith(f"#!{sys.executable} -IS\n")
    compiled = {p.name.split(".")[0] for p in (lib_dir / PACKAGE_NAME / "__pycache__").iterdir()}
    assert compiled == {"__init__", "shim", "wire"}
    assert install_shim(bin_dir, lib_dir, python=sys.executable) == launcher  # idempotent
    assert sorted(p.name for p in bin_dir.iterdir()) == ["dpunet-cni", "ovn-k8s-cni-overlay"]
    # the seed's NAD type runs the same shim
    seed = bin_dir / "ovn-k8s-cni-overlay"
    assert seed.read_text() == launcher.read_text()
    version = run_shim({"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.3.1"}, command=[str(seed)])
    assert (version.returncode, version.output["cniVersion"]) == (0, "0.3.1")

    version = run_shim({"CNI_COMMAND": "VERSION"}, {"cniVersion": "0.3.1"}, command=[str(launcher)])
    assert (version.returncode, version.output["cniVersion"]) == (0, "0.3.1")
    down = run_shim(
        attachment_env("ADD"), netconf(), socket=tmp_path / "none.sock", command=[str(launcher)]
    )
    assert down.code == ErrorCode.TRY_AGAIN_LATER


def test_launcher_does_not_depend_on_the_virtualenv(tmp_path: Path) -> None:
    launcher = install_shim(tmp_path / "bin", tmp_path / "lib", python="/usr/bin/python3")
    proc = subprocess.run(
        [str(launcher)],
        input=b"{}",
        env={"CNI_COMMAND": "VERSION"},
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b'"supportedVersions"' in proc.stdout
