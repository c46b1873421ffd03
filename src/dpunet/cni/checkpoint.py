"""The sandbox checkpoint files of the CNI checkpoint contract (see docs/cni.md).

A node daemon keeps `<stateDir>/sandboxes/<CNI_CONTAINERID>.json` for every sandbox that
holds (or may hold) resources: written before an ADD changes anything, removed only after a
DEL undid everything. The shim relies on it when the daemon is down: no file, nothing to
undo. Writes and removals are atomic and durable (fsync of file and directory). The calls
block; asyncio daemons run them in a thread executor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dpunet.cni.shim import is_valid_name, sandbox_checkpoint_path


class SandboxCheckpoints:
    """The checkpoint files under `<state_dir>/sandboxes/`."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.directory = self.state_dir / "sandboxes"

    def path(self, container_id: str) -> Path:
        """The checkpoint file of `container_id`; ValueError for an invalid container ID."""
        if not is_valid_name(container_id):
            raise ValueError(f"invalid container ID {container_id!r}")
        return Path(sandbox_checkpoint_path(str(self.state_dir), container_id))

    def write(self, container_id: str, record: Mapping[str, Any]) -> None:
        """Create or replace the checkpoint of `container_id` atomically and durably."""
        target = self.path(container_id)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        with open(temp, "w", encoding="utf-8") as out:
            json.dump(dict(record), out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
        self._sync_directory()

    def read(self, container_id: str) -> dict[str, Any] | None:
        """The checkpoint of `container_id`, None when there is none; ValueError when the
        file is not a JSON object."""
        try:
            text = self.path(container_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError(f"checkpoint of {container_id} is not a JSON object")
        return record

    def remove(self, container_id: str) -> None:
        """Remove the checkpoint of `container_id` (durably; no error when absent)."""
        try:
            self.path(container_id).unlink()
        except FileNotFoundError:
            return
        self._sync_directory()

    def container_ids(self) -> list[str]:
        """The container IDs that have a checkpoint, sorted."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        ids = (name.removesuffix(".json") for name in names if name.endswith(".json"))
        return sorted(cid for cid in ids if is_valid_name(cid))

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
