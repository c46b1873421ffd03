"""The command-line options every node daemon's `run` shares (`dpunet host run`,
`dpunet node run`): config file, node name, controller, state and CNI socket."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def node_agent_options(doc_page: str) -> Callable[[F], F]:
    """Decorate a `run` command with the shared options (help points at docs/`doc_page`)."""
    options = [
        click.option(
            "-c",
            "--config",
            "config_file",
            type=click.Path(path_type=Path, dir_okay=False),
            help=f"YAML/JSON config file (see docs/{doc_page}).",
        ),
        click.option("--node", help="This node's name (as registered with the controller)."),
        click.option("--controller-url", help="Controller API.  [default: http://127.0.0.1:9477]"),
        click.option(
            "--token-file", type=click.Path(path_type=Path), help="Controller bearer token."
        ),
        click.option(
            "--state-dir", type=click.Path(path_type=Path), help="[default: /var/lib/dpunet]"
        ),
        click.option(
            "--cni-socket", type=click.Path(path_type=Path), help="[default: /run/dpunet/cni.sock]"
        ),
    ]

    def apply(command: F) -> F:
        for option in reversed(options):  # the first option listed comes first in --help
            command = option(command)
        return command

    return apply
