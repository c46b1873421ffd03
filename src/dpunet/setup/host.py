"""`dpunet host setup`: the seed's "Worker-host SR-IOV Configuration" as one idempotent command.

Steps, in the seed's order: check `sriov_totalvfs`, write `sriov_numvfs` (through 0 when
it changes from one non-zero count to another: the kernel answers EBUSY otherwise), wait
(bounded) for the VF netdevs, bring the PF up, enable the `hw-tc-offload` ethtool feature
(a warning, not a failure, where the device has it fixed off, e.g. the lab's veth PF).
Discovery is the hardware layer's (`dpunet.hw`); netlink and ethtool the Linux layer's
(`dpunet.linux`).

`plan_host()` is pure (state in, plan out); `gather_state()` reads; `apply_host()` acts.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dpunet.hw.host import PhysicalFunction, VirtualFunction, find_pf, list_vfs
from dpunet.hw.sysfs import Sysfs
from dpunet.linux import ethtool
from dpunet.linux.ethtool import Feature
from dpunet.linux.netlink import Link, Netlink
from dpunet.setup.plan import IfName, Outcome, Plan, SetupError, Step, show, step

HW_TC_OFFLOAD = "hw-tc-offload"
DEFAULT_VF_TIMEOUT = 30.0
_WRITE_ERRORS = {
    errno.ERANGE: "more VFs than the device supports",
    errno.EINVAL: "the driver rejected this VF count",
    errno.EBUSY: "VFs are enabled or in use; the count can only change through 0",
    errno.ENOMEM: "the device could not allocate the VFs",
    errno.EACCES: "permission denied (run as root)",
    errno.EPERM: "permission denied (run as root)",
}


class HostSetupConfig(BaseModel):
    """Input of `dpunet host setup` (the CLI options, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pf: IfName = Field(description="PF netdev, e.g. enp2s0f0np0")
    num_vfs: int = Field(ge=0, description="VFs to have on the PF")
    mgmt_vf: int = Field(0, ge=0, description="VF index used as the management port")
    sysfs_root: str | None = Field(
        None, description="sysfs root; default $DPUNET_SYSFS_ROOT or /sys"
    )
    timeout: float = Field(DEFAULT_VF_TIMEOUT, gt=0, description="seconds to wait for VF netdevs")


@dataclass(frozen=True)
class HostState:
    """Everything `plan_host` looks at."""

    pf_netdev_present: bool
    pf: PhysicalFunction | None
    pf_link: Link | None
    hw_tc_offload: Feature | None
    vfs: tuple[VirtualFunction, ...]


def plan_host(cfg: HostSetupConfig, state: HostState) -> Plan:
    """The steps that bring the host PF from `state` to what `cfg` asks for (pure)."""
    if not state.pf_netdev_present:
        raise SetupError(f"no netdev {cfg.pf!r} in sysfs (class/net)")
    pf = state.pf
    if pf is None:
        raise SetupError(f"{cfg.pf} is not an SR-IOV physical function (no sriov_totalvfs)")
    if cfg.num_vfs > pf.total_vfs:
        raise SetupError(
            f"{cfg.pf} supports at most {pf.total_vfs} VFs (sriov_totalvfs); "
            f"{cfg.num_vfs} requested"
        )
    if cfg.num_vfs and cfg.mgmt_vf >= cfg.num_vfs:
        raise SetupError(f"--mgmt-vf {cfg.mgmt_vf} is not one of VFs 0..{cfg.num_vfs - 1}")
    if state.pf_link is None:
        raise SetupError(f"PF netdev {cfg.pf} is not in this network namespace")

    plan = Plan()
    numvfs = step(
        "sriov_numvfs",
        cfg.pf,
        f"sriov_numvfs (max {pf.total_vfs})",
        str(pf.num_vfs),
        str(cfg.num_vfs),
    )
    if numvfs.pending and pf.num_vfs and cfg.num_vfs:
        numvfs.detail = "through 0 (the kernel only changes a non-zero count via 0)"
    if numvfs.pending and pf.num_vfs:
        plan.warnings.append(
            f"changing the VF count removes the {pf.num_vfs} existing VFs of {cfg.pf}, "
            "with any pod using them"
        )
    plan.steps.append(numvfs)
    plan.steps.append(
        step("link_up", cfg.pf, f"{cfg.pf} up", "up" if state.pf_link.up else "down", "up")
    )
    feature = state.hw_tc_offload
    current = show(None if feature is None else ("on" if feature.enabled else "off"))
    offload = step("feature", HW_TC_OFFLOAD, HW_TC_OFFLOAD, current, "on")
    if offload.pending and (feature is None or not feature.changeable):
        offload.outcome = Outcome.WARNING
        offload.detail = "not supported by this device"
        plan.warnings.append(f"{HW_TC_OFFLOAD} is not supported by {cfg.pf} (fixed off)")
    plan.steps.append(offload)
    return plan


def _read_feature(ifname: str, name: str) -> Feature | None:
    """The ethtool feature `name` of `ifname` (None: the kernel has none of that name)."""
    try:
        return ethtool.read_feature(ifname, name)
    except ethtool.EthtoolError as exc:
        raise SetupError(str(exc)) from exc


def gather_state(cfg: HostSetupConfig, nl: Netlink) -> HostState:
    """Read sysfs (hardware layer), netlink and ethtool for `plan_host`."""
    sysfs = Sysfs.from_env(cfg.sysfs_root)
    pf = find_pf(sysfs, cfg.pf)
    link = nl.link(cfg.pf)
    return HostState(
        pf_netdev_present=sysfs.netdev(cfg.pf).exists(),
        pf=pf,
        pf_link=link,
        hw_tc_offload=_read_feature(cfg.pf, HW_TC_OFFLOAD) if link else None,
        vfs=tuple(list_vfs(sysfs, pf)) if pf else (),
    )


def _write_numvfs(sysfs: Sysfs, pf: PhysicalFunction, count: int) -> None:
    path = sysfs.pci_device(pf.address) / "sriov_numvfs"
    try:
        path.write_text(f"{count}\n")
    except OSError as exc:
        reason = _WRITE_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        raise SetupError(f"writing {count} to {path} failed: {reason}") from exc


def _vf_ready(vf: VirtualFunction) -> bool:
    """The VF has its netdev, or will get none (no driver, or a userspace driver)."""
    return vf.netdev is not None or not vf.netdev_elsewhere


def wait_for_vfs(sysfs: Sysfs, pf_netdev: str, count: int, timeout: float) -> list[VirtualFunction]:
    """Wait until the PF has `count` VFs and each VF with a kernel network driver has its
    netdev; SetupError naming the missing ones after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pf = find_pf(sysfs, pf_netdev)
        vfs = list_vfs(sysfs, pf) if pf else []
        missing = [vf for vf in vfs if not _vf_ready(vf)]
        if len(vfs) == count and not missing:
            return vfs
        if time.monotonic() > deadline:
            detail = (
                f"{len(vfs)} of {count} VFs exist"
                if len(vfs) != count
                else "no netdev for VF " + ", ".join(f"{vf.index} ({vf.address})" for vf in missing)
            )
            raise SetupError(f"VFs of {pf_netdev} not ready after {timeout:.0f}s: {detail}")
        time.sleep(0.1)


def _done(s: Step) -> None:
    if s.pending:
        s.outcome = Outcome.CHANGED


def apply_host(cfg: HostSetupConfig, plan: Plan, state: HostState, nl: Netlink) -> None:
    """Carry out the pending steps of `plan` in the seed's order."""
    sysfs = Sysfs.from_env(cfg.sysfs_root)
    assert state.pf is not None and state.pf_link is not None
    numvfs = plan.find("sriov_numvfs")
    if numvfs is not None and numvfs.pending:
        if state.pf.num_vfs and cfg.num_vfs:
            _write_numvfs(sysfs, state.pf, 0)
        _write_numvfs(sysfs, state.pf, cfg.num_vfs)
        wait_for_vfs(sysfs, cfg.pf, cfg.num_vfs, cfg.timeout)
        _done(numvfs)
    link_up = plan.find("link_up", cfg.pf)
    if link_up is not None and link_up.pending:
        nl.set_up(state.pf_link.index)
        _done(link_up)
    offload = plan.find("feature", HW_TC_OFFLOAD)
    if offload is not None and offload.pending:
        try:
            ethtool.set_features(cfg.pf, {HW_TC_OFFLOAD: True})
        except ethtool.EthtoolError as exc:
            raise SetupError(str(exc)) from exc
        after = _read_feature(cfg.pf, HW_TC_OFFLOAD)
        if after is None or not after.enabled:
            offload.outcome = Outcome.WARNING
            offload.detail = "the device did not enable it"
            plan.warnings.append(f"{HW_TC_OFFLOAD} stayed off on {cfg.pf}")
        else:
            _done(offload)


def vf_table(cfg: HostSetupConfig) -> list[dict[str, Any]]:
    """The PF's VFs now: index, PCI address, netdev, MAC, driver, role."""
    sysfs = Sysfs.from_env(cfg.sysfs_root)
    pf = find_pf(sysfs, cfg.pf)
    vfs = list_vfs(sysfs, pf) if pf else []
    return [
        {
            "index": vf.index,
            "pci": vf.address,
            "netdev": vf.netdev,
            "mac": vf.mac,
            "driver": vf.driver,
            "role": "mgmt" if vf.index == cfg.mgmt_vf else "pool",
        }
        for vf in vfs
    ]
