"""`dpunet sriov ...`: SR-IOV PFs, VFs, DPU representors and device pools on this machine."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from dpunet.cli.output import console, emit_data, fail, output_option, table
from dpunet.hw.host import PhysicalFunction, VirtualFunction, list_pfs, list_vfs
from dpunet.hw.pools import (
    DEFAULT_RESOURCE_PREFIX,
    DEFAULT_ROUTE_TABLE,
    ManagementVf,
    PoolAssignment,
    PoolConfigError,
    PoolDevice,
    assign_pools,
    discover_pool_devices,
    load_pool_config,
    read_default_route_netdevs,
)
from dpunet.hw.representors import Representor, RepresentorKind, list_representors
from dpunet.hw.sysfs import SYSFS_ROOT_ENV, Sysfs, SysfsReadError

RESOURCE_PREFIX_ENV = "DPUNET_RESOURCE_PREFIX"

sysfs_root_option = click.option(
    "--sysfs-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"sysfs tree to read (default: ${SYSFS_ROOT_ENV}, else /sys).",
)


@click.group()
def sriov() -> None:
    """SR-IOV NICs and DPU representors: devices and device-plugin pools."""


@sriov.command("list")
@sysfs_root_option
@output_option()
def list_devices(sysfs_root: Path | None, output: str) -> None:
    """PFs, VFs and switchdev representors on this machine (host or DPU)."""
    sysfs = _open_sysfs(sysfs_root)
    try:
        pfs = list_pfs(sysfs)
        vfs = [vf for pf in pfs for vf in list_vfs(sysfs, pf)]
        representors = sorted(list_representors(sysfs), key=_representor_order)
    except SysfsReadError as exc:
        fail(escape(str(exc)))
    data = {
        "sysfs_root": str(sysfs.root),
        "pfs": [asdict(pf) for pf in pfs],
        "vfs": [{**asdict(vf), "netdev_elsewhere": vf.netdev_elsewhere} for vf in vfs],
        "representors": [{**asdict(rep), "kind": rep.kind.value} for rep in representors],
    }
    if emit_data(data, output):
        return
    if not (pfs or representors):
        console.print(f"No SR-IOV PFs or representors under {escape(str(sysfs.root))}.")
        return
    if pfs:
        console.print(table("Physical functions", _PF_COLUMNS, [_pf_row(pf) for pf in pfs]))
    if vfs:
        console.print(table("Virtual functions", _VF_COLUMNS, [_vf_row(vf) for vf in vfs]))
    if representors:
        console.print(table("Representors", _REP_COLUMNS, [_rep_row(rep) for rep in representors]))


def _parse_management_vfs(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[ManagementVf]:
    try:
        return [ManagementVf.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@sriov.command("pools")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Device-plugin config.json, or the sriovdp-config ConfigMap manifest holding it.",
)
@click.option(
    "--mgmt-vf",
    "management_vfs",
    multiple=True,
    metavar="PF:N",
    callback=_parse_management_vfs,
    help="VF N of PF (netdev name or PCI address) is the management port: never pooled. "
    "Repeatable.",
)
@click.option(
    "--resource-prefix",
    default=DEFAULT_RESOURCE_PREFIX,
    envvar=RESOURCE_PREFIX_ENV,
    show_default=True,
    show_envvar=True,
    help="Prefix of resources without resourcePrefix (the device plugin's --resource-prefix).",
)
@click.option(
    "--route-table",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_ROUTE_TABLE,
    show_default=True,
    help="IPv4 route table read to find the netdevs holding the default route.",
)
@sysfs_root_option
@output_option()
def pools(
    config_path: Path,
    management_vfs: list[ManagementVf],
    resource_prefix: str,
    route_table: Path,
    sysfs_root: Path | None,
    output: str,
) -> None:
    """Which devices land in which device-plugin resource, and why the others do not."""
    sysfs = _open_sysfs(sysfs_root)
    try:
        config = load_pool_config(config_path, resource_prefix)
    except PoolConfigError as exc:
        problems = "\n".join(f"  {escape(problem)}" for problem in exc.problems)
        fail(f"invalid pool config {escape(str(config_path))}:\n{problems}")
    try:
        assignment = assign_pools(
            config,
            discover_pool_devices(sysfs),
            default_route_netdevs=read_default_route_netdevs(route_table),
            management_vfs=management_vfs,
        )
    except OSError as exc:  # SysfsReadError, or an unreadable route table
        fail(escape(str(exc)))
    if emit_data(_assignment_data(assignment), output):
        return
    rows = []
    for pool in assignment.pools:
        rows += [[pool.resource, *_device_cells(device)] for device in pool.devices]
        if not pool.devices:
            rows.append([pool.resource, "(no devices)", None, None, None, None])
    console.print(table("Resources", ["RESOURCE", "PCI", "PF", "VF", "NETDEV", "DRIVER"], rows))
    if assignment.excluded:
        excluded_rows = [
            [e.device.address, e.device.pf_netdev, e.device.vf_index, e.device.netdev, e.reason]
            for e in assignment.excluded
        ]
        console.print(table("Excluded", ["PCI", "PF", "VF", "NETDEV", "REASON"], excluded_rows))


def _open_sysfs(sysfs_root: Path | None) -> Sysfs:
    sysfs = Sysfs.from_env(sysfs_root)
    if not (sysfs.root / "class").is_dir() and not (sysfs.root / "bus").is_dir():
        fail(f"{escape(str(sysfs.root))} is not a sysfs tree (it has no class/ or bus/)")
    return sysfs


_PF_COLUMNS = ["PF", "PCI", "INDEX", "ID", "DRIVER", "NUMA", "VFS", "MAC", "STATE"]
_VF_COLUMNS = ["PF", "VF", "PCI", "NETDEV", "DRIVER", "ID", "NUMA", "MAC", "STATE"]
_REP_COLUMNS = ["NETDEV", "PORT", "KIND", "PF", "VF", "HOST PF MAC", "MAC", "STATE", "SWITCH ID"]


def _pf_row(pf: PhysicalFunction) -> list[Any]:
    return [
        pf.netdev,
        pf.address,
        pf.index,
        _pci_id(pf.vendor, pf.device),
        pf.driver,
        pf.numa_node,
        f"{pf.num_vfs}/{pf.total_vfs}",
        pf.mac,
        pf.operstate,
    ]


def _vf_row(vf: VirtualFunction) -> list[Any]:
    if vf.netdev:
        netdev = vf.netdev
    elif vf.netdev_elsewhere:
        netdev = "(other netns)"
    else:
        netdev = f"(none: {vf.driver or 'no driver'})"
    return [
        vf.pf_netdev,
        vf.index,
        vf.address,
        netdev,
        vf.driver,
        _pci_id(vf.vendor, vf.device),
        vf.numa_node,
        vf.mac,
        vf.operstate,
    ]


def _rep_row(rep: Representor) -> list[Any]:
    return [
        rep.netdev,
        rep.phys_port_name,
        rep.kind.value,
        rep.pf_index if rep.pf_index is not None else rep.port_index,
        rep.vf_index,
        rep.host_pf_mac,
        rep.mac,
        rep.operstate,
        rep.phys_switch_id,
    ]


_KIND_ORDER = list(RepresentorKind)


def _representor_order(rep: Representor) -> tuple[str, int, int, int, int, str]:
    """Per switch: uplink, host PF, then VFs by index (whatever the netdevs are named)."""
    function = rep.pf_index if rep.pf_index is not None else rep.port_index
    return (
        rep.phys_switch_id,
        _KIND_ORDER.index(rep.kind),
        -1 if function is None else function,
        -1 if rep.controller is None else rep.controller,
        -1 if rep.vf_index is None else rep.vf_index,
        rep.netdev,
    )


def _pci_id(vendor: str | None, device: str | None) -> str | None:
    return f"{vendor}:{device}" if vendor and device else None


def _device_cells(device: PoolDevice) -> list[Any]:
    return [device.address, device.pf_netdev, device.vf_index, device.netdev, device.driver]


def _device_data(device: PoolDevice) -> dict[str, Any]:
    return {
        "pci": device.address,
        "pf": device.pf_netdev,
        "pf_pci": device.pf_address,
        "vf": device.vf_index,
        "netdev": device.netdev,
        "driver": device.driver,
        "vendor": device.vendor,
        "device": device.device,
    }


def _assignment_data(assignment: PoolAssignment) -> dict[str, Any]:
    return {
        "resources": [
            {
                "resource": pool.resource,
                "count": len(pool.devices),
                "devices": [_device_data(device) for device in pool.devices],
            }
            for pool in assignment.pools
        ],
        "excluded": [
            {**_device_data(exclusion.device), "reason": exclusion.reason}
            for exclusion in assignment.excluded
        ],
    }
