"""`dpunet dpu ...`: provisioning (`setup`) and the daemon (`run`) of a DPU.

Subcommands load lazily, so the daemon (`dpu run`) does not carry the setup command's
terminal rendering in its memory.
"""

from __future__ import annotations

import click

from dpunet.cli.lazy import LazyGroup

# subcommand -> "module:attribute" of its click command
SUBCOMMANDS = {
    "setup": "dpunet.cli.setup_cmds:dpu_setup_cmd",
    "run": "dpunet.cli.dpu_agent_cmds:dpu_run",
    "remove-unit": "dpunet.cli.setup_cmds:dpu_remove_unit",
}


@click.group("dpu", cls=LazyGroup, lazy_commands=SUBCOMMANDS)
def dpu() -> None:
    """Commands for the DPU (BlueField Arm side)."""
