"""`dpunet lab ...`: the emulated DPU lab."""

from __future__ import annotations

import click


@click.group()
def lab() -> None:
    """Emulated DPU lab: control plane, dpu-host and DPU nodes in network namespaces."""
