"""The bearer token file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from dpunet.controller.auth import Principal, TokenFileError, TokenStore, parse_tokens

GOOD = """
# dpunet controller tokens
0123456789abcdef-admin   admin
0123456789abcdef-host1   node:host1   # the dpu-host agent of host1
"""


def test_parse_maps_tokens_to_principals() -> None:
    tokens = parse_tokens(GOOD)
    assert tokens["0123456789abcdef-admin"] == Principal(admin=True)
    host = tokens["0123456789abcdef-host1"]
    assert host == Principal(admin=False, node="host1")
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


def test_store_authenticates_and_rereads_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(GOOD)
    store = TokenStore(path)
    assert store.authenticate("0123456789abcdef-admin") == Principal(admin=True)
    assert store.authenticate("nope") is None
    path.write_text(GOOD + "0123456789abcdef-host2 node:host2\n")
    future = time.time() + 5
    os.utime(path, (future, future))
    time.sleep(1.1)  # the store looks at the file at most once a second
    assert store.authenticate("0123456789abcdef-host2") == Principal(admin=False, node="host2")
    path.write_text("broken")
    os.utime(path, (future + 5, future + 5))
    time.sleep(1.1)
    assert store.authenticate("0123456789abcdef-host2") is not None  # last good tokens kept


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read token file"):
        TokenStore(tmp_path / "absent")
