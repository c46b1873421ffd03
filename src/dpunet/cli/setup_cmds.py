"""`dpunet dpu setup`, `dpunet host setup` and `dpunet node setup`: node setup commands with
a plan and `--dry-run`; `--install-unit` also installs the command as a boot-time systemd
unit (`dpunet.setup.units`), `<noun> remove-unit` removes it.

Runnable on its own for tests and the lab (before/without the main CLI):
`python -m dpunet.cli.setup_cmds dpu setup ...`.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from pyroute2.netlink.exceptions import NetlinkError

from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.linux.netlink import Netlink
from dpunet.ovsdb.local import connect
from dpunet.ovsdb.remote import OvsdbError
from dpunet.settings import describe
from dpunet.setup import dpu as dpu_setup_mod
from dpunet.setup import host as host_setup_mod
from dpunet.setup import node as node_setup_mod
from dpunet.setup import units
from dpunet.setup.plan import Outcome, Plan, SetupError

# the boot unit of each setup command: its name and where it sits in the boot
_UNITS: dict[str, tuple[str, str, dict[str, tuple[str, ...]]]] = {
    "host": (
        "dpunet-host-setup",
        "dpunet host setup: SR-IOV VFs, PF up, hw-tc-offload",
        {
            "after": ("systemd-modules-load.service", "systemd-udev-settle.service"),
            "before": ("kubelet.service",),
        },
    ),
    "dpu": (
        "dpunet-dpu-setup",
        "dpunet dpu setup: OVS external ids, brp0 and the DPU's underlay address",
        {
            "wants": ("ovs-vswitchd.service",),
            "after": ("ovsdb-server.service", "ovs-vswitchd.service"),
            "before": ("ovn-controller.service", "kubelet.service"),
        },
    ),
    "node": (
        "dpunet-node-setup",
        "dpunet node setup: the full node's OVS settings and breth0",
        {
            "wants": ("ovs-vswitchd.service",),
            "after": ("ovsdb-server.service", "ovs-vswitchd.service"),
            "before": ("ovn-controller.service", "kubelet.service"),
        },
    ),
}

_RESULT_STYLE = {
    "no change": "dim",
    "would change": "yellow",
    "changed": "green",
    "warning": "bold yellow",
    "not done": "red",
}


def _result(outcome: Outcome, dry_run: bool) -> str:
    if outcome is Outcome.PENDING:
        return "would change" if dry_run else "not done"
    return str(outcome)


def _summary(plan: Plan, dry_run: bool) -> str:
    pending = len(plan.pending)
    changed = sum(1 for s in plan.steps if s.outcome is Outcome.CHANGED)
    if dry_run:
        return f"dry run: {pending} change(s) planned" if pending else "dry run: no change needed"
    return f"{changed} change(s) made" if changed else "no change"


def _render(
    title: str, plan: Plan, fmt: str, dry_run: bool, extra: dict[str, Any] | None = None
) -> None:
    data: dict[str, Any] = {"dry_run": dry_run, **plan.as_dict(), **(extra or {})}
    data["summary"] = _summary(plan, dry_run)
    for entry in data["steps"]:
        entry["outcome"] = _result(Outcome(entry["outcome"]), dry_run)
    if emit_data(data, fmt):
        return
    rows = []
    for s in plan.steps:
        result = _result(s.outcome, dry_run)
        style = _RESULT_STYLE.get(result, "")
        detail = f" ({s.detail})" if s.detail else ""
        rows.append((s.what, s.current, s.desired, f"[{style}]{result}[/]{detail}"))
    tbl = table(title, ("step", "current", "desired", "result"), rows)
    for column in tbl.columns:
        column.overflow = "fold"  # never hide a value behind an ellipsis
    console.print(tbl)
    for note in plan.notes:
        console.print(f"[cyan]note:[/] {note}")
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(f"[bold]{data['summary']}[/]")


def _dpunet_executable() -> str:
    """The `dpunet` of this installation (next to its interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "dpunet"
    if beside.is_file():
        return str(beside)
    found = shutil.which("dpunet")
    if found is not None:
        return str(Path(found).resolve())
    fail("cannot find the dpunet executable for the unit's ExecStart: pass --dpunet-path")
    return ""  # fail() exits


def _unit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--install-unit, --unit-root and --dpunet-path."""
    for option in reversed(
        [
            click.option(
                "--install-unit",
                is_flag=True,
                help="Also install this command, with these options, as a systemd oneshot "
                "unit run at every boot (with --dry-run: print the unit, write nothing).",
            ),
            click.option(
                "--unit-root",
                type=click.Path(path_type=Path, file_okay=False),
                default=Path("/"),
                show_default=True,
                help="Root under which etc/systemd/system is.",
            ),
            click.option(
                "--dpunet-path",
                help="dpunet executable in the unit's ExecStart.  [default: this one]",
            ),
        ]
    ):
        command = option(command)
    return command


def _boot_unit(noun: str, cfg: Any, dpunet_path: str | None) -> units.BootUnit:
    name, description, order = _UNITS[noun]
    argv = units.setup_argv(dpunet_path or _dpunet_executable(), (noun, "setup"), cfg)
    return units.BootUnit(name, description, argv, **order)


def _unit_report(
    noun: str,
    cfg: Any,
    install: bool,
    root: Path,
    dpunet_path: str | None,
    dry_run: bool,
) -> dict[str, Any] | None:
    """Install (unless `dry_run`) the boot unit of `cfg`; what was (or would be) done."""
    if not install:
        return None
    unit = _boot_unit(noun, cfg, dpunet_path)
    path = units.unit_path(root, unit.name)
    try:
        changes = [] if dry_run else units.install_unit(root, unit)
    except SetupError as exc:
        fail(str(exc))
    return {
        "unit": unit.filename,
        "path": str(path),
        "exec_start": list(unit.argv),
        "changes": changes,
        "text": unit.render() if dry_run else None,
    }


def _show_unit(report: dict[str, Any] | None, output: str) -> None:
    if report is None or output != "table":
        return
    if report["text"] is not None:
        console.print(f"[bold]boot unit {report['path']} (dry run, not written):[/]")
        console.print(report["text"], markup=False, highlight=False)
        return
    for change in report["changes"]:
        console.print(f"[green]boot unit:[/] {change}")
    if report["changes"]:
        console.print(
            "[cyan]note:[/] run `systemctl daemon-reload` for systemd to see the unit now"
        )
    else:
        console.print(f"boot unit {report['path']}: already installed, no change")


def _remove_unit_command(noun: str) -> click.Command:
    @click.command("remove-unit")
    @click.option(
        "--unit-root",
        type=click.Path(path_type=Path, file_okay=False),
        default=Path("/"),
        show_default=True,
        help="Root under which etc/systemd/system is.",
    )
    def remove_unit(unit_root: Path) -> None:
        try:
            removed = units.remove_unit(unit_root, _UNITS[noun][0])
        except SetupError as exc:
            fail(str(exc))
        for line in removed:
            console.print(line)
        if not removed:
            console.print(f"no {_UNITS[noun][0]}.service under {unit_root}: nothing to remove")

    remove_unit.help = f"Disable and delete the boot unit of `dpunet {noun} setup`."
    return remove_unit


def _validation_message(exc: ValidationError) -> str:
    """The problems named by the command line's flags (`--vf-count: ...`)."""
    return describe(exc, field=lambda loc: "--" + "-".join(map(str, loc)).replace("_", "-"))


@contextmanager
def _errors(plan_ref: list[Plan], title: str, fmt: str) -> Iterator[None]:
    """Turn expected failures into a clear message and exit 1; show what was done so far."""
    try:
        yield
    except (SetupError, OvsdbError, NetlinkError, OSError) as exc:
        if plan_ref and any(s.outcome is Outcome.CHANGED for s in plan_ref[0].steps):
            _render(title, plan_ref[0], fmt if fmt == "table" else "table", False)
        if isinstance(exc, NetlinkError):
            fail(f"netlink: {exc.args[1] if len(exc.args) > 1 else exc}")
        if isinstance(exc, OSError) and not isinstance(exc, SetupError):
            fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        fail(str(exc))


def _quiet_libraries() -> None:
    """ovsdbapp logs (with tracebacks) what this command reports itself as an error."""
    for name in ("ovsdbapp", "ovs"):
        logging.getLogger(name).addHandler(logging.NullHandler())
        logging.getLogger(name).propagate = False


@click.group("dpu")
def dpu() -> None:
    """Commands for the DPU (BlueField Arm side)."""


@dpu.command("setup")
@click.option("--host-node", required=True, help="Kubernetes node name of the dpu-host.")
@click.option("--uplink", required=True, help="Uplink netdev (the seed's p0).")
@click.option("--gw-nexthop", required=True, help="Next hop of the node gateway (IPv4).")
@click.option("--encap-ip", help="Geneve endpoint IP.  [default: the uplink's/bridge's IPv4]")
@click.option("--system-id", help="OVS/OVN chassis system-id.  [default: existing, else hostname]")
@click.option("--hostname", help="external_ids:hostname.  [default: existing, else this host's]")
@click.option("--ovn-remote", help="OVN southbound, e.g. tcp:192.0.2.1:6642.  [default: keep]")
@click.option(
    "--address",
    help="The DPU's underlay address (CIDR, e.g. 192.168.41.127/22) to have on the bridge, "
    "whether or not the uplink holds it.  [default: only the uplink's addresses move]",
)
@click.option("--host-pf-rep", default="pf0hpf", show_default=True, help="Host PF representor.")
@click.option("--bridge", default="brp0", show_default=True, help="Bridge holding the uplink.")
@click.option(
    "--datapath-type",
    type=click.Choice(["auto", "system", "netdev"]),
    default="auto",
    show_default=True,
    help="OVS datapath of the bridge. auto: the existing bridge's, else system when the "
    "kernel has the openvswitch datapath, else netdev (userspace).",
)
@click.option(
    "--ovs-db",
    help="Open_vSwitch database.  [default: unix:$OVS_RUNDIR/db.sock, "
    "OVS_RUNDIR=/var/run/openvswitch]",
)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@_unit_options
@output_option()
def dpu_setup_cmd(
    dry_run: bool,
    output: str,
    install_unit: bool,
    unit_root: Path,
    dpunet_path: str | None,
    **options: Any,
) -> None:
    """Configure OVS on the DPU as the seed procedure does: hw-offload, the OVN external
    ids, bridge brp0 with the uplink and the host PF representor, the uplink's IPv4
    addresses and routes moved onto brp0, and --address assigned to brp0. Idempotent;
    shows what it changes."""
    _quiet_libraries()
    values = {k: v for k, v in options.items() if v is not None}
    try:
        cfg = dpu_setup_mod.DpuSetupConfig(**values)
    except ValidationError as exc:
        fail(_validation_message(exc))
    _ovs_setup("dpu", cfg, cfg, dry_run, output, (install_unit, unit_root, dpunet_path))


def _ovs_setup(
    noun: str,
    cfg: dpu_setup_mod.DpuSetupConfig,
    given: Any,
    dry_run: bool,
    output: str,
    unit: tuple[bool, Path, str | None],
) -> None:
    """Plan, apply and show `dpu setup` or `node setup` (`given`: the command's own config,
    for its boot unit)."""
    title = f"{noun} setup" + (" (dry run)" if dry_run else "")
    plan_ref: list[Plan] = []
    with _errors(plan_ref, title, output), connect(cfg.ovs_db) as db, Netlink() as nl:
        state = dpu_setup_mod.gather_state(cfg, db, nl)
        plan = dpu_setup_mod.plan_dpu(cfg, state)
        plan_ref.append(plan)
        if not dry_run:
            dpu_setup_mod.apply_dpu(cfg, plan, state, db, nl)
    resolved = {
        "datapath_type": plan.datapath_type,
        "encap_ip": plan.encap_ip,
        "system_id": plan.system_id,
        "hostname": plan.hostname,
        "bridge_hwaddr": plan.hwaddr,
    }
    report = _unit_report(noun, given, *unit, dry_run)
    _render(title, plan, output, dry_run, {"resolved": resolved, "boot_unit": report})
    _show_unit(report, output)


@click.group("host")
def host() -> None:
    """Commands for the dpu-host (x86 side, where the VFs are)."""


@host.command("setup")
@click.option("--pf", required=True, help="PF netdev, e.g. enp2s0f0np0.")
@click.option("--num-vfs", required=True, type=int, help="Number of VFs the PF should have.")
@click.option("--mgmt-vf", default=0, show_default=True, type=int, help="VF of the mgmt port.")
@click.option(
    "--sysfs-root",
    envvar="DPUNET_SYSFS_ROOT",
    help="sysfs root.  [default: $DPUNET_SYSFS_ROOT, else /sys]",
)
@click.option(
    "--timeout",
    default=host_setup_mod.DEFAULT_VF_TIMEOUT,
    show_default=True,
    type=float,
    help="Seconds to wait for the VF netdevs.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@_unit_options
@output_option()
def host_setup_cmd(
    dry_run: bool,
    output: str,
    install_unit: bool,
    unit_root: Path,
    dpunet_path: str | None,
    **options: Any,
) -> None:
    """Create the PF's VFs, bring the PF up and enable hw-tc-offload, as the seed procedure
    does; then list the VFs. Idempotent; shows what it changes."""
    values = {k: v for k, v in options.items() if v is not None}
    try:
        cfg = host_setup_mod.HostSetupConfig(**values)
    except ValidationError as exc:
        fail(_validation_message(exc))
    title = "host setup" + (" (dry run)" if dry_run else "")
    plan_ref: list[Plan] = []
    with _errors(plan_ref, title, output), Netlink() as nl:
        state = host_setup_mod.gather_state(cfg, nl)
        plan = host_setup_mod.plan_host(cfg, state)
        plan_ref.append(plan)
        if not dry_run:
            host_setup_mod.apply_host(cfg, plan, state, nl)
        numvfs = plan.find("sriov_numvfs")
        vfs = host_setup_mod.vf_table(cfg) if not (dry_run and numvfs and numvfs.pending) else []
    report = _unit_report("host", cfg, install_unit, unit_root, dpunet_path, dry_run)
    _render(title, plan, output, dry_run, {"vfs": vfs, "boot_unit": report})
    if output == "table" and vfs:
        console.print(
            table(
                f"VFs of {cfg.pf}",
                ("vf", "pci", "netdev", "mac", "driver", "role"),
                [
                    (v["index"], v["pci"], v["netdev"], v["mac"], v["driver"], v["role"])
                    for v in vfs
                ],
            )
        )
    _show_unit(report, output)


@click.command("setup")
@click.option("--uplink", required=True, help="The node's uplink netdev, e.g. eth0.")
@click.option(
    "--bridge", default=node_setup_mod.FULL_NODE_BRIDGE, show_default=True,
    help="Gateway bridge holding the uplink.",
)  # fmt: skip
@click.option(
    "--address",
    help="The node's address (CIDR) to have on the bridge.  [default: the uplink's move]",
)
@click.option("--encap-ip", help="Geneve endpoint IP.  [default: --address, else the uplink's]")
@click.option("--system-id", help="OVS/OVN chassis system-id.  [default: existing, else hostname]")
@click.option("--hostname", help="external_ids:hostname.  [default: existing, else this host's]")
@click.option("--ovn-remote", help="OVN southbound, e.g. tcp:192.0.2.1:6642.  [default: keep]")
@click.option(
    "--datapath-type", type=click.Choice(["auto", "system", "netdev"]), default="auto",
    show_default=True, help="OVS datapath of the bridge (as for `dpu setup`).",
)  # fmt: skip
@click.option("--ovs-db", help="Open_vSwitch database.  [default: unix:$OVS_RUNDIR/db.sock]")
@click.option("--dry-run", is_flag=True, help="Print the plan, change nothing.")
@_unit_options
@output_option()
def node_setup_cmd(
    dry_run: bool,
    output: str,
    install_unit: bool,
    unit_root: Path,
    dpunet_path: str | None,
    **options: Any,
) -> None:
    """Configure OVS on a full node (e.g. the control plane) as the seed's ovs-node and
    ovnkube-node (full mode) do: system-id, hostname, ovn-remote, Geneve encap type and IP,
    ovn-bridge-mappings physnet:breth0, and bridge breth0 holding the uplink and the node's
    address. Idempotent; shows what it changes."""
    _quiet_libraries()
    values = {k: v for k, v in options.items() if v is not None}
    try:
        given = node_setup_mod.NodeSetupConfig(**values)
        cfg = given.plan_config()
    except ValidationError as exc:
        fail(_validation_message(exc))
    _ovs_setup("node", cfg, given, dry_run, output, (install_unit, unit_root, dpunet_path))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _standalone() -> None:
    """dpunet node setup commands (`dpu setup`, `host setup`)."""


_standalone.add_command(dpu)
_standalone.add_command(host)
host.add_command(_remove_unit_command("host"))
dpu_remove_unit = _remove_unit_command("dpu")
node_remove_unit = _remove_unit_command("node")
dpu.add_command(dpu_remove_unit)

if __name__ == "__main__":
    _standalone()
