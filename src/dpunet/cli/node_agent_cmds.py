"""`dpunet node ...`: provisioning (`setup`, `remove-unit`, loaded lazily) and the full-node
daemon (`dpunet-node`, `run`) in the foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dpunet import logs
from dpunet.cli.agent_options import node_agent_options
from dpunet.cli.lazy import LazyGroup
from dpunet.cli.output import fail
from dpunet.lifecycle import run_until_signalled
from dpunet.settings import SettingsError, load_settings


@click.group(
    cls=LazyGroup,
    lazy_commands={
        "setup": "dpunet.cli.setup_cmds:node_setup_cmd",
        "remove-unit": "dpunet.cli.setup_cmds:node_remove_unit",
        "run": "dpunet.cli.node_agent_cmds:node_run",
    },
)
def node() -> None:
    """Commands for a full node (an ordinary node running OVS itself, e.g. the control plane)."""


@click.command("run")
@node_agent_options("node-agent.md")
@click.option("--ovs-db", help="Local OVS database.  [default: unix:$OVS_RUNDIR/db.sock]")
@click.option("--integration-bridge", help="[default: br-int]")
@click.option("--mgmt-port/--no-mgmt-port", default=None, help="Keep ovn-k8s-mp0 in place.")
@click.option("--metrics-address", help="HOST:PORT of /metrics.  [default: 127.0.0.1:9479]")
@click.option("--reconcile-interval", type=float, help="Seconds between reconciles.  [default: 10]")
@click.option("--port-timeout", type=float, help="Seconds to wait for a port.  [default: 60]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def node_run(config_file: Path | None, **options: Any) -> None:
    """Run the full-node daemon: CNI server, veth pods on br-int, management port, reconcile."""
    # The daemon's modules load only when it runs (every `dpunet` command imports this one).
    from dpunet.contract.client import ClientError
    from dpunet.node.config import NodeAgentConfig
    from dpunet.node.daemon import NodeDaemon
    from dpunet.tls import TlsError

    try:
        cfg = load_settings(NodeAgentConfig, config_file, overrides=options)
        logs.configure("json" if cfg.log_format == "json" else "kv", cfg.log_level)
        run_until_signalled(NodeDaemon(cfg).run)
    except (SettingsError, ClientError, TlsError, OSError) as exc:
        fail(str(exc))


if __name__ == "__main__":
    node_run()
