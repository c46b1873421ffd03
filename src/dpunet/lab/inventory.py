"""What `lab status` shows of each emulated NIC: VFs, their netdevs and representors.

It reads both sides through their emulated sysfs trees with the same hardware
layer dpunet uses on real machines, so the status is also a check of both.
"""

from __future__ import annotations

from typing import Any

from dpunet.hw.host import find_pf, list_vfs
from dpunet.hw.representors import RepresentorKind, list_representors
from dpunet.hw.sysfs import Sysfs, SysfsReadError
from dpunet.lab.topology import HOST_PF_NAME, LabPlan, NicPair


def nic_inventory(plan: LabPlan, pair: NicPair) -> dict[str, Any]:
    """The NIC of `pair` as seen through the emulated sysfs of both sides."""
    host_root, dpu_root = plan.sysfs_root(pair.host), plan.sysfs_root(pair.dpu)
    assert host_root is not None and dpu_root is not None
    out: dict[str, Any] = {
        "host": pair.host.name,
        "dpu": pair.dpu.name,
        "pf": HOST_PF_NAME,
        "pf_pci": None,
        "pf_rep": None,
        "total_vfs": None,
        "vfs": [],
    }
    try:
        pf = find_pf(Sysfs(host_root), HOST_PF_NAME)
        reps = list_representors(Sysfs(dpu_root))
    except (OSError, SysfsReadError):
        return out  # the emulated sysfs is not mounted: the NIC daemon is down
    if pf is None:
        return out
    vf_reps = {
        r.vf_index: r.netdev
        for r in reps
        if r.kind is RepresentorKind.VF and r.pf_index == pf.index
    }
    out["pf_pci"] = pf.address
    out["total_vfs"] = pf.total_vfs
    out["pf_rep"] = next(
        (r.netdev for r in reps if r.kind is RepresentorKind.HOST_PF and r.pf_index == pf.index),
        None,
    )
    out["vfs"] = [
        {
            "index": vf.index,
            "pci": vf.address,
            "netdev": vf.netdev,
            "mac": vf.mac,
            "representor": vf_reps.get(vf.index),
        }
        for vf in list_vfs(Sysfs(host_root), pf)
    ]
    return out
