"""The picture as a rich tree (terminal) and as a graphviz graph (DOT, SVG, PNG)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rich.tree import Tree

from dpunet.topology.model import DpuSide, HostSide, Picture, PortEntry

GRAPH_FORMATS = {".svg": "svg", ".png": "png"}
_COLORS = {
    "host": "#dbeafe",
    "pod": "#dcfce7",
    "vf": "#f1f5f9",
    "mgmt": "#fef3c7",
    "vf-rep": "#f1f5f9",
    "pf-rep": "#e0e7ff",
    "uplink": "#fde2e2",
    "tunnel": "#ede9fe",
    "patch": "#fafafa",
    "internal": "#fafafa",
    "other": "#ffffff",
    "remote": "#ffffff",
}


class RenderError(Exception):
    """The picture could not be written (e.g. graphviz missing)."""


# ----------------------------------------------------------------- text tree
def _port_label(port: PortEntry) -> str:
    text = f"{port.name} [dim]({port.kind})[/]"
    if port.pod:
        text += f" -> [green]{port.pod}[/]"
    if port.peer:
        text += f" <-> {port.peer}"
    if port.remote:
        text += f" -> [magenta]{port.remote}[/]"
    return text


def _shared(host: HostSide) -> str:
    """The node IP on the PF and who shares it (the shared gateway)."""
    if not host.pf_addresses:
        return ""
    return f" {', '.join(host.pf_addresses)} [cyan](shared with GR_{host.name})[/]"


def host_tree(host: HostSide) -> Tree:
    """host -> PF -> VFs -> pods."""
    tree = Tree(f"[bold]{host.name}[/] (dpu-host)" + (f", DPU {host.dpu}" if host.dpu else ""))
    pf = tree.add(
        f"PF {host.pf}"
        + (f" {host.pf_pci}" if host.pf_pci else " [red](absent)[/]")
        + _shared(host)
    )
    for vf in host.vfs:
        where = vf.netdev or "[dim](not in the host namespace)[/]"
        if vf.mgmt:
            use = f"management port {', '.join(host.mgmt_addresses) or '[red]no address[/]'}"
        elif vf.pod:
            use = f"[green]pod {vf.pod}[/] {vf.pod_ip or ''}"
        else:
            use = "[dim]free[/]"
        pf.add(f"VF{vf.index} {vf.pci} {where} -> {use}")
    return tree


def dpu_tree(dpu: DpuSide) -> Tree:
    """DPU -> bridges -> ports (representors, tunnels, patch, uplink)."""
    offload = "hw-offload on" if dpu.hw_offload else "[red]hw-offload off[/]"
    tree = Tree(f"[bold]{dpu.name}[/] (DPU, {offload})")
    for bridge in dpu.bridges:
        extra = [bridge.datapath_type]
        if bridge.fail_mode:
            extra.append(f"fail_mode={bridge.fail_mode}")
        extra += list(bridge.addresses)
        node = tree.add(f"[bold]{bridge.name}[/] [dim]({', '.join(extra)})[/]")
        for port in bridge.ports:
            if port.kind != "internal":
                node.add(_port_label(port))
    return tree


def trees(picture: Picture) -> list[Tree]:
    """One tree per host and per DPU, each DPU after its host."""
    out = []
    seen: set[str] = set()
    for host in picture.hosts:
        out.append(host_tree(host))
        for dpu in picture.dpus:
            if dpu.name == host.dpu:
                out.append(dpu_tree(dpu))
                seen.add(dpu.name)
    out += [dpu_tree(d) for d in picture.dpus if d.name not in seen]
    return out


# ---------------------------------------------------------------------- DOT
def _q(text: str) -> str:
    """A DOT double-quoted string (newlines become DOT line breaks)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class _Dot:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def node(self, ident: str, label: str, kind: str, shape: str = "box") -> None:
        color = _COLORS.get(kind, "#ffffff")
        self.lines.append(
            f"  {_q(ident)} [label={_q(label)}, shape={shape}, fillcolor={_q(color)}];"
        )

    def edge(self, a: str, b: str, label: str = "", style: str = "solid") -> None:
        attrs = [f"style={style}"]
        if label:
            attrs.append(f"label={_q(label)}")
        self.lines.append(f"  {_q(a)} -> {_q(b)} [{', '.join(attrs)}];")


def to_dot(picture: Picture) -> str:
    """The picture as a DOT digraph: one cluster per node, bridges as sub-clusters."""
    dot = _Dot()
    vf_ids: dict[tuple[str, int], str] = {}
    pf_ids: dict[str, str] = {}
    for host in picture.hosts:
        h = host.name
        dot.lines.append(f"  subgraph {_q('cluster_' + h)} {{")
        dot.lines.append(
            f"  label={_q(h + ' (dpu-host)')}; style=rounded; bgcolor={_q(_COLORS['host'])};"
        )
        pf_id = f"{h}/pf"
        pf_ids[host.dpu or ""] = pf_id
        shared = (
            f"\n{', '.join(host.pf_addresses)}\n(shared with GR_{h})" if host.pf_addresses else ""
        )
        dot.node(pf_id, f"PF {host.pf}\n{host.pf_pci or 'absent'}{shared}", "vf")
        free = [vf for vf in host.vfs if not vf.mgmt and not vf.pod]
        if free:
            listing = ", ".join(f"VF{vf.index}" for vf in free)
            dot.node(f"{h}/free", f"free VFs\n{listing}", "vf")
        for vf in host.vfs:
            if vf in free:
                continue
            vf_id = f"{h}/vf{vf.index}"
            vf_ids[(host.dpu or "", vf.index)] = vf_id
            dot.node(
                vf_id, f"VF{vf.index} {vf.netdev or ''}\n{vf.pci}", "mgmt" if vf.mgmt else "vf"
            )
            if vf.mgmt:
                addr = ", ".join(host.mgmt_addresses) or "no address"
                dot.node(f"{h}/mgmt", f"management port\n{addr}", "mgmt", shape="ellipse")
                dot.edge(vf_id, f"{h}/mgmt")
            elif vf.pod:
                pod_id = f"{h}/pod/{vf.pod}"
                dot.node(pod_id, f"pod {vf.pod}\n{vf.pod_ip or ''}", "pod", shape="ellipse")
                dot.edge(pod_id, vf_id, "eth0")
        dot.lines.append("  }")
    remotes: set[str] = set()
    for dpu in picture.dpus:
        d = dpu.name
        offload = "hw-offload on" if dpu.hw_offload else "hw-offload off"
        dot.lines.append(f"  subgraph {_q('cluster_' + d)} {{")
        dot.lines.append(f"  label={_q(f'{d} (DPU, {offload})')}; labelloc=b; style=rounded;")
        for bridge in dpu.bridges:
            dot.lines.append(f"  subgraph {_q(f'cluster_{d}_{bridge.name}')} {{")
            extra = ", ".join([bridge.datapath_type, *bridge.addresses])
            dot.lines.append(f"  label={_q(f'{bridge.name} ({extra})')}; style=dashed;")
            for port in bridge.ports:
                if port.kind == "internal":
                    continue
                label = port.name + (f"\n{port.pod}" if port.pod else "")
                dot.node(f"{d}/{port.name}", label, port.kind)
            dot.lines.append("  }")
        dot.lines.append("  }")
        for bridge in dpu.bridges:
            for port in bridge.ports:
                pid = f"{d}/{port.name}"
                if port.kind == "vf-rep" and (key := (d, port.vf_index or 0)) in vf_ids:
                    dot.edge(vf_ids[key], pid, f"VF{port.vf_index} <-> {port.name}", "bold")
                elif port.kind == "pf-rep" and d in pf_ids:
                    dot.edge(pf_ids[d], pid, "PF <-> representor", "bold")
                elif port.kind == "patch" and port.peer and port.name < port.peer:
                    dot.edge(pid, f"{d}/{port.peer}", "patch", "dashed")
                elif port.kind == "tunnel" and port.remote:
                    remote = f"remote/{port.remote}"
                    if remote not in remotes:
                        remotes.add(remote)
                        dot.node(remote, f"chassis {port.remote}", "remote", shape="ellipse")
                    dot.edge(pid, remote, "Geneve")
                elif port.kind == "uplink":
                    dot.node("underlay", "underlay", "remote", shape="ellipse")
                    dot.edge(pid, "underlay")
    header = [
        "digraph dpunet {",
        "  rankdir=LR; compound=true;",
        '  node [style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  graph [fontname="Helvetica", fontsize=11];',
    ]
    return "\n".join([*header, *dot.lines, "}"]) + "\n"


def write_graph(picture: Picture, path: Path) -> Path:
    """Write `path` as `.dot` (DOT text), `.svg` or `.png` (graphviz `dot`)."""
    text = to_dot(picture)
    suffix = path.suffix.lower()
    if suffix in (".dot", ".gv"):
        path.write_text(text)
        return path
    fmt = GRAPH_FORMATS.get(suffix)
    if fmt is None:
        raise RenderError(f"unknown picture format {path.suffix!r} (use .svg, .png or .dot)")
    dot = shutil.which("dot")
    if dot is None:
        raise RenderError(
            "graphviz `dot` is not installed (apt-get install graphviz); write a .dot file instead"
        )
    proc = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(path)], input=text, text=True, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise RenderError(f"dot failed: {proc.stderr.strip()}")
    return path
