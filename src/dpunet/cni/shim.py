"""dpunet-cni: the CNI plugin the container runtime executes.

It imports only cheap standard-library modules and `dpunet.cni.wire` (the rules it shares
with the node daemon's CNI server), so it runs under ``python3 -IS`` and starts close to a
bare interpreter. ``dpunet.cni.install.install_shim`` installs both as a small package next
to their bytecode with a launcher (hence the relative import); the ``dpunet-cni`` console
script and ``python -m dpunet.cni.shim`` run it too.

What it does:

* answers VERSION itself;
* checks the ``CNI_*`` environment (`wire.check_env`) and decodes the network config from
  stdin (`wire.decode_config`): what it needs to build the request;
* forwards everything else to the daemon over a unix socket (config field ``socket`` when
  it is an absolute path, else env ``DPUNET_CNI_SOCKET``, else ``/run/dpunet/cni.sock``)
  and relays its answer: a result on stdout with exit 0, or a CNI error object
  ``{cniVersion, code, msg, details}`` on stdout with exit 1. The whole exchange is
  bounded by ``DPUNET_CNI_TIMEOUT`` seconds (default 120). The daemon validates the
  config; the shim does not validate it again.

When the daemon gives no valid answer (no socket, connection refused, timeout, connection
dropped, malformed reply), the shim answers alone: a config that breaks a CNI rule gets
that rule's error (`wire.check_config`, as the daemon would have answered); otherwise
ADD, CHECK and GC fail with code 11 (try again later), STATUS with code 50 (plugin not
available). DEL succeeds only when there is provably nothing to undo, by this checkpoint
contract: a node daemon (dpunet-host, dpunet-node) creates
``<stateDir>/sandboxes/<CNI_CONTAINERID>.json`` (``stateDir`` from the network config,
default ``/var/lib/dpunet``) before an ADD changes anything, and removes it only after a
DEL has undone everything for that container. No such file: DEL succeeds; otherwise (or
when its presence cannot be determined) code 11.
"""

from __future__ import annotations

import _socket
import posix  # not `os`: its import chain is a tenth of a bare interpreter's start
import sys
import time

from .wire import (
    DEFAULT_SOCKET,
    DEFAULT_STATE_DIR,
    LATEST_VERSION,
    MAX_MESSAGE_BYTES,
    SOCKET_ENV,
    CniError,
    ErrorCode,
    check_config,
    check_env,
    decode_config,
    decode_response,
    encode_request,
    json_dumps,
    parse_command,
    reply_version,
    sandbox_checkpoint_path,
    supported_or_latest,
    version_reply,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TIMEOUT = 120.0
TIMEOUT_ENV = "DPUNET_CNI_TIMEOUT"


def exchange(path: str, request: bytes, timeout: float) -> bytes:
    """Send `request` to the daemon at `path` and read its whole answer within `timeout`
    seconds; OSError (TimeoutError included) or ValueError (too large) on failure."""
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request)
        sock.shutdown(_socket.SHUT_WR)
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {timeout:g} s")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_MESSAGE_BYTES:
                raise ValueError("answer larger than the limit")
            chunks.append(chunk)
    finally:
        sock.close()


def request_timeout(env: Mapping[str, str]) -> float:
    """Seconds from DPUNET_CNI_TIMEOUT (default 120); CniError code 4 when invalid."""
    text = env.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise CniError(ErrorCode.INVALID_ENV, f"{TIMEOUT_ENV} {text!r} is not a positive number")
    return value


def daemon_socket(config: Mapping[str, object], env: Mapping[str, str]) -> str:
    """The daemon's socket: config `socket` when it is an absolute path (the daemon
    refuses any other value), else env DPUNET_CNI_SOCKET, else the default."""
    value = config.get("socket")
    if isinstance(value, str) and value.startswith("/"):
        return value
    return env.get(SOCKET_ENV) or DEFAULT_SOCKET


def daemon_unreachable(
    command: str, env: Mapping[str, str], config: Mapping[str, object], path: str, reason: str
) -> CniError | None:
    """The outcome when the daemon at `path` gave no answer: None means success (only a
    DEL with no checkpoint), otherwise the error to report."""
    try:
        check_config(command, config)
    except CniError as exc:
        return exc
    if command == "DEL":
        container_id = env["CNI_CONTAINERID"]
        state_dir = config.get("stateDir")  # checked: absolute or absent
        checkpoint = sandbox_checkpoint_path(
            state_dir if isinstance(state_dir, str) else DEFAULT_STATE_DIR, container_id
        )
        try:
            posix.stat(checkpoint)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return CniError(
                ErrorCode.TRY_AGAIN_LATER,
                f"dpunet daemon not reachable at {path} and cannot tell whether sandbox "
                f"{container_id} needs cleanup; try again later",
                f"{reason}; checking {checkpoint}: {exc}",
            )
        return CniError(
            ErrorCode.TRY_AGAIN_LATER,
            f"dpunet daemon not reachable at {path} and sandbox {container_id} "
            "still holds resources; try again later",
            f"{reason}; checkpoint {checkpoint} exists",
        )
    if command == "STATUS":
        return CniError(ErrorCode.NOT_AVAILABLE, f"dpunet daemon not reachable at {path}", reason)
    return CniError(
        ErrorCode.TRY_AGAIN_LATER, f"dpunet daemon not reachable at {path}; try again later", reason
    )


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, object] | None]:
    """One plugin execution: (exit status, JSON object to print or None)."""
    try:
        command = parse_command(env)
        if command == "VERSION":
            return 0, version_reply(stdin)
        check_env(command, env)
        config, raw_config = decode_config(stdin)
        timeout = request_timeout(env)
    except CniError as exc:
        return 1, exc.to_json(reply_version(stdin))
    version = supported_or_latest(config.get("cniVersion"))
    path = daemon_socket(config, env)
    try:
        return 0, decode_response(exchange(path, encode_request(env, raw_config), timeout))
    except CniError as exc:
        return 1, exc.to_json(version)
    except (OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = daemon_unreachable(command, env, config, path, reason)
    if error is None:
        return 0, None
    return 1, error.to_json(version)


def process_environ() -> dict[str, str]:
    """The environment decoded as `os.environ` decodes it."""
    encoding, errors = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    return {
        key.decode(encoding, errors): value.decode(encoding, errors)
        for key, value in posix.environ.items()
    }


def main() -> None:
    """Entry point of the `dpunet-cni` executable."""
    output: dict[str, object] | None
    try:
        stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    except OSError as exc:
        error = CniError(ErrorCode.IO_FAILURE, "cannot read stdin", str(exc))
        status, output = 1, error.to_json(LATEST_VERSION)
    else:
        status, output = run(process_environ(), stdin)
    if output is not None:
        sys.stdout.write(json_dumps(output) + "\n")
        sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
