"""What `lab status` shows of each emulated NIC: VFs, their netdevs and representors."""

from __future__ import annotations

from typing import Any

from dpunet.lab.topology import LabPlan, NicPair


def nic_inventory(plan: LabPlan, pair: NicPair) -> dict[str, Any]:
    """The NIC of `pair` as seen through the emulated sysfs of both sides."""
    return {"host": pair.host.name, "dpu": pair.dpu.name, "pf": "", "pf_pci": "", "pf_rep": "", "vfs": []}
