"""Which sandbox holds which device: on disk, crash-safe.

One JSON file per sandbox at `<state_dir>/sandboxes/<container id>.json` — the
contract the CNI shim relies on (docs/cni.md: no file means "nothing to undo").
A record is written before the device is touched and removed only after the
device is back and the port is released, so a daemon killed at any instant finds,
on restart, every device that might be away.

Writes are atomic: a temporary file in the same directory, fsync, rename, fsync
of the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dpunet.cni.shim import is_valid_name, sandbox_checkpoint_path


class Phase(StrEnum):
    """How far an ADD got (or how far a DEL is)."""

    RESERVED = "reserved"  # device chosen, port not confirmed; it may be on its way in
    PLUGGING = "plugging"  # port exists; the device may be half-way into the pod
    ATTACHED = "attached"  # ADD completed
    RELEASING = "releasing"  # device is back; the port release is pending


@dataclass
class SandboxRecord:
    """One sandbox's claim on a device and the port the controller gave it."""

    container_id: str
    netns: str
    ifname: str
    namespace: str
    pod: str
    pod_uid: str
    device: dict[str, Any]
    phase: Phase = Phase.RESERVED
    port: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialised form."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxRecord:
        """Parse a record; ValueError when the text is not one."""
        try:
            data = json.loads(text)
            data["phase"] = Phase(data["phase"])
            return cls(**data)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a sandbox record: {exc}") from exc


class SandboxStore:
    """The directory of sandbox records of one node daemon."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.dir = state_dir / "sandboxes"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path(self, container_id: str) -> Path:
        """The record file of a sandbox; ValueError for an unsafe container id."""
        if not is_valid_name(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        return Path(sandbox_checkpoint_path(str(self.state_dir), container_id))

    def save(self, record: SandboxRecord) -> None:
        """Write (or replace) a record atomically and durably."""
        final = self.path(record.container_id)
        tmp = final.with_name(f".{final.name}.tmp")
        with open(tmp, "w") as f:
            f.write(record.to_json())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        self._sync_dir()

    def load(self, container_id: str) -> SandboxRecord | None:
        """The record of a sandbox, or None."""
        try:
            return SandboxRecord.from_json(self.path(container_id).read_text())
        except FileNotFoundError:
            return None

    def remove(self, container_id: str) -> None:
        """Forget a sandbox (no error when it is already gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(container_id).unlink()
            self._sync_dir()

    def all(self) -> list[SandboxRecord]:
        """Every readable record (a hand-damaged file is skipped, not fatal)."""
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(SandboxRecord.from_json(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
