"""The management port of a dpu-host node: VF0 as `ovn-k8s-mp0`.

The host reaches its pods (kubelet probes) and the cluster through this VF: it
carries the node subnet's `.2` (LSP `k8s-<node>`), and routes to the cluster and
service CIDRs via the node's router port (`.1`). Its representor on the DPU is
plugged by `dpunet-dpu`. Re-ensured periodically, so removing or renaming it by
hand heals.
"""

from __future__ import annotations

from dpunet.cni.daemon import MGMT_IFNAME, management_config
from dpunet.contract.api import NodeInfo
from dpunet.hw.host import find_vf, function_netdev
from dpunet.hw.sysfs import Sysfs
from dpunet.linux import netlink


class ManagementPort:
    """VF `vf_index` of `pf` as the management port `ifname`, re-ensured periodically.

    It remembers the VF's PCI address: while that function's netdev is still `ifname`, a
    check reads one sysfs directory and netlink instead of walking the PF's VFs again."""

    def __init__(self, sysfs: Sysfs, pf: str, vf_index: int, ifname: str = MGMT_IFNAME) -> None:
        self.sysfs = sysfs
        self.pf = pf
        self.vf_index = vf_index
        self.ifname = ifname
        self._pci: str | None = None

    def ensure(self, node: NodeInfo) -> list[str]:
        """Make the VF the management port the node record describes; what had to change."""
        cfg = management_config(node, self.ifname)
        if self._pci is not None and function_netdev(self.sysfs, self._pci) == self.ifname:
            problems = netlink.check(None, cfg)
            if not problems:
                return []
        vf = find_vf(self.sysfs, self.pf, self.vf_index)
        if vf is None or vf.netdev is None:
            self._pci = None
            raise netlink.LinuxError(
                f"management VF {self.pf}:{self.vf_index} has no netdev in the host"
            )
        self._pci = vf.address
        if vf.netdev == self.ifname:
            problems = netlink.check(None, cfg)
            if not problems:
                return []
        else:
            problems = [f"{vf.netdev} renamed to {self.ifname}"]
            netlink.set_down(vf.netdev)
        netlink.configure(None, vf.netdev, cfg)
        return problems
