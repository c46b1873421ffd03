"""`dpunet topology`: host -> VFs -> pods, DPU -> representors -> br-int -> tunnels / brp0 ->
uplink, from live state, as a tree in the terminal or a graphviz picture."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click
from rich.markup import escape

from dpunet.cli.output import console, emit_data, fail, output_option
from dpunet.cli.verify_cmds import lab_option, node_option, pf_option
from dpunet.lab.runner import LabError
from dpunet.ovsdb.remote import OvsdbError
from dpunet.verify.targets import select_targets


@click.command("topology")
@lab_option
@node_option
@pf_option
@click.option(
    "--output-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the picture: .svg, .png (graphviz) or .dot.",
)
@output_option()
def topology(
    lab: str | None, node: str | None, pf: str, output_file: Path | None, output: str
) -> None:
    """Draw the live topology of this machine (or of a lab's nodes)."""
    from dpunet.topology.model import gather
    from dpunet.topology.render import RenderError, trees, write_graph

    try:
        dpus, hosts = select_targets(lab, node, pf)
        picture = gather(dpus, hosts)
        if output_file is not None:
            write_graph(picture, output_file)
    except (LabError, ValueError, OvsdbError, RenderError, OSError) as exc:
        fail(escape(str(exc)))
        raise AssertionError("unreachable") from exc
    if emit_data(asdict(picture), output):
        return
    for tree in trees(picture):
        console.print(tree)
    if output_file is not None:
        console.print(f"picture written to {output_file}")


if __name__ == "__main__":
    topology()
