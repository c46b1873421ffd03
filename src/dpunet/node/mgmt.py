"""The management port of a full node: an OVS internal port `ovn-k8s-mp0` on br-int.

It is LSP `k8s-<node>` (`external_ids:iface-id`), carries the node subnet's `.2`
with the MAC and MTU of the controller's node record (also written to the
Interface's `mac` and `mtu_request`, so ovs-vswitchd keeps them), and routes to
the cluster and service CIDRs via the node's router port (`.1`): the node reaches
its pods (kubelet probes) and the cluster through it. Its tx checksum offload is
kept off, as on the pods' veths: on the userspace datapath the port is a tap that
OVS 3.5 (Debian 13's; not 3.1) opens with the offload on, and that datapath does not
always finish the checksums the kernel leaves. Re-ensured periodically,
so a port removed or changed by hand heals. A port of that name that dpunet
does not own is left alone (an error).
"""

from __future__ import annotations

from collections.abc import Mapping

from dpunet.cni.daemon import MGMT_IFNAME, management_config
from dpunet.contract.api import NodeInfo
from dpunet.linux import ethtool, netlink
from dpunet.ovsdb.local import IFACE_ID, OWNED_KEY, OWNED_VALUE, LocalOvs, OvsPort

APPLY_TIMEOUT = 10.0


def mgmt_lsp(node: str) -> str:
    """The management port's logical port."""
    return f"k8s-{node}"


def needed_changes(
    port: OvsPort | None,
    link: netlink.Link | None,
    bridge: str,
    ids: Mapping[str, str],
    cfg: netlink.InterfaceConfig,
) -> list[str]:
    """Why the OVS port must be (re)created (empty: it is in place); LinuxError for a
    port of that name that dpunet does not own."""
    if port is None:
        return [f"port {cfg.ifname} added to {bridge}"]
    if not port.owned:
        raise netlink.LinuxError(f"port {port.name} on {port.bridge} is not dpunet's; leaving it")
    if port.bridge != bridge or any(port.external_ids.get(k) != v for k, v in ids.items()):
        return [f"port {cfg.ifname} re-plugged as {ids[IFACE_ID]} on {bridge}"]
    if link is None:
        return [f"netdev {cfg.ifname} re-created"]
    if (link.mac, link.mtu) != (cfg.mac, cfg.mtu):
        return [f"{cfg.ifname} MAC/MTU {link.mac}/{link.mtu} -> {cfg.mac}/{cfg.mtu}"]
    return []


def ensure_management_port(
    ovs: LocalOvs,
    bridge: str,
    node: NodeInfo,
    ifname: str = MGMT_IFNAME,
) -> list[str]:
    """Make `ifname` the management port the node record describes; what had to change."""
    cfg = management_config(node, ifname)
    ids = {IFACE_ID: mgmt_lsp(node.name), OWNED_KEY: OWNED_VALUE}
    port = next((p for p in ovs.state().ports if p.name == ifname), None)
    changes = needed_changes(port, netlink.get_link(ifname), bridge, ids, cfg)
    if changes:
        columns = {"type": "internal", "mac": cfg.mac, "mtu_request": cfg.mtu}
        try:
            next_cfg = ovs.apply(
                bridge,
                remove=[] if port is None else [ifname],
                add={ifname: ids},
                columns={ifname: columns},
            )
        except Exception as exc:  # ovsdbapp raises many kinds
            raise netlink.LinuxError(f"plugging {ifname}: {exc}") from exc
        if next_cfg is not None and not ovs.wait_applied(next_cfg, APPLY_TIMEOUT):
            raise netlink.LinuxError(f"ovs-vswitchd did not create {ifname} in {APPLY_TIMEOUT}s")
        if not netlink.link_exists(ifname):
            raise netlink.LinuxError(f"ovs-vswitchd created no netdev {ifname}")
    problems = netlink.check(None, cfg)
    if problems or changes:
        netlink.configure(None, ifname, cfg)
    if ethtool.tx_checksum_on(ifname):
        try:
            ethtool.disable_tx_checksum(ifname)
        except ethtool.EthtoolError as exc:
            raise netlink.LinuxError(str(exc)) from exc
        changes.append(f"{ifname} tx checksum offload turned off")
    return changes + problems
