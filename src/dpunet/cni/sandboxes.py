"""Which sandbox holds which device: on disk, crash-safe.

One JSON file per sandbox at `<state_dir>/sandboxes/<container id>.json` — the
contract the CNI shim relies on (docs/cni.md: no file means "nothing to undo").
It holds one record per attachment of the sandbox, keyed by interface name and
network (a multus secondary network is a second attachment). A record is written
before the device is touched and removed only after the device is back and the
port is released; the file goes with the sandbox's last record. So a daemon killed
at any instant finds, on restart, every device that might be away.

File format 2: the first record's fields at the top level (where format 1, one
record per sandbox without `network`, had them) plus `"format": 2` and `"others"`,
the sandbox's further records. A record's `device` is a `VfDevice` or a `VethDevice`
and its `port` the controller's answer (`contract.api.PortInfo`), `{}` until there is
one; both are parsed strictly, in the JSON form they are written in. A format-1
record reads as network None: it was written when a sandbox had one attachment, so
it is whichever network asks. A file that does not parse (damaged by hand, or
written by a newer version) is `Unreadable`: the devices still found in it stay
claimed; nothing else is done with it.

Writes are atomic: a temporary file in the same directory, fsync, rename, fsync
of the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
)

from dpunet.cni.wire import is_valid_name, sandbox_checkpoint_path
from dpunet.contract.api import PortInfo, port_network
from dpunet.settings import describe

RECORD_FORMAT = 2


class Phase(StrEnum):
    """How far an ADD got (or how far a DEL is)."""

    RESERVED = "reserved"  # device chosen, port not confirmed; it may be on its way in
    PLUGGING = "plugging"  # port exists; the device may be half-way into the pod
    ATTACHED = "attached"  # ADD completed
    RELEASING = "releasing"  # device is back; the port release is pending


class _Device(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostLink(_Device):
    """How a VF's netdev looked in the host before it was handed to a pod (restored on
    release): the part of `dpunet.linux.netlink.Link` a record keeps."""

    name: StrictStr
    mac: StrictStr
    mtu: StrictInt
    up: StrictBool


class VfDevice(_Device):
    """A VF handed to a pod: how to find it again and how it looked in the host."""

    pci: StrictStr
    resource: StrictStr
    pf_mac: StrictStr
    vf_num: StrictInt
    host_link: HostLink

    @property
    def key(self) -> str:
        """What no two attachments may hold at once."""
        return self.pci


class VethDevice(_Device):
    """A veth pair of a full node: its host end and its pod end's name before the move."""

    veth: StrictStr
    peer: StrictStr

    @property
    def key(self) -> str:
        """What no two attachments may hold at once."""
        return self.veth


Device = VfDevice | VethDevice


def _device_kind(data: Any) -> str:
    if isinstance(data, VethDevice) or (isinstance(data, dict) and "veth" in data):
        return "veth"
    return "vf"


_DEVICE: TypeAdapter[Device] = TypeAdapter(
    Annotated[
        Annotated[VfDevice, Tag("vf")] | Annotated[VethDevice, Tag("veth")],
        Discriminator(_device_kind),
    ]
)


def device_json(device: Device) -> dict[str, Any]:
    """The JSON form of a device in a sandbox file."""
    data: dict[str, Any] = device.model_dump(mode="json")
    return data


def parse_device(data: object) -> Device:
    """A device of a sandbox file; ValueError when it is not one this version writes."""
    try:
        return _DEVICE.validate_python(data)
    except ValidationError as exc:
        raise ValueError(f"device: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    # a device's location starts with the union member pydantic tried ("vf", "veth")
    return describe(exc, field=lambda loc: ".".join(str(x) for x in loc[1:] or loc))


def device_key(data: object) -> str | None:
    """The key of a device as far as a file this version cannot read still tells."""
    if not isinstance(data, dict):
        return None
    key = data.get("pci", data.get("veth"))
    return key if isinstance(key, str) else None


@dataclass
class SandboxRecord:
    """One attachment's claim on a device and the port the controller gave it."""

    container_id: str
    netns: str
    ifname: str
    namespace: str
    pod: str
    pod_uid: str
    device: Device
    phase: Phase = Phase.RESERVED
    port: PortInfo | None = None  # the controller's answer, once there is one
    network: str | None = None  # None: a format-1 record (one attachment per sandbox)

    def is_attachment(self, ifname: str, network: str) -> bool:
        """Whether this records attachment (`ifname`, `network`) of its sandbox."""
        return self.ifname == ifname and self.network in (None, network)

    @property
    def port_network(self) -> str | None:
        """The `network` of this attachment's port at the controller: the answer's, else
        the one its ADD asks for (a format-1 record's port is the pod's primary)."""
        if self.port is not None:
            return self.port.network
        return None if self.network is None else port_network(self.ifname, self.network)

    def to_json(self) -> dict[str, Any]:
        """The record's JSON form in a sandbox file."""
        return {
            "container_id": self.container_id,
            "netns": self.netns,
            "ifname": self.ifname,
            "namespace": self.namespace,
            "pod": self.pod,
            "pod_uid": self.pod_uid,
            "device": device_json(self.device),
            "phase": self.phase.value,
            "port": {} if self.port is None else self.port.model_dump(mode="json"),
            "network": self.network,
        }


_TEXT_FIELDS = ("container_id", "netns", "ifname", "namespace", "pod", "pod_uid")
_FIELDS = {f.name for f in fields(SandboxRecord)}


class UnreadableRecord(Exception):
    """A sandbox file this version cannot parse; `devices` are those still found in it."""

    def __init__(self, container_id: str, path: Path, reason: str, devices: list[Any]) -> None:
        super().__init__(f"sandbox record {path} is unreadable: {reason}")
        self.container_id = container_id
        self.path = path
        self.reason = reason
        self.devices = devices


def _record(data: object, container_id: str, fmt: int) -> SandboxRecord:
    """One record of a file of format `fmt`; ValueError when `data` is not one."""
    if not isinstance(data, dict):
        raise ValueError("a record is not a JSON object")
    allowed = _FIELDS if fmt == RECORD_FORMAT else _FIELDS - {"network"}
    unknown = sorted(data.keys() - allowed)
    missing = sorted(allowed - data.keys())
    if unknown or missing:
        raise ValueError(f"unknown fields {unknown}, missing fields {missing}")
    if not all(isinstance(data[name], str) for name in _TEXT_FIELDS):
        raise ValueError(f"{', '.join(_TEXT_FIELDS)} must be strings")
    if not isinstance(data["port"], dict):
        raise ValueError("port must be an object")
    network = data.get("network")
    if network is not None and not isinstance(network, str):
        raise ValueError("network must be a string or null")
    if data["container_id"] != container_id:
        raise ValueError(f"it is the record of sandbox {data['container_id']!r}")
    try:
        port = PortInfo.model_validate(data["port"]) if data["port"] else None
    except ValidationError as exc:
        raise ValueError(f"port: {_problems(exc)}") from None
    return SandboxRecord(
        **{
            **data,
            "phase": Phase(data["phase"]),
            "device": parse_device(data["device"]),
            "port": port,
        }
    )


def parse_records(text: str, container_id: str) -> list[SandboxRecord]:
    """The records of sandbox file `text`; ValueError when it is not one this version
    reads."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    fmt = data.pop("format", 1)
    if type(fmt) is not int or fmt < 1:
        raise ValueError(f"format {fmt!r} is not a format number")
    if fmt > RECORD_FORMAT:
        raise ValueError(f"format {fmt} (a newer dpunet); this version reads up to 2")
    others = data.pop("others", []) if fmt == RECORD_FORMAT else []
    if not isinstance(others, list):
        raise ValueError("others must be a list")
    records = [_record(item, container_id, fmt) for item in [data, *others]]
    if len({r.ifname for r in records}) != len(records):
        raise ValueError("two records of one interface name")
    return records


def format_records(records: list[SandboxRecord]) -> str:
    """The file of a sandbox's records (at least one)."""
    first, *others = (r.to_json() for r in records)
    return json.dumps({**first, "format": RECORD_FORMAT, "others": others}, indent=2)


def _devices_in(data: object) -> list[Any]:
    """Every `device` object anywhere in `data` (what an unreadable file still tells)."""
    if isinstance(data, list):
        return [d for item in data for d in _devices_in(item)]
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        if key == "device" and isinstance(value, dict):
            found.append(value)
        else:
            found.extend(_devices_in(value))
    return found


@dataclass
class StoreScan:
    """Every sandbox file: readable records, and the files that are not."""

    records: list[SandboxRecord]
    unreadable: list[UnreadableRecord]

    @property
    def container_ids(self) -> set[str]:
        """Sandboxes with a file, readable or not."""
        return {r.container_id for r in self.records} | {u.container_id for u in self.unreadable}

    @property
    def claimed(self) -> set[str]:
        """Keys of the devices claimed: by records, and as far as they can be read, by
        unreadable files."""
        keys = {r.device.key for r in self.records}
        found = (device_key(d) for u in self.unreadable for d in u.devices)
        return keys | {key for key in found if key is not None}


class SandboxStore:
    """The directory of sandbox records of one node daemon."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "sandboxes"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, container_id: str) -> Path:
        """The file of a sandbox; ValueError for an unsafe container id."""
        if not is_valid_name(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        return Path(sandbox_checkpoint_path(str(self.state_dir), container_id))

    def exists(self, container_id: str) -> bool:
        """Whether the sandbox has a file (readable or not); no file for an invalid id."""
        return is_valid_name(container_id) and self.path(container_id).exists()

    def load(self, container_id: str) -> list[SandboxRecord]:
        """The records of a sandbox (none without a file); UnreadableRecord."""
        path = self.path(container_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UnreadableRecord(container_id, path, str(exc), []) from exc
        return self._parse(container_id, path, text)

    def save(self, record: SandboxRecord) -> None:
        """Write (or replace) the record of `record`'s interface, atomically and durably."""
        records = [r for r in self.load(record.container_id) if r.ifname != record.ifname]
        self._write(record.container_id, [*records, record])

    def remove(self, record: SandboxRecord) -> None:
        """Forget the record of `record`'s interface (no error when it is gone); the file
        goes with the sandbox's last record."""
        records = self.load(record.container_id)
        rest = [r for r in records if r.ifname != record.ifname]
        if len(rest) == len(records):
            return
        if rest:
            self._write(record.container_id, rest)
            return
        with contextlib.suppress(FileNotFoundError):
            self.path(record.container_id).unlink()
            self._sync_dir()

    def scan(self) -> StoreScan:
        """Every sandbox file, parsed."""
        scan = StoreScan([], [])
        for path in sorted(self.dir.glob("*.json")):
            container_id = path.name.removesuffix(".json")
            try:
                if not is_valid_name(container_id):
                    raise UnreadableRecord(container_id, path, "not a container id", [])
                scan.records.extend(self._parse(container_id, path, path.read_text()))
            except UnreadableRecord as exc:
                scan.unreadable.append(exc)
            except OSError as exc:
                scan.unreadable.append(UnreadableRecord(container_id, path, str(exc), []))
        return scan

    def all(self) -> list[SandboxRecord]:
        """Every readable record."""
        return self.scan().records

    @staticmethod
    def _parse(container_id: str, path: Path, text: str) -> list[SandboxRecord]:
        try:
            return parse_records(text, container_id)
        except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError: a ValueError
            try:
                devices = _devices_in(json.loads(text))
            except (ValueError, RecursionError):
                devices = []
            raise UnreadableRecord(container_id, path, str(exc), devices) from exc

    def _write(self, container_id: str, records: list[SandboxRecord]) -> None:
        final = self.path(container_id)
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "w") as f:
            f.write(format_records(records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
