"""The dpunet image (issue 14): `make image`'s script builds it here from Debian's packages
and wheels made here, with no registry, and the image runs dpunet and OVN's daemons."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpunet import __version__

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
RUN = ["--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def build_image() -> str:
    """The image as `make image` builds it (quick when it is up to date); its name."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-image.sh")],
        env={**os.environ, "VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def image() -> str:
    return build_image()


def podman(*args: str) -> str:
    proc = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_image_is_named_after_the_version(image: str) -> None:
    assert image == f"localhost/dpunet:{__version__}"
    labels = podman("image", "inspect", "--format", "{{json .Labels}}", image)
    assert f'"org.opencontainers.image.version":"{__version__}"' in labels
    assert '"io.dpunet.source":' in labels


def test_image_runs_dpunet(image: str) -> None:
    assert podman("run", *RUN, image, "--version").strip() == f"dpunet, version {__version__}"
    # the daemons' entrypoints (args only, as the manifests give them) parse
    assert "--config" in podman("run", *RUN, image, "controller", "run", "--help")


def test_image_has_ovn_and_the_cni_shim(image: str) -> None:
    script = (
        "ovn-controller --version && ovn-northd --version && ovsdb-server --version "
        "&& test -x /usr/share/ovn/scripts/ovn-ctl && command -v dpunet-cni "
        "&& python3 -c 'import ovs, dpunet; print(dpunet.__file__)'"
    )
    out = podman("run", *RUN, "--entrypoint", "sh", image, "-c", script)
    assert "ovn-controller 23.03" in out
    assert "/opt/dpunet/venv/bin/dpunet-cni" in out
    assert "/opt/dpunet/venv/lib/python3.11/site-packages/dpunet/__init__.py" in out
