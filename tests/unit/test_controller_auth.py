"""The bearer token file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dpunet.controller.auth import (
    DEFAULT_NAMESPACES,
    Principal,
    TokenFileError,
    TokenStore,
    parse_tokens,
)
from dpunet.controller.metrics import Metrics

GOOD = """
# dpunet controller tokens
0123456789abcdef-admin   admin
0123456789abcdef-host1   node:host1   # the dpu-host agent of host1
"""


def test_parse_maps_tokens_to_principals() -> None:
    tokens = parse_tokens(GOOD)
    assert tokens["0123456789abcdef-admin"] == Principal(admin=True)
    host = tokens["0123456789abcdef-host1"]
    assert host == Principal(admin=False, node="host1", namespaces=DEFAULT_NAMESPACES)
    assert host.may_act_for("host1") and not host.may_act_for("host2")
    assert Principal(admin=True).may_act_for("anything")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("short admin", "16-256 characters"),
        ("0123456789abcdef-x", "expected"),
        ("0123456789abcdef-x root", "subject must be"),
        ("0123456789abcdef-x node:", "subject must be"),
        ("0123456789abcdef-x admin\n0123456789abcdef-x node:a", "line 2: duplicate"),
    ],
)
def test_malformed_lines_are_named(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(text)


def token_file(tmp_path: Path, text: str = GOOD, mode: int = 0o600) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return path


def rewrite(path: Path, text: str) -> None:
    """New content with a new mtime (whatever the clock's resolution)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_store_authenticates_and_rereads_a_changed_file(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    store = TokenStore(path, recheck_s=0)
    assert store.authenticate("0123456789abcdef-admin") == Principal(admin=True)
    assert store.authenticate("nope") is None
    rewrite(path, GOOD + "0123456789abcdef-host2 node:host2\n")
    assert store.authenticate("0123456789abcdef-host2") == Principal(
        admin=False, node="host2", namespaces=DEFAULT_NAMESPACES
    )
    assert store.error is None


def test_a_malformed_edit_revokes_every_token(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    store = TokenStore(path, recheck_s=0)
    metrics = Metrics(list)
    metrics.watch_token_file(store.valid)
    valid = "dpunet_controller_token_file_valid"
    assert metrics.registry.get_sample_value(valid) == 1
    rewrite(path, GOOD + "broken\n")
    assert store.authenticate("0123456789abcdef-admin") is None
    assert store.error is not None and "line 5" in store.error
    assert metrics.registry.get_sample_value(valid) == 0
    rewrite(path, GOOD)
    assert store.authenticate("0123456789abcdef-admin") == Principal(admin=True)
    assert store.error is None and metrics.registry.get_sample_value(valid) == 1


def test_a_deleted_file_revokes_every_token(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    store = TokenStore(path, recheck_s=0)
    path.unlink()
    assert store.authenticate("0123456789abcdef-host1") is None
    assert store.error is not None and "cannot read token file" in store.error


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_open_to_group_or_others_is_refused_at_start(tmp_path: Path, mode: int) -> None:
    with pytest.raises(TokenFileError, match=r"group or others.*chmod 600"):
        TokenStore(token_file(tmp_path, mode=mode))


def test_a_file_made_readable_by_others_revokes_every_token(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    store = TokenStore(path, recheck_s=0)
    path.chmod(0o644)
    assert store.authenticate("0123456789abcdef-admin") is None
    assert store.error is not None and "group or others" in store.error


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read token file"):
        TokenStore(tmp_path / "absent")
