"""Version-neutral CNI ADD results and their JSON shape in each supported spec version.

Handlers return an `AddResult`; the server renders it for the request's `cniVersion`:

* 0.3.0, 0.3.1, 0.4.0: every `ips` entry carries `version` ("4" or "6");
* 1.0.0: no `version` in `ips`;
* 1.1.0: additionally interface `mtu`, `socketPath`, `pciID` and route `mtu`, `advmss`,
  `priority`, `table`, `scope`.

Empty lists, an empty `dns` and unset optional fields are left out. `prevResult` objects
of any supported version parse back with `AddResult.from_wire`.
"""

from __future__ import annotations

import ipaddress
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeInt, model_validator

from dpunet.cni.wire import SUPPORTED_VERSIONS, version_at_least


def _network(value: object) -> object:
    """Accept a destination with host bits set (`10.1.2.3/24`), as Go's ParseCIDR does."""
    return ipaddress.ip_network(value, strict=False) if isinstance(value, str) else value


IPAddress = IPv4Address | IPv6Address
Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class Interface(_Model):
    """One interface the attachment created (`sandbox` set for the container's side)."""

    name: str = Field(min_length=1)
    mac: str | None = None
    mtu: NonNegativeInt | None = None
    sandbox: str | None = None
    socket_path: str | None = Field(None, alias="socketPath")
    pci_id: str | None = Field(None, alias="pciID")

    def render(self, cni_version: str) -> dict[str, Any]:
        """This interface in `cni_version`'s shape."""
        rich = version_at_least(cni_version, "1.1.0")
        fields: list[tuple[str, object]] = [
            ("name", self.name),
            ("mac", self.mac),
            ("mtu", self.mtu if rich else None),
            ("sandbox", self.sandbox),
            ("socketPath", self.socket_path if rich else None),
            ("pciID", self.pci_id if rich else None),
        ]
        return {key: value for key, value in fields if value not in (None, "")}


class IPConfig(_Model):
    """One address in CIDR form, its gateway, and the index of its interface."""

    address: IPv4Interface | IPv6Interface
    gateway: IPAddress | None = None
    interface: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _same_family(self) -> IPConfig:
        if self.gateway is not None and self.gateway.version != self.address.version:
            raise ValueError(f"gateway {self.gateway} is not in the family of {self.address}")
        return self

    def render(self, cni_version: str) -> dict[str, Any]:
        """This address in `cni_version`'s shape."""
        out: dict[str, Any] = {}
        if not version_at_least(cni_version, "1.0.0"):
            out["version"] = str(self.address.version)
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.interface is not None:
            out["interface"] = self.interface
        return out


class Route(_Model):
    """One route; the tuning fields appear in results of version 1.1.0 only."""

    dst: Network
    gw: IPAddress | None = None
    mtu: NonNegativeInt | None = None
    advmss: NonNegativeInt | None = None
    priority: NonNegativeInt | None = None
    table: NonNegativeInt | None = None
    scope: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _same_family(self) -> Route:
        if self.gw is not None and self.gw.version != self.dst.version:
            raise ValueError(f"gw {self.gw} is not in the family of {self.dst}")
        return self

    def render(self, cni_version: str) -> dict[str, Any]:
        """This route in `cni_version`'s shape."""
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if version_at_least(cni_version, "1.1.0"):
            for key in ("mtu", "advmss", "priority", "table", "scope"):
                value = getattr(self, key)
                if value is not None:
                    out[key] = value
        return out


class Dns(_Model):
    """DNS settings (the same shape in network configs and in results)."""

    nameservers: tuple[IPAddress, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Nothing set."""
        return not (self.nameservers or self.domain or self.search or self.options)

    def render(self) -> dict[str, Any]:
        """The set fields as JSON."""
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = [str(ns) for ns in self.nameservers]
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class AddResult(_Model):
    """What an ADD produced, independent of the CNI version it will be rendered in."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: Dns = Dns()

    @model_validator(mode="after")
    def _interface_indices(self) -> AddResult:
        for ip in self.ips:
            if ip.interface is not None and ip.interface >= len(self.interfaces):
                raise ValueError(
                    f"ip {ip.address} refers to interface {ip.interface}, "
                    f"but there are {len(self.interfaces)} interfaces"
                )
        return self

    @classmethod
    def from_wire(cls, data: object) -> AddResult:
        """Parse a result (e.g. `prevResult`) in any supported version's shape; pydantic's
        ValidationError (a ValueError) when it is not one."""
        return cls.model_validate(data)

    def render(self, cni_version: str) -> dict[str, Any]:
        """The result object for `cni_version`; ValueError for an unsupported version."""
        if cni_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"cannot render a result for CNI version {cni_version!r}")
        out: dict[str, Any] = {"cniVersion": cni_version}
        if self.interfaces:
            out["interfaces"] = [iface.render(cni_version) for iface in self.interfaces]
        if self.ips:
            out["ips"] = [ip.render(cni_version) for ip in self.ips]
        if self.routes:
            out["routes"] = [route.render(cni_version) for route in self.routes]
        if not self.dns.is_empty:
            out["dns"] = self.dns.render()
        return out

    def chained_after(self, prev: AddResult) -> AddResult:
        """This result appended to `prev` (the chain's result so far): interfaces, ips and
        routes concatenated with this result's interface indices shifted; this result's
        DNS wins unless it is empty."""
        offset = len(prev.interfaces)
        ips = tuple(
            ip
            if ip.interface is None
            else ip.model_copy(update={"interface": ip.interface + offset})
            for ip in self.ips
        )
        return AddResult(
            interfaces=prev.interfaces + self.interfaces,
            ips=prev.ips + ips,
            routes=prev.routes + self.routes,
            dns=prev.dns if self.dns.is_empty else self.dns,
        )
