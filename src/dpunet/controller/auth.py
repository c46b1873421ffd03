"""Who a request comes from: the `Authenticator` of the controller's mode.

Standalone mode (`StaticTokens`): bearer tokens from a file, each mapped to one node or
to the admin. Kubernetes mode: ServiceAccount tokens through TokenReview
(`dpunet.k8s.tokenreview`).

Token file format (one entry per line, `#` starts a comment, blank lines are ignored):

    <token> node:<node-name>
    <token> admin

Tokens are 16 to 256 characters of `A-Z a-z 0-9 . _ ~ + / = -`. The file is re-read
when its modification time changes, so tokens can be added without a restart.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")
_RECHECK_S = 1.0


class TokenFileError(Exception):
    """The token file is missing or malformed (message names the line)."""


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    admin: bool
    node: str | None = None

    def may_act_for(self, node: str) -> bool:
        """True when the caller may create/delete ports of `node`."""
        return self.admin or self.node == node

    def __str__(self) -> str:
        return "admin" if self.admin else f"node:{self.node}"


def parse_tokens(text: str, source: str = "token file") -> dict[str, Principal]:
    """Parse the token file format; TokenFileError on the first bad line."""
    out: dict[str, Principal] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source} line {lineno}"
        if len(parts) != 2:
            raise TokenFileError(f"{where}: expected '<token> node:<name>' or '<token> admin'")
        token, subject = parts
        if not _TOKEN_RE.match(token):
            raise TokenFileError(f"{where}: token must be 16-256 characters [A-Za-z0-9._~+/=-]")
        if subject == "admin":
            principal = Principal(admin=True)
        elif subject.startswith("node:") and len(subject) > len("node:"):
            principal = Principal(admin=False, node=subject[len("node:") :])
        else:
            raise TokenFileError(f"{where}: subject must be 'admin' or 'node:<name>'")
        if token in out:
            raise TokenFileError(f"{where}: duplicate token")
        out[token] = principal
    return out


class TokenStore:
    """The token file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._checked = 0.0
        self._tokens: dict[str, Principal] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file now; TokenFileError when it is unreadable or malformed."""
        try:
            stat = self.path.stat()
            text = self.path.read_text()
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {self.path}: {exc.strerror}") from exc
        tokens = parse_tokens(text, str(self.path))
        with self._lock:
            self._tokens = tokens
            self._mtime = stat.st_mtime
            self._checked = time.monotonic()

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RECHECK_S:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return  # keep the last good tokens
        if mtime != self._mtime:
            try:
                self.reload()
            except TokenFileError:
                return  # keep the last good tokens; the error shows at the next start

    def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`, or None."""
        self._refresh()
        with self._lock:
            items = list(self._tokens.items())
        found = None
        for known, principal in items:
            if hmac.compare_digest(known.encode(), token.encode()):
                found = principal
        return found


class Authenticator(Protocol):
    """Maps a bearer token to its principal."""

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`, or None (401)."""
        ...


class StaticTokens:
    """Standalone mode: the token file."""

    def __init__(self, store: TokenStore) -> None:
        self.store = store

    async def authenticate(self, token: str) -> Principal | None:
        """The principal the token file gives `token`, or None."""
        return self.store.authenticate(token)
