"""Device pools: the sriov-network-device-plugin `config.json` and which devices land where.

The config format is the reference device plugin's, unchanged (`resourceList[]` of
`resourceName`, `resourcePrefix`, `deviceType`, `selectors`, ...), and so are its
matching rules:

- candidates are the PCI network functions of the node, except a function with a
  netdev holding the IPv4 default route and an SR-IOV PF with VFs enabled;
- the keys of one selector object are ANDed, the selector objects of a resource ORed;
- resources are tried in order and a device goes to the first that selects it;
- `pfNames` / `rootDevices` entries are `<PF name or PCI address>[#<indices>]` with
  indices like `0,2-7,9` (0-based, inclusive); the PF part is compared ignoring case,
  and only VFs can match;
- a resource without `resourcePrefix` gets the plugin-wide prefix (the plugin's
  `--resource-prefix`, default `intel.com`).

dpunet is stricter than the reference where it would silently ignore a mistake: an
unknown key, a wrong type, an empty list, an unparsable index range, two entries for one
PF, or a duplicate resource name is a `PoolConfigError` naming the field. The
management-port VF of a PF (`ManagementVf`) is never put in a pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from dpunet.hw.host import primary_netdev
from dpunet.hw.netdev import netdev_link_type
from dpunet.hw.pci import (
    PciDevice,
    is_pci_address,
    list_pci_devices,
    normalize_pci_address,
    read_pci_device,
    virtfn_links,
)
from dpunet.hw.sysfs import Sysfs

DEFAULT_RESOURCE_PREFIX = "intel.com"
DEFAULT_ROUTE_TABLE = Path("/proc/net/route")

_HEX_ID_RE = re.compile(r"[0-9a-fA-F]{4}")
_RESOURCE_NAME_RE = re.compile(r"[a-zA-Z0-9_-]+")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_RESOURCE_PREFIX_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_INDEX_RE = re.compile(r"[0-9]+")
# Keys of the reference plugin's format that dpunet has no way to evaluate.
UNSUPPORTED_REFERENCE_KEYS = frozenset(
    {"acpiIndexes", "ddpProfiles", "pKeys", "vdpaType", "auxTypes"}
)


class PoolConfigError(ValueError):
    """The pool config is unusable; `problems` has one readable line per offending field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# --- `#` index ranges -------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionRanges:
    """The VF indices after `#` in a `pfNames` / `rootDevices` entry, as inclusive spans."""

    spans: tuple[tuple[int, int], ...]

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and any(start <= index <= end for start, end in self.spans)

    def __str__(self) -> str:
        return ",".join(
            str(start) if start == end else f"{start}-{end}" for start, end in self.spans
        )


def parse_function_ranges(text: str) -> FunctionRanges:
    """Parse `0,2-7,9`; ValueError saying which part is wrong."""
    if not text:
        raise ValueError("no VF indices after '#'")
    spans = []
    for item in text.split(","):
        start_text, dash, end_text = item.partition("-")
        if not _INDEX_RE.fullmatch(start_text) or (dash and not _INDEX_RE.fullmatch(end_text)):
            raise ValueError(f"{item!r} is neither an index nor a range like 2-7")
        start = int(start_text)
        end = int(end_text) if dash else start
        if end < start:
            raise ValueError(f"range {item!r} ends before it starts")
        spans.append((start, end))
    return FunctionRanges(tuple(spans))


@dataclass(frozen=True)
class PfSelectorEntry:
    """One `pfNames` / `rootDevices` entry: a PF and, optionally, which of its VFs."""

    text: str
    pf: str
    functions: FunctionRanges | None

    def selects(self, vf_index: int) -> bool:
        """True when VF `vf_index` of this entry's PF is selected."""
        return self.functions is None or vf_index in self.functions


def parse_pf_selector_entry(text: str) -> PfSelectorEntry:
    """Parse `enp2s0f0np0`, `enp2s0f0np0#1-2,5` or `0000:02:00.0#0-3`; ValueError if bad."""
    pf, hash_sign, ranges = text.partition("#")
    if not pf:
        raise ValueError("no PF before '#'")
    if "#" in ranges:
        raise ValueError("more than one '#'")
    return PfSelectorEntry(text, pf, parse_function_ranges(ranges) if hash_sign else None)


# --- the device-plugin config ------------------------------------------------------------


@dataclass(frozen=True)
class PoolDevice:
    """A candidate device as the pool rules see it."""

    address: str
    vendor: str | None
    device: str | None
    driver: str | None
    netdev: str | None
    netdevs: tuple[str, ...]
    link_type: str | None
    is_rdma: bool
    pf_address: str | None
    pf_netdev: str | None
    vf_index: int | None
    num_vfs: int | None


class _ConfigModel(BaseModel):
    """Strict, frozen, and (like the plugin's Go JSON decoding) blind to key letter case."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _canonical_key_case(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        keys = {
            (field.alias or name).casefold(): field.alias or name
            for name, field in cls.model_fields.items()
        }
        return {keys.get(k.casefold(), k) if isinstance(k, str) else k: v for k, v in data.items()}


_NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]
_Strings = tuple[_NonEmptyStr, ...]
_Entries = tuple[InstanceOf[PfSelectorEntry], ...]
_EMPTY_LIST = "must not be empty (leave the key out to match any device)"


class DeviceSelector(_ConfigModel):
    """One selector object: every key given must hold for a device to match."""

    vendors: _Strings | None = None
    devices: _Strings | None = None
    drivers: _Strings | None = None
    pci_addresses: _Strings | None = Field(None, alias="pciAddresses")
    pf_names: _Entries | None = Field(None, alias="pfNames")
    root_devices: _Entries | None = Field(None, alias="rootDevices")
    link_types: _Strings | None = Field(None, alias="linkTypes")
    is_rdma: StrictBool = Field(False, alias="isRdma")
    need_vhost_net: StrictBool = Field(False, alias="needVhostNet")

    @field_validator("vendors", "devices", "drivers", "pci_addresses", "link_types", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            raise ValueError(_EMPTY_LIST)
        return value

    @field_validator("vendors", "devices")
    @classmethod
    def _hex_ids(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for item in value or ():
            if not _HEX_ID_RE.fullmatch(item):
                raise ValueError(f"{item!r} is not a 4-digit hex id like '15b3'")
        return tuple(item.lower() for item in value) if value else value

    @field_validator("pci_addresses")
    @classmethod
    def _pci_addresses(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return tuple(normalize_pci_address(item) for item in value) if value else value

    @field_validator("pf_names", mode="before")
    @classmethod
    def _pf_names(cls, value: Any) -> Any:
        return _parse_entries(value, normalize_pf=lambda pf: pf)

    @field_validator("root_devices", mode="before")
    @classmethod
    def _root_devices(cls, value: Any) -> Any:
        return _parse_entries(value, normalize_pf=normalize_pci_address)

    def mismatch(self, device: PoolDevice) -> str | None:
        """Why `device` fails this selector (the first key, in the plugin's order), or None."""
        for key, allowed, actual in (
            ("vendors", self.vendors, device.vendor),
            ("devices", self.devices, device.device),
            ("drivers", self.drivers, device.driver),
            ("pciAddresses", self.pci_addresses, device.address),
        ):
            if allowed is not None and actual not in allowed:
                return f"{key}: {actual or 'none'} is not one of {', '.join(allowed)}"
        for key, entries, pf in (
            ("pfNames", self.pf_names, device.pf_netdev),
            ("rootDevices", self.root_devices, device.pf_address),
        ):
            if entries is not None and (reason := _entries_mismatch(entries, pf, device)):
                return f"{key}: {reason}"
        if self.link_types is not None and device.link_type not in self.link_types:
            link_types = ", ".join(self.link_types)
            return f"linkTypes: {device.link_type or 'unknown'} is not one of {link_types}"
        if self.is_rdma and not device.is_rdma:
            return "isRdma: the device has no RDMA function"
        return None

    def matches(self, device: PoolDevice) -> bool:
        """True when every key of this selector holds for `device`."""
        return self.mismatch(device) is None


class ResourceConfig(_ConfigModel):
    """One `resourceList` item: a named pool and the selectors that fill it."""

    resource_name: StrictStr = Field(alias="resourceName")
    resource_prefix: StrictStr | None = Field(None, alias="resourcePrefix")
    device_type: StrictStr = Field("netDevice", alias="deviceType")
    exclude_topology: StrictBool = Field(False, alias="excludeTopology")
    additional_info: dict[StrictStr, dict[StrictStr, StrictStr]] | None = Field(
        None, alias="additionalInfo"
    )
    selectors: tuple[DeviceSelector, ...]

    @field_validator("resource_name")
    @classmethod
    def _resource_name(cls, value: str) -> str:
        if not _RESOURCE_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} may only contain letters, digits, '_' and '-'")
        return value

    @field_validator("resource_prefix")
    @classmethod
    def _resource_prefix(cls, value: str | None) -> str | None:
        if value is not None:
            check_resource_prefix(value)
        return value

    @field_validator("device_type")
    @classmethod
    def _device_type(cls, value: str) -> str:
        if value != "netDevice":
            raise ValueError(f"{value!r} is not supported by dpunet (only 'netDevice')")
        return value

    @field_validator("selectors", mode="before")
    @classmethod
    def _object_or_list(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            raise ValueError("needs at least one selector object")
        return [value] if isinstance(value, dict) else value

    @property
    def full_name(self) -> str:
        """`<prefix>/<name>`, the extended resource pods request."""
        return f"{self.resource_prefix or DEFAULT_RESOURCE_PREFIX}/{self.resource_name}"


class PoolConfig(_ConfigModel):
    """A whole device-plugin config (the `config.json` of the `sriovdp-config` ConfigMap)."""

    resource_list: tuple[ResourceConfig, ...] = Field(alias="resourceList")


def check_resource_prefix(prefix: str) -> None:
    """ValueError unless `prefix` is a DNS name usable as a resource prefix."""
    if not _RESOURCE_PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"{prefix!r} is not a lower-case DNS name like 'mellanox.com'")


def parse_pool_config(data: Any, default_prefix: str = DEFAULT_RESOURCE_PREFIX) -> PoolConfig:
    """Validate a decoded config; resources without a prefix get `default_prefix`."""
    try:
        check_resource_prefix(default_prefix)
    except ValueError as exc:
        raise PoolConfigError([f"default resource prefix: {exc}"]) from None
    try:
        config = PoolConfig.model_validate(data)
    except ValidationError as exc:
        raise PoolConfigError(describe_validation_error(exc)) from None
    resources = tuple(
        resource
        if resource.resource_prefix
        else resource.model_copy(update={"resource_prefix": default_prefix})
        for resource in config.resource_list
    )
    first_index: dict[str, int] = {}
    problems = []
    for index, resource in enumerate(resources):
        earlier = first_index.setdefault(resource.full_name, index)
        if earlier != index:
            problems.append(
                f"resourceList[{index}].resourceName: {resource.full_name!r} is already "
                f"defined by resourceList[{earlier}]"
            )
    if problems:
        raise PoolConfigError(problems)
    return config.model_copy(update={"resource_list": resources})


def load_pool_config(path: Path, default_prefix: str = DEFAULT_RESOURCE_PREFIX) -> PoolConfig:
    """Read a `config.json`, or a `sriovdp-config` ConfigMap manifest holding one."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PoolConfigError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    return parse_pool_config(_decode_config(text, str(path)), default_prefix)


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One `where: what` line per pydantic error, in the config's own key names."""
    lines = []
    for error in exc.errors(include_url=False):
        where = _format_location(error["loc"])
        key = error["loc"][-1] if error["loc"] else None
        kind = error["type"]
        if kind == "extra_forbidden" and key in UNSUPPORTED_REFERENCE_KEYS:
            what = "this device-plugin key is not supported by dpunet"
        elif kind == "extra_forbidden":
            what = "unknown key"
        elif kind == "missing":
            what = "required key is missing"
        elif kind in ("tuple_type", "list_type"):
            what = "must be a list"
        elif kind in ("model_type", "dict_type"):
            what = "must be an object"
        elif kind == "value_error":
            what = str(error["ctx"]["error"])
        else:
            what = error["msg"]
        lines.append(f"{where or 'config'}: {what}")
    return lines


def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _decode_config(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            manifest = yaml.safe_load(text)
        except yaml.YAMLError:
            manifest = None
        if not (isinstance(manifest, dict) and manifest.get("kind") == "ConfigMap"):
            raise PoolConfigError([f"{source}: not valid JSON: {json_error}"]) from None
    data = manifest.get("data") or {}
    if "config.json" in data:
        embedded = data["config.json"]
    elif len(data) == 1:
        embedded = next(iter(data.values()))
    else:
        raise PoolConfigError([f"{source}: ConfigMap has no data.config.json"])
    try:
        return json.loads(embedded)
    except (json.JSONDecodeError, TypeError) as exc:
        raise PoolConfigError(
            [f"{source}: the ConfigMap's config.json is not valid JSON: {exc}"]
        ) from None


def _parse_entries(value: Any, normalize_pf: Callable[[str], str]) -> Any:
    """Turn a list of `pf#indices` strings into entries; other shapes are left for pydantic
    to reject. Two entries for one PF are an error: the plugin would only use the first."""
    if not isinstance(value, list | tuple):
        return value
    if not value:
        raise ValueError(_EMPTY_LIST)
    entries: list[PfSelectorEntry] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a string")
        try:
            entry = parse_pf_selector_entry(item)
            entry = replace(entry, pf=normalize_pf(entry.pf))
        except ValueError as exc:
            raise ValueError(f"invalid entry {item!r}: {exc}") from None
        clash = next((e for e in entries if e.pf.casefold() == entry.pf.casefold()), None)
        if clash is not None:
            raise ValueError(
                f"entries {clash.text!r} and {item!r} name the same PF; the device plugin "
                "only uses the first, so merge their indices into one entry"
            )
        entries.append(entry)
    return tuple(entries)


def _entries_mismatch(
    entries: Iterable[PfSelectorEntry], pf: str | None, device: PoolDevice
) -> str | None:
    if device.vf_index is None:
        return "not a VF"
    if pf is None:
        return "its PF has no netdev in this namespace"
    entry = next((e for e in entries if e.pf.casefold() == pf.casefold()), None)
    if entry is None:
        return f"PF {pf} is not listed"
    if not entry.selects(device.vf_index):
        return f"VF {device.vf_index} is not selected by {entry.text}"
    return None


# --- assignment -------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagementVf:
    """The VF of a PF (by netdev name or PCI address) that serves the management port."""

    pf: str
    index: int

    @classmethod
    def parse(cls, text: str) -> ManagementVf:
        """`enp2s0f0np0:0` or `0000:02:00.0:0`; ValueError if malformed."""
        pf, colon, index = text.rpartition(":")
        if not colon or not pf or not _INDEX_RE.fullmatch(index):
            raise ValueError(f"{text!r} is not PF:VF-index, e.g. enp2s0f0np0:0")
        return cls(pf.lower() if is_pci_address(pf.lower()) else pf, int(index))

    def is_device(self, device: PoolDevice) -> bool:
        """True when `device` is this VF."""
        return device.vf_index == self.index and self.pf in (device.pf_netdev, device.pf_address)

    def __str__(self) -> str:
        return f"{self.pf}:{self.index}"


@dataclass(frozen=True)
class Pool:
    """The devices one resource advertises."""

    resource: str
    devices: tuple[PoolDevice, ...]


@dataclass(frozen=True)
class Exclusion:
    """A candidate device that is in no pool, and why."""

    device: PoolDevice
    reason: str


@dataclass(frozen=True)
class PoolAssignment:
    """The outcome of applying a config to a node's devices."""

    pools: tuple[Pool, ...]
    excluded: tuple[Exclusion, ...]


def assign_pools(
    config: PoolConfig,
    devices: Iterable[PoolDevice],
    *,
    default_route_netdevs: Collection[str] = frozenset(),
    management_vfs: Collection[ManagementVf] = (),
) -> PoolAssignment:
    """Put each device in the first resource that selects it, or say why it is in none.

    `default_route_netdevs` names the netdevs holding the default route (see
    `read_default_route_netdevs`); their devices are never pooled, nor are SR-IOV PFs
    with VFs enabled and the `management_vfs`.
    """
    members: dict[str, list[PoolDevice]] = {r.full_name: [] for r in config.resource_list}
    excluded = []
    for device in devices:
        reason = _ineligibility(device, default_route_netdevs, management_vfs)
        resource = None
        if reason is None:
            resource = next(
                (r for r in config.resource_list if any(s.matches(device) for s in r.selectors)),
                None,
            )
        if resource is not None:
            members[resource.full_name].append(device)
        else:
            excluded.append(Exclusion(device, reason or _no_match_reason(config, device)))
    return PoolAssignment(
        pools=tuple(Pool(name, tuple(found)) for name, found in members.items()),
        excluded=tuple(excluded),
    )


def _ineligibility(
    device: PoolDevice,
    default_route_netdevs: Collection[str],
    management_vfs: Collection[ManagementVf],
) -> str | None:
    routed = [name for name in device.netdevs if name in default_route_netdevs]
    if routed:
        return f"holds the default route ({', '.join(routed)})"
    if device.num_vfs:
        return f"SR-IOV PF with {device.num_vfs} VFs enabled"
    mgmt = next((m for m in management_vfs if m.is_device(device)), None)
    if mgmt is not None:
        return f"management-port VF ({mgmt})"
    return None


def _no_match_reason(config: PoolConfig, device: PoolDevice) -> str:
    if not config.resource_list:
        return "no resources configured"
    parts = []
    for resource in config.resource_list:
        reasons = [selector.mismatch(device) for selector in resource.selectors]
        if len(reasons) == 1:
            parts.append(f"{resource.full_name}: {reasons[0]}")
        else:
            detail = "; ".join(f"selector {i}: {reason}" for i, reason in enumerate(reasons))
            parts.append(f"{resource.full_name}: {detail}")
    return "selected by no resource (" + " | ".join(parts) + ")"


# --- inputs from the node ---------------------------------------------------------------


def discover_pool_devices(sysfs: Sysfs) -> list[PoolDevice]:
    """The node's PCI network functions as pool candidates, by PCI address.

    Every function is read once; each PF's netdev and `virtfnN` links are read once for
    all its VFs."""
    devices = list_pci_devices(sysfs)
    by_address = {device.address: device for device in devices}
    parents: dict[str, tuple[PciDevice | None, str | None, dict[str, int]]] = {}

    def parent(address: str) -> tuple[PciDevice | None, str | None, dict[str, int]]:
        if address not in parents:
            pf = by_address.get(address) or read_pci_device(sysfs, address)
            parents[address] = (
                pf,
                primary_netdev(sysfs, pf) if pf else None,
                {vf: n for n, vf in virtfn_links(sysfs, address).items()} if pf else {},
            )
        return parents[address]

    candidates = []
    for device in devices:
        if not device.is_network:
            continue
        pf, pf_netdev, vf_indexes = parent(device.physfn) if device.physfn else (None, None, {})
        netdev_name = primary_netdev(sysfs, device)
        # Like the plugin: the link type of the VF's netdev, else of its PF's.
        link_source = netdev_name or pf_netdev
        candidates.append(
            PoolDevice(
                address=device.address,
                vendor=device.vendor,
                device=device.device,
                driver=device.driver,
                netdev=netdev_name,
                netdevs=device.netdevs,
                link_type=netdev_link_type(sysfs, link_source) if link_source else None,
                is_rdma=device.is_rdma,
                pf_address=pf.address if pf else None,
                pf_netdev=pf_netdev,
                vf_index=vf_indexes.get(device.address),
                num_vfs=device.num_vfs,
            )
        )
    return candidates


def read_default_route_netdevs(route_table: Path = DEFAULT_ROUTE_TABLE) -> frozenset[str]:
    """Netdevs holding an IPv4 default route, from `/proc/net/route` (this namespace)."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except FileNotFoundError:
        return frozenset()
    netdevs = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and int(fields[1], 16) == 0 and int(fields[7], 16) == 0:
            netdevs.add(fields[0])
    return frozenset(netdevs)
