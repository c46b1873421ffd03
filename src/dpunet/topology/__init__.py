"""`dpunet topology`: host -> VFs -> pods and DPU -> representors -> br-int -> tunnels /
brp0 -> uplink, from live state, as a terminal tree or a graphviz picture."""

from __future__ import annotations

from pathlib import Path

from dpunet.topology.model import Picture, gather
from dpunet.topology.render import write_graph
from dpunet.verify.targets import lab_targets


def lab_picture(lab: str) -> Picture:
    """The live picture of every dpu-host/DPU pair of lab `lab`."""
    dpus, hosts = lab_targets(lab)
    return gather(dpus, hosts)


def write_lab_topology(lab: str, path: Path) -> Path:
    """Write the picture of lab `lab` to `path` (.svg, .png or .dot); returns the path.

    What `dpunet lab demo` calls; LabError when the lab is not up, RenderError when the
    picture cannot be written."""
    return write_graph(lab_picture(lab), path)
