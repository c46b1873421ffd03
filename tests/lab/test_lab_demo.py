"""`dpunet lab demo`: the seed deployment end to end, and the topology picture it writes
while its pods are up."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from commands import dpunet

from dpunet.lab.lab import down, load_plan
from dpunet.lab.pods import pod_rows
from dpunet.topology import write_lab_topology

pytestmark = pytest.mark.lab

LAB = "dmo"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The demo run with --keep (so the test can compare the picture with the live pods)."""
    down(LAB)
    picture = tmp_path_factory.mktemp("demo") / "demo-topology.svg"
    try:
        proc = dpunet(
            "lab", "demo", "--name", LAB, "--keep", "--topology-out", str(picture), timeout=600
        )
        yield picture, proc.stdout
    finally:
        down(LAB)


def svg_text(path: Path) -> str:
    """Every text of an SVG document (fails the test when it is not well-formed SVG)."""
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    return "\n".join(t for el in root.iter() for t in (el.text, el.get("title")) if t)


def vf_pods() -> list[dict[str, object]]:
    rows = [r for r in pod_rows(load_plan(LAB)) if r["pci"]]
    assert rows, "the demo has pods on VFs"
    return rows


def test_demo_writes_the_picture_where_it_says(demo: tuple[Path, str]) -> None:
    picture, stdout = demo
    assert picture.is_file()
    assert "topology picture written to" in stdout
    assert str(picture) in stdout.replace("\n", "")


def test_picture_shows_each_pods_vf_and_representor(demo: tuple[Path, str]) -> None:
    picture, _ = demo
    text = svg_text(picture)
    for row in vf_pods():
        assert row["representor"], row
        assert str(row["pci"]) in text, f"VF {row['pci']} of {row['name']} not in the picture"
        assert str(row["representor"]) in text, f"representor of {row['name']} not drawn"
        assert f"pod default/{row['name']}" in text or str(row["name"]) in text


def test_demo_prints_the_text_tree_with_the_pods(demo: tuple[Path, str]) -> None:
    _, stdout = demo
    for row in vf_pods():
        assert str(row["pci"]) in stdout
        assert str(row["representor"]) in stdout


def test_png_of_the_same_lab_is_a_png(demo: tuple[Path, str], tmp_path: Path) -> None:
    written = write_lab_topology(LAB, tmp_path / "lab.png")
    assert written.read_bytes()[:8] == PNG_MAGIC


def test_unknown_picture_format_is_refused_before_anything_starts(tmp_path: Path) -> None:
    name = "dmx"
    proc = dpunet(
        "lab", "demo", "--name", name, "--topology-out", str(tmp_path / "pic.jpeg"), check=False
    )
    assert proc.returncode != 0
    assert "use a .svg, .png or .dot" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert not Path(f"/run/dpunet/lab/{name}").exists()
