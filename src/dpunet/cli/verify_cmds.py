"""`dpunet verify offload|topology|policy`: is the traffic offloaded (and why not), is the
layout right, which ACLs a pod's connection hits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape

from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.lab.runner import LabError
from dpunet.ovsdb.remote import OvsdbError
from dpunet.verify.targets import DEFAULT_PF, DpuTarget, HostTarget, ovn_remotes, select_targets

if TYPE_CHECKING:
    from dpunet.verify.layout import LayoutReport
    from dpunet.verify.offload import OffloadReport
    from dpunet.verify.policy import PolicyTrace

# verify's modules are imported by the commands: every `dpunet` invocation imports this one.

FLOWS_SHOWN = 20

lab_option = click.option(
    "--lab", default=None, help="Inspect the nodes of this lab instead of this machine."
)
node_option = click.option(
    "--node", default=None, help="Only this node of the lab (dpuN or hostN, with its peer)."
)
pf_option = click.option(
    "--pf", default=DEFAULT_PF, show_default=True, help="The DPU NIC's PF on a dpu-host."
)


def _targets(
    lab: str | None,
    node: str | None,
    pf: str,
    sb_remote: str | None = None,
    agent_config: Path | None = None,
    full_nodes: bool = False,
) -> tuple[list[DpuTarget], list[HostTarget]]:
    try:
        return select_targets(lab, node, pf, sb_remote, agent_config, full_nodes)
    except (LabError, ValueError) as exc:
        fail(escape(str(exc)))
        raise AssertionError("unreachable") from exc


@click.group()
def verify() -> None:
    """Check a node: offload of pod traffic, OVS and host layout."""


@verify.command("offload")
@lab_option
@node_option
@click.option("--all-flows", is_flag=True, help="List every software flow, not the busiest 20.")
@output_option()
def offload_cmd(lab: str | None, node: str | None, all_flows: bool, output: str) -> None:
    """Per pod: flows and bytes in hardware vs software, and why each software flow is there.

    Exits 1 when some pod traffic is not offloaded (always so on the lab's userspace
    datapath)."""
    from dpunet.verify.offload import analyse, collect
    from dpunet.verify.unixctl import UnixctlError

    dpus, _ = _targets(lab, node, DEFAULT_PF)
    if not dpus:
        fail("this machine runs no OVS: run `verify offload` on the DPU (or give --lab)")
    reports = []
    for target in dpus:
        try:
            reports.append(analyse(collect(target)))
        except (UnixctlError, OvsdbError, OSError) as exc:
            fail(f"{target.name}: {escape(str(exc))}")
    if not emit_data([r.to_dict() for r in reports], output):
        for report in reports:
            _print_offload(report, all_flows)
    if not all(_fully_offloaded(r) for r in reports):
        raise SystemExit(1)


def _fully_offloaded(report: OffloadReport) -> bool:
    return report.offload_possible and all(
        p.packets_software == 0 and p.flows_tc_software + p.flows_ovs == 0 for p in report.pods
    )


def _print_offload(report: OffloadReport, all_flows: bool) -> None:
    verdict = (
        "[green]offload possible[/]"
        if report.offload_possible
        else "[red]nothing can be offloaded[/]"
    )
    console.print(
        f"[bold]{report.node}[/]: datapath {report.datapath}, hw-offload "
        f"{'on' if report.hw_offload else 'off'} — {verdict}"
    )
    for note in report.notes:
        console.print(f"  [yellow]![/] {escape(note)}")
    rows = [
        (
            p.pod,
            p.representor,
            f"{p.flows_hardware}/{p.flows_tc_software}/{p.flows_ovs}",
            f"{p.packets_hardware}/{p.packets_software}",
            f"{p.bytes_hardware}/{p.bytes_software}",
            "; ".join(f"{k} ({v})" for k, v in sorted(p.reasons.items(), key=lambda kv: -kv[1])),
        )
        for p in report.pods
    ]
    console.print(
        table(
            "pods",
            [
                "pod",
                "representor",
                "flows hw/tc-sw/ovs",
                "packets hw/sw",
                "bytes hw/sw",
                "why software",
            ],
            rows,
        )
    )
    software = [f for f in report.flows if f.layer != "hardware" and (f.pods or all_flows)]
    software.sort(key=lambda f: -f.packets)
    shown = software if all_flows else software[:FLOWS_SHOWN]
    flow_rows = [
        (
            f"{f.in_port} -> {','.join(f.outputs) or '-'}",
            ", ".join(f.pods) or "-",
            f.layer,
            f.packets,
            escape(f.actions[:60]),
            escape("; ".join(r.split(":", 1)[0] for r in f.reasons)),
        )
        for f in shown
    ]
    if software:
        title = f"software flows ({len(shown)} of {len(software)})"
        columns = ["in -> out", "pods", "where", "packets", "actions", "why"]
        console.print(table(title, columns, flow_rows))
    else:
        console.print(
            "no software datapath flow touches a pod right now (idle flows expire after "
            "about 10 s: send traffic, then look again)"
        )
    rep_rows = [
        (
            r.name,
            r.pod or "-",
            "-" if r.tc_in_hw is None else f"{r.tc_in_hw}/{r.tc_not_in_hw}",
            "-" if r.tc_hw_packets is None else f"{r.tc_hw_packets}/{r.tc_sw_packets}",
            "-" if r.vport is None else _share(r.vport.offloaded_share),
            {True: "on", False: "off", None: "-"}[r.hw_tc_offload],
        )
        for r in report.representors
    ]
    console.print(
        table(
            "representors",
            [
                "netdev",
                "pod",
                "tc in_hw/not_in_hw",
                "tc packets hw/sw",
                "vport offloaded",
                "hw-tc-offload",
            ],
            rep_rows,
        )
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@verify.command("topology")
@lab_option
@node_option
@pf_option
@click.option(
    "--sb-remote",
    default=None,
    help="OVN Southbound (unix:PATH or tcp:IP:PORT); default: external_ids:ovn-remote.",
)
@click.option(
    "--agent-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The config file of the agent owning the external bridge (dpunet-dpu's, or "
    "dpunet-node's): its `gateway` section (conntrack zone, NodePort range) is what the "
    "flows are checked with. Default: /etc/dpunet/dpu.yaml or /etc/dpunet/node.yaml if "
    "present (the manifests' paths), with --lab each agent's lab config (the DPUs' "
    "dpunet-dpu, cp's dpunet-node).",
)
@output_option()
def topology_cmd(
    lab: str | None,
    node: str | None,
    pf: str,
    sb_remote: str | None,
    agent_config: Path | None,
    output: str,
) -> None:
    """The DPU's OVS and the host's VFs against the expected layout (on a full node: its
    external bridge's shared gateway flows); each deviation with its fix. Exits 1 on any
    deviation."""
    from dpunet.verify.layout import verify_layout

    dpus, hosts = _targets(lab, node, pf, sb_remote, agent_config, full_nodes=True)
    try:
        report = verify_layout(dpus, hosts)
    except (OvsdbError, OSError) as exc:
        fail(escape(str(exc)))
        raise AssertionError("unreachable") from exc
    if not emit_data(report.to_dict(), output):
        _print_layout(report)
    if report.deviations:
        raise SystemExit(1)


def _print_layout(report: LayoutReport) -> None:
    rows: list[Any] = [
        (
            f.node,
            escape(f.check),
            "[green]ok[/]" if f.ok else "[red]DEVIATION[/]",
            escape(f.found),
            escape(f.fix),
        )
        for f in report.findings
    ]
    console.print(table(None, ["node", "check", "result", "found", "fix"], rows))
    n = len(report.deviations)
    console.print("[green]layout as expected[/]" if not n else f"[red]{n} deviation(s)[/]")


@verify.command("policy")
@lab_option
@click.option("--from", "source", required=True, metavar="NS/POD", help="The client pod.")
@click.option(
    "--to", "destination", required=True, metavar="NS/POD|IP", help="The server pod or address."
)
@click.option(
    "--port", "port", default="80/tcp", show_default=True, metavar="NUMBER[/tcp|udp|sctp]"
)
@click.option("--nb-remote", default=None, help="OVN Northbound (default: the lab's, OVN_NB_DB).")
@click.option("--sb-remote", default=None, help="OVN Southbound (default: the lab's, OVN_SB_DB).")
@output_option()
def policy_cmd(
    lab: str | None,
    source: str,
    destination: str,
    port: str,
    nb_remote: str | None,
    sb_remote: str | None,
    output: str,
) -> None:
    """Whether OVN lets a new connection from a pod through, and which ACLs (dpunet's
    policy identities) its first packet hits: ovn-trace over Northbound/Southbound.
    Exits 0 when it traced (the verdict is in the output)."""
    from dpunet.verify.policy import PolicyTraceError, trace_policy

    try:
        nb, sb = ovn_remotes(lab, nb_remote, sb_remote)
        result = trace_policy(nb, sb, source, destination, port)
    except (LabError, ValueError, PolicyTraceError) as exc:
        fail(escape(str(exc)))
        raise AssertionError("unreachable") from exc
    if not emit_data(result.to_dict(), output):
        _print_policy(result)


def _print_policy(result: PolicyTrace) -> None:
    verdict = "[green]allowed[/]" if result.allowed else "[red]denied[/]"
    console.print(
        f"{escape(result.source)} -> {escape(result.destination)} "
        f"{result.port}/{result.protocol}: {verdict}"
    )
    rows = [
        (
            h.datapath,
            h.stage,
            h.priority,
            escape(h.actions),
            escape(h.acl or (f"ACL {h.foreign_acl} (not dpunet's)" if h.foreign_acl else "OVN")),
            escape(h.acl_match or "-"),
        )
        for h in result.hits
    ]
    console.print(
        table("ACL stages passed", ["switch", "stage", "priority", "action", "ACL", "match"], rows)
    )


if __name__ == "__main__":
    verify()
