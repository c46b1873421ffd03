"""The lab's plan: which nodes exist, their namespaces, addresses and file paths.

Everything here is pure computation from a `LabSpec`, so `up`, `down`, `status`
and `exec` agree on names without talking to each other. The lab only uses
documentation/benchmark address ranges: the underlay is 192.0.2.0/24 (TEST-NET-1)
and the cluster and service CIDRs sit inside 198.18.0.0/15.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dpunet.setup.pki import Certificate, certificate

RUN_ROOT = Path("/run/dpunet/lab")
DEFAULT_LAB_NAME = "dpulab"

UNDERLAY_CIDR = ipaddress.IPv4Network("192.0.2.0/24")
EXT_ADDRESS = ipaddress.IPv4Address("192.0.2.1")  # the seed's ovn-gw-nexthop role
CP_ADDRESS = ipaddress.IPv4Address("192.0.2.10")
HOST_ADDRESS_BASE = 100  # hostN = 192.0.2.(100+N)
DPU_ADDRESS_BASE = 200  # dpuN  = 192.0.2.(200+N)
MAX_HOSTS = 8

LAB_CLUSTER_CIDR = "198.18.0.0/16"
LAB_SERVICE_CIDR = "198.19.0.0/17"
LAB_JOIN_SUBNET = "198.19.255.0/24"
POD_MTU = 1400  # Geneve over the 1500-byte underlay

HOST_PF_NAME = "enp2s0f0np0"
HOST_PF_PCI = "0000:02:00.0"
DPU_PF_PCI = "0000:03:00.0"
DPU_UPLINK = "p0"
DPU_HOST_PF_REP = "pf0hpf"
DPU_BRIDGE = "brp0"
CP_BRIDGE = "breth0"
UNDERLAY_MTU = 1500
NB_PORT = 6641
SB_PORT = 6642

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class Role(StrEnum):
    """What a lab node plays in the seed's deployment."""

    CONTROL_PLANE = "control-plane"  # OVN central + a full node with its own OVS
    DPU_HOST = "dpu-host"  # x86 host with the SR-IOV NIC, no OVS
    DPU = "dpu"  # BlueField Arm side: OVS, ovn-controller
    EXTERNAL = "external"  # upstream router at the gateway next hop
    WIRE = "wire"  # the underlay switch (a Linux bridge)


class LabSpec(BaseModel):
    """What `dpunet lab up` was asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_LAB_NAME
    hosts: int = Field(default=1, ge=1, le=MAX_HOSTS)
    vfs: int = Field(default=4, ge=0)
    total_vfs: int = Field(default=16, ge=1, le=64)
    bare: bool = False  # infrastructure only: no dpunet controller/agents (component tests)
    image: str | None = None  # dpunet's daemons as containers of this image (lab.image)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(
                "lab name must be 1-8 characters, lowercase letters and digits, "
                "starting with a letter"
            )
        return value

    @model_validator(mode="after")
    def _vfs_within_total(self) -> LabSpec:
        if self.vfs > self.total_vfs:
            raise ValueError(f"vfs ({self.vfs}) is above sriov_totalvfs ({self.total_vfs})")
        return self


@dataclass(frozen=True)
class Node:
    """One namespace of the lab."""

    name: str
    role: Role
    netns: str
    underlay_ip: ipaddress.IPv4Address | None
    runs_ovs: bool
    peer: str | None = None  # dpu-host <-> dpu pairing


@dataclass(frozen=True)
class NicPair:
    """One emulated SR-IOV NIC: a dpu-host node and the DPU in its PCIe slot."""

    index: int
    host: Node
    dpu: Node

    def pf_mac(self, lab_id: int) -> str:
        """Host PF MAC (locally administered, unique per lab and pair)."""
        return f"02:d5:{lab_id:02x}:{self.index:02x}:00:01"

    def vf_mac_prefix(self, lab_id: int) -> str:
        """First four MAC bytes of this NIC's VFs; VF N gets `<prefix>:01:NN`."""
        return f"02:d5:{lab_id:02x}:{self.index:02x}"

    def switch_id(self, lab_id: int) -> str:
        """The DPU eSwitch `phys_switch_id` (hex, as sysfs prints it)."""
        return f"d5{lab_id:02x}{self.index:02x}00a1b2c3d4"


class LabPlan:
    """Names, addresses and paths of one lab, derived from its spec."""

    def __init__(self, spec: LabSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.run_dir = RUN_ROOT / spec.name
        self.state_file = self.run_dir / "lab.json"
        self.sysfs_mount = self.run_dir / "sys"
        self.pki_dir = self.run_dir / "pki"
        self.underlay_prefix = UNDERLAY_CIDR.prefixlen

        self.wire = self._node("wire", Role.WIRE, None, runs_ovs=False)
        self.ext = self._node("ext", Role.EXTERNAL, EXT_ADDRESS, runs_ovs=False)
        self.cp = self._node("cp", Role.CONTROL_PLANE, CP_ADDRESS, runs_ovs=True)
        self.pairs: list[NicPair] = []
        for i in range(1, spec.hosts + 1):
            host = self._node(
                f"host{i}",
                Role.DPU_HOST,
                UNDERLAY_CIDR.network_address + HOST_ADDRESS_BASE + i,
                runs_ovs=False,
                peer=f"dpu{i}",
            )
            dpu = self._node(
                f"dpu{i}",
                Role.DPU,
                UNDERLAY_CIDR.network_address + DPU_ADDRESS_BASE + i,
                runs_ovs=True,
                peer=f"host{i}",
            )
            self.pairs.append(NicPair(i, host, dpu))

    def _node(
        self,
        name: str,
        role: Role,
        ip: ipaddress.IPv4Address | None,
        *,
        runs_ovs: bool,
        peer: str | None = None,
    ) -> Node:
        return Node(name, role, f"{self.name}-{name}", ip, runs_ovs, peer)

    @property
    def lab_id(self) -> int:
        """A small number derived from the lab name, used to keep MACs distinct."""
        return sum(self.name.encode()) % 256

    @property
    def nodes(self) -> list[Node]:
        """Every node, in bring-up order."""
        out = [self.wire, self.ext, self.cp]
        for pair in self.pairs:
            out += [pair.host, pair.dpu]
        return out

    @property
    def ovs_nodes(self) -> list[Node]:
        """Nodes that run Open vSwitch and ovn-controller."""
        return [n for n in self.nodes if n.runs_ovs]

    def node(self, name: str) -> Node:
        """The node called `name`; KeyError with the valid names otherwise."""
        for n in self.nodes:
            if n.name == name:
                return n
        valid = ", ".join(n.name for n in self.nodes)
        raise KeyError(f"no node {name!r} in lab {self.name!r} (nodes: {valid})")

    def node_dir(self, node: Node) -> Path:
        """Per-node run directory (OVS/OVN databases, sockets, pid and log files)."""
        return self.run_dir / node.name

    def unit_root(self, node: Node) -> Path:
        """The node's root for systemd units (`etc/systemd/system` under it): where the
        setup commands install their boot units, kept across a lab reboot as on a disk."""
        return self.node_dir(node) / "root"

    def ovs_dir(self, node: Node) -> Path:
        """OVS_RUNDIR / OVS_LOGDIR / OVS_DBDIR of a node."""
        return self.node_dir(node) / "ovs"

    def ovn_dir(self, node: Node) -> Path:
        """OVN_RUNDIR / OVN_LOGDIR / OVN_DBDIR of a node."""
        return self.node_dir(node) / "ovn"

    def sysfs_root(self, node: Node) -> Path | None:
        """The emulated sysfs root of a dpu-host or DPU node (None for the others)."""
        if node.role in (Role.DPU_HOST, Role.DPU):
            return self.sysfs_mount / node.name
        return None

    def node_env(self, node: Node) -> dict[str, str]:
        """Environment that makes OVS/OVN/dpunet tools address this node's daemons."""
        env: dict[str, str] = {}
        if node.runs_ovs:
            ovs, ovn = str(self.ovs_dir(node)), str(self.ovn_dir(node))
            env |= {
                "OVS_RUNDIR": ovs,
                "OVS_LOGDIR": ovs,
                "OVS_DBDIR": ovs,
                "OVN_RUNDIR": ovn,
                "OVN_LOGDIR": ovn,
                "OVN_DBDIR": ovn,
            }
        if node.role is Role.CONTROL_PLANE:
            ovn = str(self.ovn_dir(node))
            env["OVN_NB_DB"] = f"unix:{ovn}/ovnnb_db.sock"
            env["OVN_SB_DB"] = f"unix:{ovn}/ovnsb_db.sock"
        elif node.runs_ovs:
            env["OVN_NB_DB"] = self.nb_remote
            env["OVN_SB_DB"] = self.sb_remote
        sysfs = self.sysfs_root(node)
        if sysfs is not None:
            env["DPUNET_SYSFS_ROOT"] = str(sysfs)
        return env

    def gateway_ip(self, node: Node) -> ipaddress.IPv4Address:
        """The address of the node's OVN gateway router (SNAT source of its pods): the
        node's own underlay address, shared with the node (the shared gateway)."""
        if node.role not in (Role.CONTROL_PLANE, Role.DPU_HOST) or node.underlay_ip is None:
            raise ValueError(f"node {node.name} has no gateway router")
        return node.underlay_ip

    @property
    def sb_remote(self) -> str:
        """The OVN Southbound address ovn-controllers connect to (TLS only)."""
        return f"ssl:{CP_ADDRESS}:{SB_PORT}"

    @property
    def nb_remote(self) -> str:
        """The OVN Northbound address (TLS only)."""
        return f"ssl:{CP_ADDRESS}:{NB_PORT}"

    @property
    def tls_components(self) -> list[str]:
        """Who gets a certificate from the lab's CA: the NB and SB servers, ovn-northd,
        the controller (NB client, API server), and every node (its ovn-controller and
        dpunet agent)."""
        return ["ovnnb", "ovnsb", "northd", "controller", *(n.name for n in self.ovs_nodes),
                *(p.host.name for p in self.pairs)]  # fmt: skip

    def tls(self, component: str) -> Certificate:
        """The key, certificate and CA of a component (see `tls_components`)."""
        return certificate(self.pki_dir, component)
