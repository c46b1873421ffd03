"""`dpunet host run`: the dpu-host node daemon (`dpunet-host`) in the foreground.

Exported as the click command `host_run` (mounted under the `host` group by the main CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dpunet import logs
from dpunet.cli.agent_options import node_agent_options
from dpunet.cli.output import fail
from dpunet.lifecycle import run_until_signalled
from dpunet.settings import SettingsError, load_settings


@click.command("run")
@node_agent_options("host-agent.md")
@click.option("--sysfs-root", type=click.Path(path_type=Path), help="[default: $DPUNET_SYSFS_ROOT]")
@click.option("--pf", help="The DPU NIC's PF.  [default: enp2s0f0np0]")
@click.option("--pool-config", type=click.Path(path_type=Path), help="Device-plugin config.json.")
@click.option("--mgmt-vf", type=int, help="Management VF index.  [default: 0]")
@click.option("--metrics-address", help="HOST:PORT of /metrics.  [default: 127.0.0.1:9478]")
@click.option("--reconcile-interval", type=float, help="Seconds between reconciles.  [default: 10]")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
def host_run(config_file: Path | None, **options: Any) -> None:
    """Run the dpu-host daemon: CNI server, VF hand-out, management port, reconcile."""
    # The daemon's modules load only when it runs (every `dpunet` command imports this one).
    from dpunet.contract.client import ClientError
    from dpunet.host.config import HostAgentConfig
    from dpunet.host.daemon import HostDaemon
    from dpunet.hw.pools import PoolConfigError
    from dpunet.tls import TlsError

    try:
        cfg = load_settings(HostAgentConfig, config_file, overrides=options)
        logs.configure("json" if cfg.log_format == "json" else "kv", cfg.log_level)
        run_until_signalled(HostDaemon(cfg).run)
    except (SettingsError, PoolConfigError, ClientError, TlsError, OSError) as exc:
        fail(str(exc))


if __name__ == "__main__":
    host_run()
