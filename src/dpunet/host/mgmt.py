"""The management port of a dpu-host node: VF0 as `ovn-k8s-mp0`.

The host reaches its pods (kubelet probes) and the cluster through this VF: it
carries the node subnet's `.2` (LSP `k8s-<node>`), and routes to the cluster and
service CIDRs via the node's router port (`.1`). Its representor on the DPU is
plugged by `dpunet-dpu`. Re-ensured periodically, so removing or renaming it by
hand heals.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from dpunet import podnet
from dpunet.hw.host import find_vf
from dpunet.hw.sysfs import Sysfs

MGMT_IFNAME = "ovn-k8s-mp0"


def management_config(node: Mapping[str, Any], ifname: str = MGMT_IFNAME) -> podnet.InterfaceConfig:
    """The management interface the controller's node record describes."""
    gateway = ipaddress.IPv4Address(node["gateway_ip"].split("/")[0])
    return podnet.InterfaceConfig(
        ifname=ifname,
        mac=node["mgmt_mac"],
        mtu=int(node["mtu"]),
        address=ipaddress.IPv4Interface(node["mgmt_ip"]),
        gateway=None,
        routes=tuple(
            podnet.Route(ipaddress.IPv4Network(cidr), gateway)
            for cidr in (node["cluster_cidr"], node["service_cidr"])
        ),
    )


def ensure_management_port(
    sysfs: Sysfs, pf: str, vf_index: int, node: Mapping[str, Any], ifname: str = MGMT_IFNAME
) -> list[str]:
    """Make VF `vf_index` of `pf` the management port; returns what had to change."""
    vf = find_vf(sysfs, pf, vf_index)
    if vf is None or vf.netdev is None:
        raise podnet.PodNetError(f"management VF {pf}:{vf_index} has no netdev in the host")
    cfg = management_config(node, ifname)
    if vf.netdev == ifname:
        problems = podnet.check(None, cfg)
        if not problems:
            return []
    else:
        problems = [f"{vf.netdev} renamed to {ifname}"]
        podnet.set_down(vf.netdev)
    podnet.configure(None, vf.netdev, cfg)
    return problems
