"""The sandbox checkpoint files, and the shim's DEL fallback reading what they write."""

from __future__ import annotations

from pathlib import Path

import pytest
from cni_harness import CONTAINER_ID, attachment_env, netconf, run_shim

from dpunet.cni.checkpoint import SandboxCheckpoints
from dpunet.cni.shim import ErrorCode


def test_write_read_remove(tmp_path: Path) -> None:
    store = SandboxCheckpoints(tmp_path / "state")
    assert store.read("abc") is None
    assert store.container_ids() == []
    store.write("abc", {"pci": "0000:02:00.2", "ifname": "eth0"})
    store.write("def", {})
    assert store.read("abc") == {"ifname": "eth0", "pci": "0000:02:00.2"}
    assert store.path("abc") == tmp_path / "state" / "sandboxes" / "abc.json"
    store.write("abc", {"pci": "0000:02:00.3"})
    assert store.read("abc") == {"pci": "0000:02:00.3"}
    assert store.container_ids() == ["abc", "def"]
    assert sorted(p.name for p in store.directory.iterdir()) == ["abc.json", "def.json"]
    store.remove("abc")
    store.remove("abc")
    assert store.container_ids() == ["def"]


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", ".hidden"])
def test_invalid_container_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        SandboxCheckpoints(tmp_path).path(bad)


def test_a_corrupt_checkpoint_is_reported(tmp_path: Path) -> None:
    store = SandboxCheckpoints(tmp_path)
    store.write("abc", {})
    store.path("abc").write_text("[]")
    with pytest.raises(ValueError):
        store.read("abc")


def test_shim_del_fallback_follows_the_checkpoint(tmp_path: Path) -> None:
    store = SandboxCheckpoints(tmp_path)
    config = netconf("1.0.0", tmp_path)
    down = tmp_path / "down.sock"
    store.write(CONTAINER_ID, {"pci": "0000:02:00.2"})
    assert run_shim(attachment_env("DEL"), config, socket=down).code == ErrorCode.TRY_AGAIN_LATER
    store.remove(CONTAINER_ID)
    assert run_shim(attachment_env("DEL"), config, socket=down).returncode == 0
