"""`dpunet dpu run`: the DPU daemon (`dpunet-dpu`) in the foreground.

Exported as the click command `dpu_run` (mounted under the `dpu` group by the main CLI).
Runnable on its own as well: `python -m dpunet.cli.dpu_agent_cmds [OPTIONS]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from dpunet import logs
from dpunet.lifecycle import run_until_signalled


def fail(message: str, code: int = 1) -> NoReturn:
    """`dpunet.cli.output.fail`, loaded only when needed: the running daemon does not carry
    the terminal output modules (rich) in its memory."""
    from dpunet.cli.output import fail as print_and_exit

    print_and_exit(message, code=code)
    raise AssertionError("unreachable")


def without_unused_http_modules() -> None:
    """Keep out of the daemon what `import httpx` loads only because it is installed and
    stubs when it cannot be imported: httpx's command-line client (with rich and pygments,
    about 3 MB) and h2 (HTTP/2, about 1 MB); the daemon's controller client speaks HTTP/1.1
    and never runs the command line."""
    for name in ("httpx._main", "h2"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def with_python_json_parser() -> None:
    """Keep python-ovs's compiled JSON parser (`ovs._json`, which install-deps links into
    the venv for the controller's large updates) out of the DPU daemon: it maps about 1.7 MB
    of shared libraries, and the daemon reads only its own chassis' bindings and bridges,
    small updates the pure-Python parser handles (docs/performance.md, "Memory")."""
    sys.modules.setdefault("ovs._json", None)  # type: ignore[arg-type]


def _flags(options: dict[str, Any]) -> dict[str, Any]:
    """CLI options as config fields (nested for the management port)."""
    mgmt = {
        "enabled": options.pop("mgmt_enabled"),
        "pf_index": options.pop("mgmt_pf"),
        "vf_index": options.pop("mgmt_vf"),
        "name": options.pop("mgmt_name"),
        "mtu": options.pop("mgmt_mtu"),
    }
    return {**options, "mgmt_port": mgmt}


@click.command("run")
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML/JSON config file (see docs/dpu-agent.md).",
)
@click.option("--chassis", help="OVN chassis name.  [default: OVS external_ids:system-id]")
@click.option(
    "--sb-remote",
    "sb_remotes",
    multiple=True,
    help="OVN SB remote (repeat for a cluster).  [default: OVS external_ids:ovn-remote]",
)
@click.option("--ovs-db", help="Open_vSwitch database.  [default: unix:$OVS_RUNDIR/db.sock]")
@click.option("--integration-bridge", help="Integration bridge.  [default: br-int]")
@click.option("--sysfs-root", help="sysfs root.  [default: $DPUNET_SYSFS_ROOT, else /sys]")
@click.option("--plug-mode", type=click.Choice(["agent", "ovn"]), help="[default: agent]")
@click.option("--host-node", help="dpu-host node name.  [default: external_ids:host-k8s-nodename]")
@click.option("--mgmt-port/--no-mgmt-port", "mgmt_enabled", default=None, help="[default: on]")
@click.option("--mgmt-pf", type=int, help="Host PF index of the management VF.  [default: 0]")
@click.option("--mgmt-vf", type=int, help="Management VF index.  [default: 0]")
@click.option("--mgmt-name", help="Management representor's new name.  [default: ovn-k8s-mp0]")
@click.option("--mgmt-mtu", type=int, help="Management port MTU.  [default: from SB, else keep]")
@click.option(
    "--metrics-address",
    help="HOST:PORT of /metrics, /healthz, /readyz; '' disables.  [default: 127.0.0.1:9476]",
)
@click.option("--resync-interval", type=float, help="Seconds between full resyncs.  [default: 60]")
@click.option("--retry-interval", type=float, help="Seconds before a retry.  [default: 5]")
@click.option("--setup/--no-setup", "run_setup", default=None, help="Run dpu setup at start.")
@click.option("--log-format", type=click.Choice(["kv", "json"]), help="[default: kv]")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), help="[default: info]"
)
@click.option("--print-config", is_flag=True, help="Print the merged config as JSON and exit.")
def dpu_run(config_file: Path | None, print_config: bool, **options: Any) -> None:
    """Run the DPU daemon: `dpu setup`, then plug the representors of this chassis'
    Port_Bindings into br-int (plug mode agent) and the management port, level-triggered.
    Settings: config file < DPUNET_* environment < flags."""
    # The daemon's modules load only when it runs (every `dpunet` command imports this one).
    without_unused_http_modules()
    with_python_json_parser()
    from dpunet.dpu import heap
    from dpunet.dpu.agent import Agent, AgentError
    from dpunet.dpu.config import ConfigError, load_config

    try:
        cfg = load_config(config_file, flags=_flags(options))
    except ConfigError as exc:
        fail(f"config: {exc}", code=2)
    if print_config:
        click.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
        return
    logs.configure(cfg.log_format, cfg.log_level)
    heap.limit_arenas()  # before the daemon's threads start
    try:
        run_until_signalled(Agent(cfg).run)
    except AgentError as exc:
        fail(str(exc))


if __name__ == "__main__":
    dpu_run()
