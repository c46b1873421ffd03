"""The topology picture: port roles, the terminal tree and the graphviz graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from dpunet.topology.model import (
    BridgeEntry,
    DpuSide,
    HostSide,
    Picture,
    PortEntry,
    VfEntry,
    classify_ports,
)
from dpunet.topology.render import RenderError, _q, to_dot, trees, write_graph
from dpunet.verify.ovsview import BridgeView, IfaceView, OvsView


def picture() -> Picture:
    host = HostSide(
        "host1",
        "enp2s0f0np0",
        "0000:02:00.0",
        (
            VfEntry(0, "0000:02:00.3", "ovn-k8s-mp0", mgmt=True),
            VfEntry(1, "0000:02:00.4", None, "default/web", "198.18.1.3/24"),
            VfEntry(2, "0000:02:00.5", "enp2s0f0v2"),
        ),
        ("198.18.1.2/24",),
        "dpu1",
    )
    dpu = DpuSide(
        "dpu1",
        (
            BridgeEntry(
                "br-int",
                "system",
                "secure",
                (
                    PortEntry("br-int", "internal"),
                    PortEntry("pf0vf1", "vf-rep", 1, "default_web", "default/web"),
                    PortEntry("ovn-k8s-mp0", "vf-rep", 0, "k8s-host1", "mgmt:host1"),
                    PortEntry("ovn-cp-0", "tunnel", remote="cp@192.0.2.10"),
                    PortEntry("patch-a", "patch", peer="patch-b"),
                ),
            ),
            BridgeEntry(
                "brp0",
                "system",
                None,
                (
                    PortEntry("p0", "uplink"),
                    PortEntry("pf0hpf", "pf-rep"),
                    PortEntry("patch-b", "patch", peer="patch-a"),
                ),
                ("192.0.2.201/24",),
            ),
        ),
        hw_offload=True,
        host="host1",
    )
    return Picture([host], [dpu])


def test_classify_ports() -> None:
    ifaces = {
        "pf0vf1": IfaceView("pf0vf1", "br-int", "pf0vf1", "", {"iface-id": "default_web"}),
        "ovn-cp-0": IfaceView(
            "ovn-cp-0", "br-int", "ovn-cp-0", "geneve", {}, {"remote_ip": "192.0.2.10"},
            port_external_ids={"ovn-chassis-id": "cp@192.0.2.10"},
        ),
        "ovn-x-0": IfaceView(
            "ovn-x-0", "br-int", "ovn-x-0", "geneve", {}, {"remote_ip": "192.0.2.11"}
        ),
        "patch-a": IfaceView("patch-a", "br-int", "patch-a", "patch", {}, {"peer": "patch-b"}),
        "br-int": IfaceView("br-int", "br-int", "br-int", "internal"),
        "weird": IfaceView("weird", "br-int", "weird", ""),
    }  # fmt: skip
    ovs = OvsView(
        bridges={"br-int": BridgeView("br-int", "system", "secure", tuple(ifaces))},
        interfaces=ifaces,
    )
    ports = {p.name: p for p in classify_ports(ovs, "br-int", {"pf0vf1": ("vf", 1)})}
    assert ports["pf0vf1"] == PortEntry("pf0vf1", "vf-rep", 1, "default_web", "default/web")
    assert ports["ovn-cp-0"].kind == "tunnel" and ports["ovn-cp-0"].remote == "cp@192.0.2.10"
    assert ports["ovn-x-0"].remote == "192.0.2.11"
    assert ports["patch-a"].peer == "patch-b"
    assert ports["br-int"].kind == "internal"
    assert ports["weird"].kind == "other"


def test_tree_lists_host_then_its_dpu() -> None:
    console = Console(width=200, record=True, color_system=None)
    for tree in trees(picture()):
        console.print(tree)
    text = console.export_text()
    assert text.index("host1 (dpu-host)") < text.index("dpu1 (DPU, hw-offload on)")
    assert "VF1 0000:02:00.4 (not in the host namespace) -> pod default/web 198.18.1.3/24" in text
    assert "VF0 0000:02:00.3 ovn-k8s-mp0 -> management port 198.18.1.2/24" in text
    assert "VF2 0000:02:00.5 enp2s0f0v2 -> free" in text
    assert "ovn-cp-0 (tunnel) -> cp@192.0.2.10" in text
    assert "brp0 (system, 192.0.2.201/24)" in text
    assert "br-int (internal)" not in text


def test_dot_graph() -> None:
    dot = to_dot(picture())
    assert dot.startswith("digraph dpunet {") and dot.rstrip().endswith("}")
    assert '"cluster_host1"' in dot and '"cluster_dpu1_br-int"' in dot
    assert '"host1/vf1" -> "dpu1/pf0vf1" [style=bold, label="VF1 <-> pf0vf1"];' in dot
    assert '"host1/pod/default/web" -> "host1/vf1"' in dot
    assert '"host1/pf" -> "dpu1/pf0hpf"' in dot
    assert '"dpu1/ovn-cp-0" -> "remote/cp@192.0.2.10"' in dot
    assert dot.count('label="patch"') == 1  # one edge per patch pair
    assert '"dpu1/p0" -> "underlay"' in dot
    assert "free VFs\\nVF2" in dot


def test_quoting() -> None:
    assert _q('a "b"\\c\nd') == '"a \\"b\\"\\\\c\\nd"'


def test_write_dot_and_errors(tmp_path: Path) -> None:
    path = write_graph(picture(), tmp_path / "t.dot")
    assert path.read_text() == to_dot(picture())
    with pytest.raises(RenderError, match="unknown picture format"):
        write_graph(picture(), tmp_path / "t.jpg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_write_svg_and_png(tmp_path: Path) -> None:
    svg = write_graph(picture(), tmp_path / "t.svg").read_text()
    assert "<svg" in svg and "pf0vf1" in svg
    png = write_graph(picture(), tmp_path / "t.png").read_bytes()
    assert png.startswith(b"\x89PNG")
