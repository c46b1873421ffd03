"""The node daemons' CNI server: an asyncio unix-socket server that answers `dpunet-cni`.

A daemon implements `CniHandler` and runs::

    server = CniServer(handler, "/run/dpunet/cni.sock", state_dir="/var/lib/dpunet")
    await server.start()          # socket mode 0600, parent directory created
    ...                           # the daemon's other work; the server runs in the loop
    await server.close()

(or `async with CniServer(...) as server: await server.serve_forever()`).

Per request the server validates env and config once, from the socket bytes to the typed
request: the CNI rules (`wire.parse_invocation`; the socket is an untrusted boundary, so
nothing the shim checked is taken for granted), then dpunet's (`models.parse_request`,
which also refuses a config whose `stateDir` is not the daemon's: the shim's DEL
fallback relies on it). It refuses (code 4) an ADD or CHECK whose `CNI_NETNS` is no pod's
network namespace (`dpunet.linux.netns`), serializes requests of one container (with
`locks`, shared with whatever else must exclude them, e.g. the daemon's reconcile),
calls the handler with the typed request, renders the result for the request's CNI
version and logs one `event=cni ...` line. A DEL whose config the daemon refuses
succeeds without calling the handler when the sandbox has no checkpoint (nothing can
have been attached with it).
Handler exceptions other than `CniError` become code 11 (5 for an `OSError`, 50 for
STATUS) with a one-line message; the traceback goes to the daemon log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from dpunet.cni.models import (
    AddRequest,
    AttachmentRequest,
    CheckRequest,
    DelRequest,
    GcRequest,
    StatusRequest,
    parse_request,
)
from dpunet.cni.results import AddResult
from dpunet.cni.wire import (
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    LATEST_VERSION,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    CniError,
    ErrorCode,
    Invocation,
    json_loads,
    parse_invocation,
    reply_version,
    sandbox_checkpoint_path,
    version_reply,
)
from dpunet.keyedlocks import KeyedLocks
from dpunet.linux.netns import netns_problem

log = logging.getLogger("dpunet.cni")

DEFAULT_READ_TIMEOUT = 10.0


class CniHandler(Protocol):
    """What a node daemon plugs into the server. Raise `CniError` for a specific code;
    anything else is reported as a generic failure."""

    async def add(self, req: AddRequest) -> AddResult:
        """Attach; return only what this attachment created (the server appends it to
        `req.prev_result` when chained)."""
        ...

    async def delete(self, req: DelRequest) -> None:
        """Detach; succeed when there is nothing (left) to undo."""
        ...

    async def check(self, req: CheckRequest) -> None:
        """Verify the attachment described by `req.prev_result`."""
        ...

    async def status(self, req: StatusRequest) -> None:
        """Raise CniError code 50 (or 51) when ADDs cannot be served."""
        ...

    async def gc(self, req: GcRequest) -> None:
        """Release what belongs to no attachment in `req.valid_attachments`."""
        ...


class CniServer:
    """Serves CNI requests from `dpunet-cni` on a unix socket (mode 0600)."""

    def __init__(
        self,
        handler: CniHandler,
        socket_path: str | Path = DEFAULT_SOCKET,
        *,
        state_dir: str | Path = DEFAULT_STATE_DIR,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        locks: KeyedLocks | None = None,
        netns_check: Callable[[str], str | None] = netns_problem,
    ) -> None:
        """`locks`: the per-container locks ADD, DEL and CHECK hold (default: the
        server's own); `netns_check`: why a CNI_NETNS path is no pod's namespace."""
        self.handler = handler
        self.socket_path = Path(socket_path)
        self.state_dir = Path(state_dir)
        self.read_timeout = read_timeout
        self._server: asyncio.AbstractServer | None = None
        self._identity: tuple[int, int] | None = None
        self._locks = locks if locks is not None else KeyedLocks()
        self._netns_check = netns_check

    async def __aenter__(self) -> CniServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the socket (replacing a stale one) and start accepting; OSError when
        another process already serves this path."""
        path = self.socket_path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        await self._refuse_live_socket(path)
        # Bind under a private name, restrict it, move it into place, then listen: no
        # client can ever connect to a socket with wider permissions.
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            sock.bind(str(temp))
            os.chmod(temp, 0o600)
            os.rename(temp, path)
            info = os.stat(path)
            self._identity = (info.st_dev, info.st_ino)
            self._server = await asyncio.start_unix_server(self._on_connection, sock=sock)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise
        log.info("event=cni_listen socket=%s state_dir=%s", path, self.state_dir)

    async def serve_forever(self) -> None:
        """Serve until cancelled (start() first)."""
        if self._server is None:
            raise RuntimeError("CniServer.start() was not called")
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop accepting and remove the socket if it is still ours."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(self.socket_path)
            if (info.st_dev, info.st_ino) == self._identity:
                self.socket_path.unlink()

    @staticmethod
    async def _refuse_live_socket(path: Path) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return
        writer.close()
        raise OSError(f"another process is serving {path}")

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            response = await self._respond(reader)
            writer.write(json.dumps(response).encode())
            await writer.drain()
        except (ConnectionError, TimeoutError) as exc:
            log.warning("event=cni_connection_lost error=%r", str(exc))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            data = await asyncio.wait_for(_read_all(reader), self.read_timeout)
            env, config = _decode_request(data)
        except CniError as exc:
            log.warning("event=cni_bad_request code=%d msg=%r", exc.code, exc.msg)
            return {"protocol": PROTOCOL_VERSION, "error": exc.to_json(LATEST_VERSION)}
        return await self.handle(env, config)

    async def handle(self, env: Mapping[str, str], config: bytes) -> dict[str, Any]:
        """Answer one request (the CNI_* env and the config bytes) with a response
        object of the wire protocol."""
        started = time.monotonic()
        inv: Invocation | None = None
        outcome: dict[str, Any]
        try:
            inv = parse_invocation(env, config)
            if inv.command == "VERSION":
                outcome = {"result": version_reply(config)}
            else:
                outcome = {"result": await self._dispatch(inv)}
        except Exception as exc:
            version = inv.cni_version if inv is not None else reply_version(config)
            error = exc if isinstance(exc, CniError) else _translate(env, exc)
            outcome = {"error": error.to_json(version)}
        _log_request(env, inv, outcome, time.monotonic() - started)
        return {"protocol": PROTOCOL_VERSION, **outcome}

    async def _dispatch(self, inv: Invocation) -> dict[str, Any] | None:
        try:
            req = parse_request(inv, str(self.state_dir))
        except CniError as exc:
            # A config the daemon refuses cannot have attached anything: a DEL for a
            # sandbox without checkpoint succeeds, so a failed ADD never blocks teardown.
            if inv.command == "DEL" and not self._has_checkpoint(inv.container_id):
                log.warning(
                    "event=cni_del_nothing_to_undo container=%s code=%d msg=%r",
                    inv.container_id,
                    exc.code,
                    exc.msg,
                )
                return None
            raise
        if isinstance(req, StatusRequest):
            await self.handler.status(req)
        elif isinstance(req, GcRequest):
            await self.handler.gc(req)
        elif isinstance(req, AttachmentRequest):
            return await self._attachment(req)
        return None

    def _has_checkpoint(self, container_id: str) -> bool:
        try:
            os.stat(sandbox_checkpoint_path(str(self.state_dir), container_id))
        except FileNotFoundError:
            return False
        return True

    async def _attachment(self, req: AttachmentRequest) -> dict[str, Any] | None:
        if isinstance(req, (AddRequest, CheckRequest)):
            problem = self._netns_check(req.netns)
            if problem is not None:
                raise CniError(
                    ErrorCode.INVALID_ENV, f"CNI_NETNS {req.netns!r} is refused", problem
                )
        async with self._locks.hold(req.container_id):
            if isinstance(req, AddRequest):
                result = await self.handler.add(req)
                prev = req.prev_result
                final = result.chained_after(prev) if prev is not None else result
                return final.render(req.cni_version)
            if isinstance(req, DelRequest):
                await self.handler.delete(req)
            elif isinstance(req, CheckRequest):
                await self.handler.check(req)
        return None


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_MESSAGE_BYTES:
            raise CniError(ErrorCode.IO_FAILURE, f"request larger than {MAX_MESSAGE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_request(data: bytes) -> tuple[dict[str, str], bytes]:
    """The request's env and config; the shim's codec bounds nesting (no RecursionError)."""
    try:
        request = json_loads(data.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError included
        raise CniError(ErrorCode.DECODE_FAILURE, "request is not JSON", str(exc)) from None
    if not isinstance(request, dict) or request.get("protocol") != PROTOCOL_VERSION:
        raise CniError(
            ErrorCode.IO_FAILURE,
            f"not a dpunet-cni request of protocol {PROTOCOL_VERSION}",
            "the shim and the daemon are from different dpunet versions",
        )
    env, config = request.get("env"), request.get("config")
    if (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        or not isinstance(config, str)
    ):
        raise CniError(ErrorCode.DECODE_FAILURE, "request needs env (strings) and config (text)")
    try:
        return env, config.encode()
    except UnicodeEncodeError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "config is not valid text", str(exc)) from None


def _translate(env: Mapping[str, str], exc: Exception) -> CniError:
    """The CNI error for an unexpected exception (from a handler); logs its traceback."""
    command = env.get("CNI_COMMAND", "")
    log.error("event=cni_handler_failed verb=%s", command, exc_info=exc)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if command == "STATUS":
        return CniError(ErrorCode.NOT_AVAILABLE, "dpunet daemon cannot serve ADD", text)
    if isinstance(exc, TimeoutError):
        return CniError(ErrorCode.TRY_AGAIN_LATER, f"{command} timed out; try again later", text)
    if isinstance(exc, OSError):
        return CniError(ErrorCode.IO_FAILURE, f"{command} failed with an I/O error", text)
    return CniError(
        ErrorCode.TRY_AGAIN_LATER,
        f"{command} failed in the dpunet daemon (see its log); try again later",
        text,
    )


def _log_request(
    env: Mapping[str, str], inv: Invocation | None, outcome: dict[str, Any], seconds: float
) -> None:
    fields: dict[str, object] = {
        "verb": env.get("CNI_COMMAND", ""),
        "container": env.get("CNI_CONTAINERID", ""),
        "ifname": env.get("CNI_IFNAME", ""),
    }
    if inv is not None:
        namespace, name = inv.args.get("K8S_POD_NAMESPACE"), inv.args.get("K8S_POD_NAME")
        if name:
            fields["pod"] = f"{namespace}/{name}" if namespace else name
        if inv.command != "VERSION":
            fields["cni_version"] = inv.cni_version
    error = outcome.get("error")
    if error is None:
        fields["outcome"] = "ok"
    else:
        fields["outcome"] = "error"
        fields["code"] = error["code"]
        fields["msg"] = error["msg"]
    fields["duration_ms"] = f"{seconds * 1000:.1f}"
    line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
    log.log(logging.INFO if error is None else logging.WARNING, "event=cni %s", line)


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text
