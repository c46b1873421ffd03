"""Who a request comes from: the `Authenticator` of the controller's mode.

Standalone mode (`StaticTokens`): bearer tokens from a file, each mapped to one node or
to the admin. Kubernetes mode: ServiceAccount tokens through TokenReview
(`dpunet.controller.k8s.tokenreview`), and with `dpu_token_file` the DPU agents' tokens
from a file of `dpu:<chassis>` lines only (`DpuTokensFirst`): a DPU holds no Kubernetes
credentials.

Token file format (one entry per line, `#` starts a comment, blank lines are ignored):

    <token> node:<node-name> [namespaces=<ns>[,<ns>...]|namespaces=*]
    <token> dpu:<chassis>
    <token> admin

A node token may use (create, list ports of) the pod namespaces it names, `*` for all;
without `namespaces=` only `default` (what a bare runtime's pods are in). A DPU token
(`dpu:<chassis>`) may only register that chassis for a dpu-host node
(`dpunet.controller.registration`) and renew the DPU lease of the node registered with
it.

Tokens are 16 to 256 characters of `A-Z a-z 0-9 . _ ~ + / = -`. The file is re-read
when it changes, so tokens can be added and revoked without a restart. It must not be
accessible by group or others. Revocation fails closed: while the file is missing,
malformed or open to others, no token is valid (`TokenStore.error` says why).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dpunet.logs import event

_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{16,256}$")
_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_NAMESPACES = frozenset({"default"})
_RECHECK_S = 1.0
log = logging.getLogger("dpunet.controller.auth")


class TokenFileError(Exception):
    """The token file is missing or malformed (message names the line)."""


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    admin: bool
    node: str | None = None
    namespaces: frozenset[str] | None = None  # pod namespaces it may use (None: all)
    dpu: str | None = None  # a DPU agent: its chassis (no node, no namespace)

    def may_act_for(self, node: str) -> bool:
        """True when the caller may create/delete ports of `node`."""
        return self.admin or self.node == node

    def may_use_namespace(self, namespace: str) -> bool:
        """True when the caller may create (or list) ports in `namespace`."""
        return self.admin or self.namespaces is None or namespace in self.namespaces

    def __str__(self) -> str:
        if self.dpu is not None:
            return f"dpu:{self.dpu}"
        return "admin" if self.admin else f"node:{self.node}"


def parse_tokens(
    text: str, source: str = "token file", dpu_only: bool = False
) -> dict[str, Principal]:
    """Parse the token file format; TokenFileError on the first bad line (with `dpu_only`,
    also on a node or admin line)."""
    out: dict[str, Principal] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source} line {lineno}"
        if len(parts) not in (2, 3):
            raise TokenFileError(
                f"{where}: expected '<token> node:<name> [namespaces=<ns>,...]', "
                "'<token> dpu:<chassis>' or '<token> admin'"
            )
        token, subject = parts[:2]
        if not _TOKEN_RE.match(token):
            raise TokenFileError(f"{where}: token must be 16-256 characters [A-Za-z0-9._~+/=-]")
        if subject == "admin":
            if len(parts) == 3:
                raise TokenFileError(f"{where}: admin has every namespace; drop '{parts[2]}'")
            principal = Principal(admin=True)
        elif subject.startswith("node:") and len(subject) > len("node:"):
            namespaces = _namespaces(parts[2], where) if len(parts) == 3 else DEFAULT_NAMESPACES
            principal = Principal(admin=False, node=subject[len("node:") :], namespaces=namespaces)
        elif subject.startswith("dpu:") and len(subject) > len("dpu:"):
            if len(parts) == 3:
                raise TokenFileError(f"{where}: a DPU uses no namespace; drop '{parts[2]}'")
            principal = Principal(admin=False, namespaces=frozenset(), dpu=subject[len("dpu:") :])
        else:
            raise TokenFileError(
                f"{where}: subject must be 'admin', 'node:<name>' or 'dpu:<chassis>'"
            )
        if dpu_only and principal.dpu is None:
            raise TokenFileError(
                f"{where}: only '<token> dpu:<chassis>' lines belong in the DPU token file "
                "(nodes and admins authenticate with TokenReview)"
            )
        if token in out:
            raise TokenFileError(f"{where}: duplicate token")
        out[token] = principal
    return out


def _namespaces(clause: str, where: str) -> frozenset[str] | None:
    """`namespaces=a,b` -> {a, b}; `namespaces=*` -> None (all)."""
    key, _, value = clause.partition("=")
    if key != "namespaces":
        raise TokenFileError(f"{where}: third field must be namespaces=<ns>[,<ns>...] or '*'")
    if not value:
        raise TokenFileError(f"{where}: namespaces= needs a namespace list or '*'")
    if value == "*":
        return None
    names = value.split(",")
    for name in names:
        if not _DNS_LABEL_RE.match(name):
            raise TokenFileError(f"{where}: namespace {name!r} is not a DNS label")
    return frozenset(names)


def _signature(st: os.stat_result) -> tuple[int, ...]:
    """What changes when the file is edited, replaced or chmod-ed."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class TokenStore:
    """The token file, re-read when it changes; no token is valid while it is unusable.
    `dpu_only`: a file of DPU tokens only (Kubernetes mode's `dpu_token_file`)."""

    def __init__(self, path: Path, recheck_s: float = _RECHECK_S, dpu_only: bool = False) -> None:
        self.path = path
        self.recheck_s = recheck_s
        self.dpu_only = dpu_only
        self.error: str | None = None
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._checked = 0.0
        self._tokens: dict[str, Principal] = {}
        self.reload()

    def _read(self) -> tuple[tuple[int, ...], dict[str, Principal]]:
        try:
            with self.path.open() as f:
                st = os.fstat(f.fileno())
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise TokenFileError(f"cannot read token file {self.path}: {reason}") from exc
        if st.st_mode & 0o077:
            raise TokenFileError(
                f"token file {self.path} is accessible by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it"
            )
        return _signature(st), parse_tokens(text, str(self.path), self.dpu_only)

    def reload(self) -> None:
        """Read the file now; TokenFileError when it is unreadable, malformed or open to
        group/others (the tokens read before are then no longer valid)."""
        try:
            signature, tokens = self._read()
        except TokenFileError as exc:
            with self._lock:
                self._tokens, self._signature = {}, None
                self._checked = time.monotonic()
                if self.error != str(exc):
                    event(log, "auth.token_file_invalid", logging.ERROR, error=str(exc))
                self.error = str(exc)
            raise
        with self._lock:
            if self.error is not None:
                event(log, "auth.token_file_valid", tokens=len(tokens))
            self._tokens, self._signature, self.error = tokens, signature, None
            self._checked = time.monotonic()

    def refresh(self) -> None:
        """Re-read the file if it changed (at most every `recheck_s`)."""
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        self._checked = now
        try:
            signature: tuple[int, ...] | None = _signature(self.path.stat())
        except OSError:
            signature = None
        if signature is None or signature != self._signature:
            with contextlib.suppress(TokenFileError):  # logged; no token is valid meanwhile
                self.reload()

    def valid(self) -> bool:
        """The file is usable now (refreshed first)."""
        self.refresh()
        return self.error is None

    def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`, or None."""
        self.refresh()
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


class DpuTokensFirst:
    """Kubernetes mode with `dpu_token_file`: a DPU token from that file (never sent to the
    API server), every other token through `others` (TokenReview)."""

    def __init__(self, store: TokenStore, others: Authenticator) -> None:
        self.store = store
        self.others = others

    async def authenticate(self, token: str) -> Principal | None:
        """The DPU the file gives `token`, else what `others` says."""
        return self.store.authenticate(token) or await self.others.authenticate(token)
