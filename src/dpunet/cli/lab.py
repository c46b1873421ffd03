"""`dpunet lab ...`: the emulated DPU lab (see docs/lab.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.markup import escape
from rich.status import Status
from rich.tree import Tree

from dpunet.cli.lab_policy_cmds import namespace, policy
from dpunet.cli.lab_service_cmds import service
from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.cli.policies_cmds import parse_labels
from dpunet.lab import services
from dpunet.lab.checks import CheckResult
from dpunet.lab.image import DEFAULT_IMAGE
from dpunet.lab.lab import (
    FAILED_LOGS_ROOT,
    Lab,
    StepReporter,
    down,
    exec_in_node,
    lab_names,
    load_plan,
)
from dpunet.lab.pods import (
    DEFAULT_NAMESPACE,
    ENGINES,
    add_pod,
    del_pod,
    parse_port,
    pod_exec,
    pod_rows,
)
from dpunet.lab.runner import LabError, run
from dpunet.lab.selftest import run_checks
from dpunet.lab.topology import DEFAULT_LAB_NAME, LabPlan, LabSpec
from dpunet.settings import describe

name_option = click.option(
    "--name",
    default=DEFAULT_LAB_NAME,
    show_default=True,
    help="Lab name (prefix of its namespaces).",
)


@click.group()
def lab() -> None:
    """Emulated DPU lab: control plane, dpu-host and DPU nodes in network namespaces."""


def _spec(
    name: str, hosts: int, vfs: int, total_vfs: int, bare: bool = False, image: str | None = None
) -> LabSpec:
    try:
        return LabSpec(name=name, hosts=hosts, vfs=vfs, total_vfs=total_vfs, bare=bare, image=image)
    except ValidationError as exc:
        fail(describe(exc, whole="lab"))
        raise AssertionError("unreachable") from exc


def _bring_up(plan: LabPlan) -> dict[str, Any]:
    spec = plan.spec
    console.print(
        f"Bringing up lab [bold]{plan.name}[/] ({spec.hosts} host/DPU pair(s), {spec.vfs} VFs each)"
        + (f", dpunet's daemons from {escape(spec.image)}" if spec.image else "")
    )
    status = console.status("")
    with status:
        times = Lab(plan).up(_step_reporter(status))
    pairs = ", ".join(
        f"{host} {t['busy_s']:.1f}s (ready at {t['ready_s']:.1f}s)"
        for host, t in times["pairs"].items()
    )
    console.print(f"Up in {times['total_s']:.1f}s; per pair, its own steps: {pairs}")
    return times


def _step_reporter(status: Status) -> StepReporter:
    """Shows the running steps in `status` and a line per finished step."""
    running: list[str] = []

    def report(title: str, elapsed: float | None) -> None:
        if elapsed is None:
            running.append(title)
        else:
            running.remove(title)
            console.print(f"  [green]✓[/] {title} [dim]{elapsed:.2f}s[/]")
        status.update(", ".join(f"{t} ..." for t in running))

    return report


@lab.command()
@name_option
@click.option("--hosts", default=1, show_default=True, help="Number of dpu-host/DPU pairs.")
@click.option("--vfs", default=4, show_default=True, help="VFs created on each NIC at start.")
@click.option(
    "--total-vfs", default=16, show_default=True, help="sriov_totalvfs of each emulated NIC."
)
@click.option("--bare", is_flag=True, help="Infrastructure only: no dpunet controller or agents.")
@click.option(
    "--from-image",
    "image",
    is_flag=False,
    flag_value=DEFAULT_IMAGE,
    default=None,
    metavar="[IMAGE]",
    help=f"Run dpunet's daemons as their manifests' containers of IMAGE (default "
    f"{DEFAULT_IMAGE}, built by `make image`).",
)
def up(name: str, hosts: int, vfs: int, total_vfs: int, bare: bool, image: str | None) -> None:
    """Build a lab: namespaces, underlay, emulated NICs, OVS, OVN, dpunet's daemons."""
    plan = LabPlan(_spec(name, hosts, vfs, total_vfs, bare, image))
    try:
        _bring_up(plan)
    except LabError as exc:
        fail(str(exc))
    _print_summary(Lab(plan).status())


@lab.command(name="down")
@name_option
def down_cmd(name: str) -> None:
    """Remove a lab: every namespace, process, mount and file it made."""
    try:
        removed = down(name)
    except LabError as exc:
        fail(str(exc))
    if removed:
        console.print(f"Lab [bold]{name}[/] removed ({len(removed)} items).")
    else:
        console.print(f"No lab named [bold]{name}[/]; nothing to remove.")


@lab.command()
@name_option
@output_option()
def status(name: str, output: str) -> None:
    """Nodes, processes (alive or not), addresses, VFs and representors."""
    try:
        data = Lab(load_plan(name)).status()
    except LabError as exc:
        known = ", ".join(lab_names()) or "none"
        fail(f"{exc} (labs up: {known})")
    if not emit_data(data, output):
        _print_summary(data)
    if not data["healthy"]:
        raise SystemExit(1)


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(name: str, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE with its OVS/OVN/sysfs environment.

    Example: dpunet lab exec dpu1 -- ovs-vsctl show
    """
    try:
        code = exec_in_node(load_plan(name), node, command)
    except (LabError, KeyError) as exc:
        fail(str(exc).strip('"'))
    raise SystemExit(code)


@lab.command()
@name_option
@output_option()
def check(name: str, output: str) -> None:
    """Connectivity checks; exits non-zero on any failure."""
    try:
        results = run_checks(load_plan(name))
    except LabError as exc:
        fail(str(exc))
    if not emit_data([r.__dict__ for r in results], output):
        _print_checks(results)
    if not all(r.ok for r in results):
        raise SystemExit(1)


DEMO_PODS = (("web1", "host1"), ("web2", "host1"), ("ctl1", "cp"))


def default_topology_path(name: str) -> Path:
    """Where `lab demo` writes its picture unless told: next to the logs a failed lab keeps
    (the lab's run directory goes away with it)."""
    return FAILED_LOGS_ROOT / f"dpunet-lab-{name}-topology.svg"


@lab.command()
@name_option
@click.option("--keep", is_flag=True, help="Leave the lab up afterwards.")
@click.option(
    "--topology-out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the topology picture while the pods are up: .svg, .png or .dot"
    " [default: /tmp/dpunet-lab-NAME-topology.svg].",
)
def demo(name: str, keep: bool, topology_out: Path | None) -> None:
    """The seed deployment, emulated: lab up, pods on VFs, the DPU's OVS, a topology
    picture, checks, down."""
    plan = LabPlan(_spec(name, 1, 4, 16))
    picture_path = topology_out or default_topology_path(plan.name)
    if picture_path.suffix.lower() not in (".svg", ".png", ".dot", ".gv"):
        fail(f"--topology-out {picture_path}: use a .svg, .png or .dot file name")
    if not picture_path.parent.is_dir():
        fail(f"--topology-out {picture_path}: directory {picture_path.parent} does not exist")
    ok = False
    try:
        _bring_up(plan)
        _print_summary(Lab(plan).status())
        console.rule("[bold]pods (podman containers, attached by dpunet-cni)")
        for pod_name, node in DEMO_PODS:
            created = add_pod(plan, pod_name, node, "podman")
            via = f"a VF, PCI {created.pci}" if created.pci else "a veth on cp's own OVS"
            console.print(f"  {pod_name} on {node}: eth0 = {via}, {created.ip} {created.mac}")
        dpu = plan.pairs[0].dpu
        console.rule(f"[bold]{dpu.name}[/]: ovs-vsctl show (the seed's final DPU picture)")
        show = run(["ovs-vsctl", "show"], netns=dpu.netns, env=plan.node_env(dpu)).stdout
        console.print(show, highlight=False, markup=False)
        _demo_topology(plan.name, picture_path)
        console.rule("[bold]checks")
        results = run_checks(plan)
        _print_checks(results)
        ok = all(r.ok for r in results)
    except (LabError, KeyError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
    finally:
        if keep and plan.run_dir.exists():
            console.print(
                f"Lab left up: `dpunet lab pod list --name {plan.name}`, "
                f"`dpunet lab down --name {plan.name}` when done."
            )
        else:
            down(plan.name)
            console.print(f"Lab [bold]{plan.name}[/] torn down.")
    if ok:
        console.print(
            "[bold green]demo passed[/]: pods on VFs, switched by OVN on the emulated DPU."
        )
    else:
        console.print("[bold red]demo failed[/]")
        raise SystemExit(1)


@lab.command()
@name_option
@click.argument("node")
@click.argument("service")
def restart(name: str, node: str, service: str) -> None:
    """Start a dpunet daemon of NODE again (e.g. after `kill -9`): dpunet-host, dpunet-dpu, ..."""
    try:
        pid = services.restart(load_plan(name), node, service)
    except (LabError, KeyError) as exc:
        fail(str(exc).strip('"'))
    console.print(f"{service} on {node} started again (pid {pid})")


@lab.command()
@name_option
@click.argument("node")
@click.option(
    "--lose-ovs-db",
    is_flag=True,
    help="OVS's conf.db is lost too (a reinstalled DPU); by default it persists, as on eMMC.",
)
def reboot(name: str, node: str, lose_ovs_db: bool) -> None:
    """Reboot DPU NODE as the hardware does: every process killed, the NIC reset, the run
    directories lost (OVS's conf.db kept), then its boot path (OVS, OVN, dpu setup, dpunet-dpu).
    Pods keep their VFs and get their network back."""
    console.print(f"Rebooting [bold]{node}[/] of lab [bold]{name}[/]")
    started = time.monotonic()
    status = console.status("")
    try:
        with status:
            Lab(load_plan(name)).reboot(node, _step_reporter(status), lose_ovs_db)
    except LabError as exc:
        fail(str(exc))
    console.print(f"{node} rebooted in {time.monotonic() - started:.2f}s")


lab.add_command(service)
lab.add_command(policy)
lab.add_command(namespace)


# ---------------------------------------------------------------------- pods
@lab.group()
def pod() -> None:
    """Workloads (podman containers or bare netns) attached through dpunet's CNI."""


@pod.command("add")
@name_option
@click.argument("pod_name")
@click.option("--node", default="host1", show_default=True, help="dpu-host node or cp.")
@click.option("--engine", type=click.Choice(ENGINES), default="podman", show_default=True)
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True, help="Its namespace.")
@click.option("--labels", default="", metavar="K=V[,K=V]", help="Its labels.")
@click.option(
    "--port", "ports", multiple=True, metavar="NAME:NUMBER[/PROTO]",
    help="A named container port (repeatable), e.g. http:8080/tcp.",
)  # fmt: skip
def pod_add(
    name: str,
    pod_name: str,
    node: str,
    engine: str,
    namespace: str,
    labels: str,
    ports: tuple[str, ...],
) -> None:
    """Start POD_NAME on NODE; its eth0 is a VF (dpu-host) or a veth (cp)."""
    try:
        created = add_pod(
            load_plan(name), pod_name, node, engine, namespace=namespace,
            labels=parse_labels(labels), ports=[parse_port(p) for p in ports],
        )  # fmt: skip
    except (LabError, KeyError, ValueError) as exc:
        fail(escape(str(exc).strip('"')))
    via = f"VF {created.pci}" if created.pci else "veth"
    console.print(
        f"pod [bold]{created.name}[/] on {created.node}: eth0 {created.ip} {created.mac} ({via})"
    )


@pod.command("del")
@name_option
@click.argument("pod_name")
def pod_del(name: str, pod_name: str) -> None:
    """Detach (CNI DEL) and remove POD_NAME."""
    try:
        del_pod(load_plan(name), pod_name)
    except LabError as exc:
        fail(str(exc))
    console.print(f"pod [bold]{pod_name}[/] removed")


@pod.command("list")
@name_option
@output_option()
def pod_list(name: str, output: str) -> None:
    """Pods with their address, MAC, VF and representor."""
    try:
        rows = pod_rows(load_plan(name))
    except LabError as exc:
        fail(str(exc))
    if emit_data(rows, output):
        return
    columns = ["name", "namespace", "node", "ip", "mac", "pci", "representor", "engine", "netns"]
    console.print(table(None, columns, [[r[c] for c in columns] for r in rows]))


@pod.command("exec", context_settings={"ignore_unknown_options": True})
@name_option
@click.argument("pod_name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def pod_exec_cmd(name: str, pod_name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (of this machine) inside POD_NAME's network namespace."""
    try:
        proc = pod_exec(load_plan(name), pod_name, list(command))
    except LabError as exc:
        fail(str(exc))
    click.echo(proc.stdout, nl=False)
    click.echo(proc.stderr, nl=False, err=True)
    raise SystemExit(proc.returncode)


def _demo_topology(name: str, path: Path) -> None:
    """Print the lab's topology tree and write its picture to `path` (a picture that cannot
    be drawn is a warning: the demo is about the network)."""
    from dpunet.topology import lab_picture
    from dpunet.topology.render import RenderError, trees, write_graph

    console.rule(f"[bold]topology[/] (dpunet topology --lab {name})")
    try:
        picture = lab_picture(name)
        for tree in trees(picture):
            console.print(tree)
        write_graph(picture, path)
    except (LabError, RenderError, OSError, ValueError) as exc:
        console.print(f"[yellow]warning:[/] topology picture not written: {escape(str(exc))}")
        return
    console.print(f"topology picture written to [bold]{escape(str(path))}[/]")


# ------------------------------------------------------------------ printing
def _print_checks(results: list[CheckResult]) -> None:
    rows = [
        (r.check, r.source, r.target, "[green]ok[/]" if r.ok else "[red]FAIL[/]", r.detail)
        for r in results
    ]
    console.print(table(None, ["check", "from", "to", "result", "detail"], rows))


def _print_summary(data: dict[str, Any]) -> None:
    rows = []
    for node in data["nodes"]:
        procs = " ".join(
            f"{p['name']}" + ("" if p["alive"] else "[red](dead)[/]") for p in node["processes"]
        )
        rows.append(
            (
                node["name"],
                node["role"],
                node["netns"] if node["present"] else f"[red]{node['netns']} (missing)[/]",
                "\n".join(node["addresses"]),
                procs,
            )
        )
    console.print(
        table(f"Lab {data['name']}", ["node", "role", "netns", "addresses", "processes"], rows)
    )
    nicd = data["nic_daemon"]
    console.print(
        f"emulated NIC daemon: pid {nicd['pid']} "
        + ("[green]alive[/]" if nicd["alive"] else "[red]dead[/]")
    )
    for nic in data["nics"]:
        tree = Tree(
            f"[bold]{nic['host']}[/] PF {nic['pf']} ({nic['pf_pci']})"
            f" <-> [bold]{nic['dpu']}[/] {nic['pf_rep']}"
        )
        for vf in nic["vfs"]:
            tree.add(
                f"VF{vf['index']} {vf['pci']} {vf['netdev'] or '(not in host netns)'}"
                f" {vf['mac'] or ''}  <->  {vf['representor'] or '[red]no representor[/]'}"
            )
        console.print(tree)
    verdict = "[green]healthy[/]" if data["healthy"] else "[red]degraded[/]"
    console.print(f"lab {data['name']}: {verdict}")
