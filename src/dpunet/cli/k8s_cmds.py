"""`dpunet k8s ...`: deployment manifests and the CNI install step of the node pods.

Exported as the click group `k8s` (mounted by the main CLI).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from dpunet.cli.output import fail
from dpunet.settings import SettingsError, load_settings

PARTS = ("install", "dpu-static-pod", "example-pod")


@click.group()
def k8s() -> None:
    """Kubernetes deployment: manifests, CNI installation."""


@k8s.command("render")
@click.option(
    "--values", "values_file", type=click.Path(path_type=Path, dir_okay=False),
    help="YAML values (see deploy/values.yaml); unset fields keep the seed's values.",
)  # fmt: skip
@click.option(
    "--part", type=click.Choice(PARTS), default="install", show_default=True,
    help="install: everything to kubectl apply; dpu-static-pod: the DPU agent for "
    "/etc/kubernetes/manifests; example-pod: the seed's ovs-offload-pod1.",
)  # fmt: skip
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml")
def render_cmd(values_file: Path | None, part: str, output: str) -> None:
    """Print the manifests of a dpunet deployment."""
    from dpunet.deploy.manifests import DeployValues, dpu_static_pod, dump_all, example_pod, render

    try:
        values = load_settings(DeployValues, values_file, environ={})
    except SettingsError as exc:
        fail(str(exc))
    if part == "install":
        manifests = render(values)
    elif part == "dpu-static-pod":
        manifests = [dpu_static_pod(values)]
    else:
        manifests = [example_pod(values)]
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
    else:
        click.echo(dump_all(manifests), nl=False)


@k8s.command("install-cni")
@click.option(
    "--bin-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("/opt/cni/bin"),
    show_default=True,
    help="CNI plugin directory (gets the launcher as dpunet-cni and ovn-k8s-cni-overlay).",
)  # fmt: skip
@click.option(
    "--lib-dir", type=click.Path(path_type=Path, file_okay=False),
    default=Path("/opt/dpunet/cni"), show_default=True,
    help="Where the shim module goes; the same path on the host and here.",
)  # fmt: skip
@click.option(
    "--conf-dir", type=click.Path(path_type=Path, file_okay=False),
    default=Path("/etc/cni/net.d"), show_default=True,
)  # fmt: skip
@click.option(
    "--conf-name", default="10-dpunet.conflist", show_default=True,
    help="CNI config file name; empty: write none.",
)  # fmt: skip
@click.option(
    "--python", default="/usr/bin/python3", show_default=True,
    help="The host's interpreter that runs the shim.",
)  # fmt: skip
def install_cni(bin_dir: Path, lib_dir: Path, conf_dir: Path, conf_name: str, python: str) -> None:
    """Install the dpunet-cni shim and the node's CNI config (init container step)."""
    from dpunet.cni.install import PLUGIN_NAMES, install_shim
    from dpunet.deploy.manifests import cni_config

    try:
        install_shim(bin_dir, lib_dir, python)
        for name in PLUGIN_NAMES:
            click.echo(f"installed {bin_dir / name}")
        if conf_name:
            conf_dir.mkdir(parents=True, exist_ok=True)
            target = conf_dir / conf_name
            temp = target.with_name(f".{conf_name}.tmp")
            temp.write_text(json.dumps(cni_config(), indent=2) + "\n")
            temp.replace(target)
            click.echo(f"wrote {target}")
    except OSError as exc:
        fail(f"cannot install the CNI plugin: {exc}")
