"""The host agent's checkpoint: which sandbox holds which VF, on disk, crash-safe.

One JSON file per attached sandbox at `<state_dir>/sandboxes/<container id>.json`
(the contract the CNI shim relies on: no file means "nothing to undo"). A record
is written before the VF is touched and removed only after the VF is back in the
host and the port is released, so a daemon killed at any instant finds, on
restart, every VF that might be away from the host.

Writes are atomic: a temporary file in the same directory, fsync, rename, fsync
of the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dpunet.podnet import HostLinkState

_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")


class Phase(StrEnum):
    """How far an ADD got."""

    RESERVED = "reserved"  # VF taken, nothing moved yet
    MOVED = "moved"  # VF may be in the pod namespace
    ATTACHED = "attached"  # ADD completed


@dataclass
class SandboxRecord:
    """One sandbox's claim on a VF."""

    container_id: str
    netns: str
    ifname: str
    namespace: str
    pod: str
    pod_uid: str
    pci: str
    pf_mac: str
    vf_num: int
    host_link: HostLinkState
    phase: Phase = Phase.RESERVED
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialised form."""
        data = asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SandboxRecord:
        """Parse a record (ValueError when it is not one)."""
        data = json.loads(text)
        try:
            data["host_link"] = HostLinkState(**data["host_link"])
            data["phase"] = Phase(data["phase"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a sandbox record: {exc}") from exc


def valid_container_id(container_id: str) -> bool:
    """Whether a container id is safe to use as a file name."""
    return bool(_CONTAINER_ID_RE.match(container_id))


class CheckpointStore:
    """The directory of sandbox records."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "sandboxes"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, container_id: str) -> Path:
        """The record file of a sandbox."""
        if not valid_container_id(container_id):
            raise ValueError(f"invalid container id {container_id!r}")
        return self.dir / f"{container_id}.json"

    def save(self, record: SandboxRecord) -> None:
        """Write (or replace) a record atomically."""
        final = self.path(record.container_id)
        tmp = final.with_suffix(".tmp")
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
        """Every readable record; unreadable files (torn by nothing, but hand-edited) are skipped."""
        out = []
        for path in sorted(self.dir.glob("*.json")):
            try:
                out.append(SandboxRecord.from_json(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def by_pci(self) -> dict[str, SandboxRecord]:
        """Records keyed by the PCI address of the VF they hold."""
        return {r.pci: r for r in self.all()}

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
