"""Where `verify` and `topology` look: this machine, or nodes of a lab.

A DPU target is its OVS run directory (database and vswitchd control socket; unix
sockets work from any namespace), its network namespace (for netlink and ethtool) and
its sysfs root. A host target is its namespace, sysfs root and the dpunet-host state
directory (sandbox records: which pod holds which VF).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from dpunet.cni.sandboxes import SandboxRecord, SandboxStore
from dpunet.openflow.gateway import GatewaySettings, agent_settings
from dpunet.ovsdb.remote import ovs_rundir

DEFAULT_HOST_STATE = Path("/var/lib/dpunet")
DEFAULT_PF = "enp2s0f0np0"
# where the rendered manifests mount the config of the agent owning the external bridge
DPU_CONFIG, NODE_CONFIG = Path("/etc/dpunet/dpu.yaml"), Path("/etc/dpunet/node.yaml")
AGENT_CONFIGS = (DPU_CONFIG, NODE_CONFIG)


@dataclass(frozen=True)
class DpuTarget:
    """A DPU, or a full node (`full_node`), to inspect."""

    name: str
    ovs_rundir: Path
    netns: str | None = None  # a path such as /run/netns/<name>; None: this namespace
    sysfs_root: Path = Path("/sys")
    host_node: str | None = None  # the dpu-host it serves, when known
    sb_remote: str | None = None  # default: external_ids:ovn-remote of its OVS
    # the shared gateway's settings of the agent owning its external bridge
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    # a full node: OVS and the gateway router on the node itself, dpunet-node owning the
    # external bridge (breth0, the host its LOCAL port); only that bridge is checked
    full_node: bool = False

    @property
    def ovs_db(self) -> str:
        """The OVSDB remote of its Open_vSwitch database."""
        return f"unix:{self.ovs_rundir}/db.sock"


@dataclass(frozen=True)
class HostTarget:
    """A dpu-host node to inspect."""

    name: str
    netns: str | None = None
    sysfs_root: Path = Path("/sys")
    state_dir: Path = DEFAULT_HOST_STATE
    pf: str = DEFAULT_PF
    mgmt_ifname: str = "ovn-k8s-mp0"
    mgmt_vf: int | None = 0
    dpu: str | None = None

    def sandboxes(self) -> list[SandboxRecord]:
        """The dpunet-host sandbox records (empty when the directory does not exist)."""
        if not (self.state_dir / "sandboxes").is_dir():
            return []
        return SandboxStore(self.state_dir).all()


def local_dpu(name: str | None = None, agent_config: Path | None = None) -> DpuTarget:
    """This machine as a DPU (OVS_RUNDIR, DPUNET_SYSFS_ROOT honoured), with the gateway
    settings of `agent_config`, else of the first of `AGENT_CONFIGS` that exists, else
    the defaults (ValueError when that file is unusable). A full node when `NODE_CONFIG`
    exists and `DPU_CONFIG` does not (where the manifests mount dpunet-node's config)."""
    rundir = ovs_rundir()
    sysfs = Path(os.environ.get("DPUNET_SYSFS_ROOT") or "/sys")
    config = agent_config or next((p for p in AGENT_CONFIGS if p.exists()), None)
    gateway = agent_settings(config) if config is not None else GatewaySettings()
    full = NODE_CONFIG.exists() and not DPU_CONFIG.exists()
    name = name or os.uname().nodename
    return DpuTarget(name, rundir, None, sysfs, gateway=gateway, full_node=full)


def local_host(
    name: str | None = None, pf: str = DEFAULT_PF, state_dir: Path = DEFAULT_HOST_STATE
) -> HostTarget:
    """This machine as a dpu-host node."""
    sysfs = Path(os.environ.get("DPUNET_SYSFS_ROOT") or "/sys")
    return HostTarget(name or os.uname().nodename, None, sysfs, state_dir, pf)


def is_dpu_here() -> bool:
    """Whether this machine runs OVS (a DPU or a full node) rather than being a dpu-host."""
    return (local_dpu().ovs_rundir / "db.sock").exists()


def lab_targets(lab: str, full_nodes: bool = False) -> tuple[list[DpuTarget], list[HostTarget]]:
    """Every DPU and dpu-host node of lab `lab` (LabError when it is not up); each DPU with
    the gateway settings of its dpunet-dpu's config file (defaults when it has none); with
    `full_nodes` also the full node cp (`DpuTarget.full_node`, dpunet-node's settings)."""
    from dpunet.lab.lab import load_plan
    from dpunet.lab.services import config_path
    from dpunet.lab.topology import HOST_PF_NAME

    plan = load_plan(lab)
    dpus, hosts = [], []
    sb_remote = f"unix:{plan.ovn_dir(plan.cp)}/ovnsb_db.sock"
    for pair in plan.pairs:
        dpu_sysfs = plan.sysfs_root(pair.dpu)
        host_sysfs = plan.sysfs_root(pair.host)
        assert dpu_sysfs is not None and host_sysfs is not None
        config = config_path(plan, pair.dpu, "dpunet-dpu")
        dpus.append(
            DpuTarget(
                pair.dpu.name,
                plan.ovs_dir(pair.dpu),
                f"/run/netns/{pair.dpu.netns}",
                dpu_sysfs,
                pair.host.name,
                sb_remote,
                agent_settings(config) if config.exists() else GatewaySettings(),
            )
        )
        hosts.append(
            HostTarget(
                pair.host.name,
                f"/run/netns/{pair.host.netns}",
                host_sysfs,
                plan.node_dir(pair.host) / "state",
                HOST_PF_NAME,
                dpu=pair.dpu.name,
            )
        )
    if full_nodes:
        config = config_path(plan, plan.cp, "dpunet-node")
        settings = agent_settings(config) if config.exists() else GatewaySettings()
        cp_netns = f"/run/netns/{plan.cp.netns}"
        dpus.append(
            DpuTarget(
                plan.cp.name,
                plan.ovs_dir(plan.cp),
                cp_netns,
                Path("/sys"),
                None,
                sb_remote,
                settings,
                full_node=True,
            )
        )
    return dpus, hosts


def ovn_remotes(lab: str | None, nb_remote: str | None, sb_remote: str | None) -> tuple[str, str]:
    """OVN Northbound and Southbound remotes: those given, else the lab's (its unix
    sockets on cp), else OVN_NB_DB / OVN_SB_DB as ovn-nbctl and ovn-sbctl read them.
    ValueError when one is unknown; LabError when the lab is not up."""
    if lab is not None:
        from dpunet.lab.lab import load_plan

        plan = load_plan(lab)
        ovn = plan.ovn_dir(plan.cp)
        nb_remote = nb_remote or f"unix:{ovn}/ovnnb_db.sock"
        sb_remote = sb_remote or f"unix:{ovn}/ovnsb_db.sock"
    nb = nb_remote or os.environ.get("OVN_NB_DB")
    sb = sb_remote or os.environ.get("OVN_SB_DB")
    if not nb or not sb:
        raise ValueError("give --lab, or --nb-remote and --sb-remote (or OVN_NB_DB, OVN_SB_DB)")
    return nb, sb


def select_targets(
    lab: str | None,
    node: str | None,
    pf: str = DEFAULT_PF,
    sb_remote: str | None = None,
    agent_config: Path | None = None,
    full_nodes: bool = False,
) -> tuple[list[DpuTarget], list[HostTarget]]:
    """The targets a command looks at: the nodes of `lab` (only `node` and its peer when
    given; the full node too with `full_nodes`), else this machine as a DPU or full node
    (when it runs OVS; `sb_remote` overrides its external_ids:ovn-remote) or as a
    dpu-host. `agent_config`: the config file whose gateway settings the external bridges'
    flows are checked with (`local_dpu`; the lab's own else).
    ValueError when `node` names no dpu-host or DPU of the lab, or the config is unusable."""
    if lab is None:
        if is_dpu_here():
            return [replace(local_dpu(node, agent_config), sb_remote=sb_remote)], []
        return [], [local_host(node, pf)]
    dpus, hosts = lab_targets(lab, full_nodes)
    if agent_config is not None:
        gateway = agent_settings(agent_config)
        dpus = [replace(d, gateway=gateway) for d in dpus]
    if node is None:
        return dpus, hosts
    dpus_out = [d for d in dpus if node in (d.name, d.host_node)]
    hosts_out = [h for h in hosts if node in (h.name, h.dpu)]
    if not dpus_out and not hosts_out:
        names = ", ".join(sorted([*(d.name for d in dpus), *(h.name for h in hosts)]))
        raise ValueError(f"lab {lab} has no dpu-host or DPU node {node!r} (nodes: {names})")
    return dpus_out, hosts_out
