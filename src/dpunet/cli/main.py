"""Entry point of the `dpunet` command.

Nouns load lazily: `dpunet host run` imports the host daemon's modules and not the
lab's, the controller's or the benchmarks' (a daemon's start-up time and memory
stay its own).
"""

from __future__ import annotations

import click

from dpunet import __version__
from dpunet.cli.lazy import LazyGroup

# noun -> "module:attribute" of its click group or command
COMMANDS = {
    "lab": "dpunet.cli.lab:lab",
    "sriov": "dpunet.cli.sriov:sriov",
    "host": "dpunet.cli.host_cmds:host",
    "dpu": "dpunet.cli.dpu_cmds:dpu",
    "node": "dpunet.cli.node_agent_cmds:node",
    "controller": "dpunet.cli.controller_cmds:controller",
    "nodes": "dpunet.cli.controller_cmds:nodes",
    "ports": "dpunet.cli.controller_cmds:ports",
    "services": "dpunet.cli.services_cmds:services",
    "policies": "dpunet.cli.policies_cmds:policies",
    "k8s": "dpunet.cli.k8s_cmds:k8s",
    "pki": "dpunet.cli.pki_cmds:pki_group",
    "bench": "dpunet.cli.bench_cmds:bench",
    "verify": "dpunet.cli.verify_cmds:verify",
    "topology": "dpunet.cli.topology_cmds:topology",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="dpunet")
def cli() -> None:
    """dpunet: DPU-offloaded pod networking (SR-IOV VFs + OVS/OVN on the DPU)."""


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
