"""The emulated NIC's configuration (the JSON file `python -m dpunet.lab.nicd` reads) and
its PCI addresses."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_PCI_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([01][0-9a-f])\.([0-7])$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_MAC_PREFIX_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){3}$")


@dataclass(frozen=True, order=True)
class PciAddress:
    """A PCI address ``DDDD:BB:dd.f``."""

    domain: int
    bus: int
    device: int
    function: int

    @classmethod
    def parse(cls, text: str) -> PciAddress:
        """Parse ``0000:02:00.0``; raise ValueError if malformed."""
        m = _PCI_RE.match(text)
        if m is None or int(m.group(3), 16) > 31:
            raise ValueError(f"not a PCI address: {text!r}")
        return cls(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.device:02x}.{self.function}"

    def plus(self, offset: int) -> PciAddress:
        """The address ``offset`` routing ids further (ARI numbering, may cross devices)."""
        rid = (self.bus << 8 | self.device << 3 | self.function) + offset
        if rid > 0xFFFF:
            raise ValueError(f"{self} + {offset} leaves the PCI domain")
        return PciAddress(self.domain, rid >> 8, (rid >> 3) & 0x1F, rid & 0x7)


def _check(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"not {what}: {value!r}")
        return value

    return check


def _check_pci(value: str) -> str:
    PciAddress.parse(value)
    return value


NodeName = Annotated[str, AfterValidator(_check(_NAME_RE, "a node name ([A-Za-z0-9_.-]+)"))]
IfName = Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[^/:\s]+$")]
Mac = Annotated[str, AfterValidator(_check(_MAC_RE, "a MAC address"))]
MacPrefix = Annotated[str, AfterValidator(_check(_MAC_PREFIX_RE, "a 4-octet MAC prefix"))]
PciAddr = Annotated[str, AfterValidator(_check_pci)]


class NicPairConfig(BaseModel):
    """One emulated NIC: a host node's PF/VFs and the DPU node that switches them."""

    model_config = ConfigDict(extra="forbid")

    host_node: NodeName
    host_netns: str = Field(description="netns name (in /run/netns) or path of the host node")
    dpu_node: NodeName
    dpu_netns: str = Field(description="netns name (in /run/netns) or path of the DPU node")
    pf_netdev: IfName = "enp2s0f0np0"
    pf_pci: PciAddr = "0000:02:00.0"
    dpu_pci: PciAddr = "0000:03:00.0"
    uplink_netdev: IfName = Field("p0", description="the DPU's uplink; marked at start")
    sriov_totalvfs: int = Field(16, ge=1, le=255)
    numvfs: int = Field(4, ge=0, description="VFs created at start")
    pf_mac: Mac
    vf_mac_prefix: MacPrefix = Field(description="4 octets; VF N gets <prefix>:01:<N in hex>")
    phys_switch_id: str = Field(pattern=r"^[0-9a-f]{2,32}$")
    mtu: int = Field(1500, ge=68, le=65535)

    @model_validator(mode="after")
    def _consistent(self) -> NicPairConfig:
        if self.numvfs > self.sriov_totalvfs:
            raise ValueError("numvfs exceeds sriov_totalvfs")
        if self.host_node == self.dpu_node:
            raise ValueError("host_node and dpu_node must differ")
        if self.pf_mac.lower().startswith(f"{self.vf_mac_prefix.lower()}:01:"):
            raise ValueError("pf_mac is one of the VF MACs <vf_mac_prefix>:01:NN")
        PciAddress.parse(self.pf_pci).plus(2 + self.sriov_totalvfs)
        return self


class NicDaemonConfig(BaseModel):
    """Configuration of ``python -m dpunet.lab.nicd`` (JSON file written by the lab)."""

    model_config = ConfigDict(extra="forbid")

    lab: NodeName
    mountpoint: Path = Field(description="FUSE mount; <mountpoint>/<node>/ is a sysfs root")
    pidfile: Path
    ready_file: Path = Field(description="written once mounted and the initial VFs exist")
    log_file: Path
    pairs: list[NicPairConfig] = Field(min_length=1)
    sweep_interval: float = Field(1.0, gt=0, description="seconds between safety sweeps")

    @model_validator(mode="after")
    def _unique_nodes(self) -> NicDaemonConfig:
        nodes = [n for p in self.pairs for n in (p.host_node, p.dpu_node)]
        if len(nodes) != len(set(nodes)):
            raise ValueError("node names must be unique across pairs")
        return self
