"""`dpunet dpu setup` and `dpunet host setup`: node setup commands with a plan and `--dry-run`.

Runnable on its own for tests and the lab (before/without the main CLI):
`python -m dpunet.cli.setup_cmds dpu setup ...`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from pydantic import ValidationError
from pyroute2.netlink.exceptions import NetlinkError

from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.linux.netlink import Netlink
from dpunet.ovsdb.local import connect
from dpunet.ovsdb.remote import OvsdbError
from dpunet.setup import dpu as dpu_setup_mod
from dpunet.setup import host as host_setup_mod
from dpunet.setup.plan import Outcome, Plan, SetupError

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


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = "--" + "-".join(str(p) for p in err["loc"]).replace("_", "-")
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts)


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
@output_option()
def dpu_setup_cmd(dry_run: bool, output: str, **options: Any) -> None:
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
    title = "dpu setup" + (" (dry run)" if dry_run else "")
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
    _render(title, plan, output, dry_run, {"resolved": resolved})


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
@output_option()
def host_setup_cmd(dry_run: bool, output: str, **options: Any) -> None:
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
    _render(title, plan, output, dry_run, {"vfs": vfs})
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _standalone() -> None:
    """dpunet node setup commands (`dpu setup`, `host setup`)."""


_standalone.add_command(dpu)
_standalone.add_command(host)

if __name__ == "__main__":
    _standalone()
