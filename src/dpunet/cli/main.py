"""Entry point of the `dpunet` command."""

from __future__ import annotations

import click

from dpunet import __version__
from dpunet.cli.controller_cmds import controller, nodes, ports
from dpunet.cli.dpu_agent_cmds import dpu_run
from dpunet.cli.host_agent_cmds import host_run
from dpunet.cli.k8s_cmds import k8s
from dpunet.cli.lab import lab
from dpunet.cli.node_agent_cmds import node_run
from dpunet.cli.services_cmds import services
from dpunet.cli.setup_cmds import dpu, host
from dpunet.cli.sriov import sriov


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dpunet")
def cli() -> None:
    """dpunet: DPU-offloaded pod networking (SR-IOV VFs + OVS/OVN on the DPU)."""


@click.group()
def node() -> None:
    """Commands for a full node (an ordinary node running OVS itself, e.g. the control plane)."""


node.add_command(node_run)
dpu.add_command(dpu_run)
host.add_command(host_run)
for command in (lab, sriov, host, dpu, node, controller, nodes, ports, services, k8s):
    cli.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
