"""Rendering of command results as a rich table, JSON or YAML (`-o`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

OUTPUT_FORMATS = ("table", "json", "yaml")

# Piped output (logs, CI, `| grep`) is not cut to 80 columns: PCI addresses and MACs
# must survive intact. A terminal keeps its own width.
_PIPE_WIDTH = 200
console = Console(width=None if sys.stdout.isatty() else _PIPE_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else _PIPE_WIDTH)


def output_option(default: str = "table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The `-o/--output table|json|yaml` option every listing command takes."""
    return click.option(
        "-o",
        "--output",
        "output",
        type=click.Choice(OUTPUT_FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


def emit_data(data: Any, fmt: str) -> bool:
    """Print `data` as JSON or YAML when `fmt` asks for it; False means "render a table"."""
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        return True
    if fmt == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)
        return True
    return False


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A rich table with the given header and rows (values rendered with str())."""
    tbl = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*("" if v is None else str(v) for v in row))
    return tbl


def fail(message: str, code: int = 1) -> None:
    """Print an error for a person (no traceback) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise SystemExit(code)
