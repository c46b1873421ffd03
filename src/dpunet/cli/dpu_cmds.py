"""`dpunet dpu ...`: provisioning (`setup`) and the daemon (`run`) of a DPU.

Subcommands load lazily, so the daemon (`dpu run`) does not carry the setup command's
terminal rendering in its memory.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# subcommand -> "module:attribute" of its click command
SUBCOMMANDS = {
    "setup": "dpunet.cli.setup_cmds:dpu_setup_cmd",
    "run": "dpunet.cli.dpu_agent_cmds:dpu_run",
}


class _LazyDpu(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command: Any = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group("dpu", cls=_LazyDpu)
def dpu() -> None:
    """Commands for the DPU (BlueField Arm side)."""
