#!/usr/bin/python3 -IS
"""dpunet-cni: the CNI plugin the container runtime executes, and the wire rules it shares
with the node daemon's CNI server.

This file is self-contained on purpose: standard library only and no import of any other
dpunet module, so it starts close to a bare interpreter and can be installed as a single
file (``install -m 0755 shim.py /opt/cni/bin/dpunet-cni``; its shebang runs ``python3 -IS``).
The server side (``dpunet.cni.server``) imports the shared rules from here.

What the shim does (CNI spec 1.1, https://github.com/containernetworking/cni/blob/main/SPEC.md):

* reads ``CNI_*`` from the environment and the network config from stdin and validates
  what needs no daemon: env (code 4), JSON (6), ``cniVersion``/``name``/``type`` and the
  dpunet fields ``socket``/``stateDir`` (7), supported version (1) and the per-verb minimum
  version (CHECK needs >= 0.4.0, STATUS and GC >= 1.1.0; code 1);
* answers VERSION itself;
* forwards everything else to the daemon over a unix socket (config field ``socket``, else
  env ``DPUNET_CNI_SOCKET``, else ``/run/dpunet/cni.sock``) and relays its answer: a result
  on stdout with exit 0, or a CNI error object ``{cniVersion, code, msg, details}`` on
  stdout with exit 1. The whole exchange is bounded by ``DPUNET_CNI_TIMEOUT`` seconds
  (default 120).

Wire protocol (one request per connection): the shim sends one UTF-8 JSON object
``{"protocol": 1, "env": {CNI_* variables}, "config": "<stdin text>"}`` and shuts down
its write side; the daemon answers one JSON object ``{"protocol": 1, "result": <object or
null>}`` or ``{"protocol": 1, "error": <CNI error object>}`` and closes the connection.

When the daemon gives no valid answer (no socket, connection refused, timeout, connection
dropped, malformed reply): ADD, CHECK and GC fail with code 11 (try again later), STATUS
with code 50 (plugin not available). DEL succeeds only when there is provably nothing to
undo, by this checkpoint contract: a node daemon (dpunet-host, dpunet-node) creates
``<stateDir>/sandboxes/<CNI_CONTAINERID>.json`` (``stateDir`` from the network config,
default ``/var/lib/dpunet``) before an ADD changes anything, and removes it only after a
DEL has undone everything for that container. No such file: DEL succeeds; otherwise (or
when its presence cannot be determined) code 11.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import time
from enum import IntEnum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
MIN_VERSION_FOR_VERB = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}
CNI_ENV_VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
VALID_ATTACHMENTS_KEY = "cni.dev/valid-attachments"

DEFAULT_SOCKET = "/run/dpunet/cni.sock"
DEFAULT_STATE_DIR = "/var/lib/dpunet"
DEFAULT_TIMEOUT = 120.0
SOCKET_ENV = "DPUNET_CNI_SOCKET"
TIMEOUT_ENV = "DPUNET_CNI_TIMEOUT"
PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
_VERSION_RE = re.compile(r"\d+(\.\d+){0,2}")
_MAX_IFNAME = 15


class ErrorCode(IntEnum):
    """The spec's well-known error codes."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51


class CniError(Exception):
    """A failure reported to the runtime as a CNI error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, object]:
        """The error object for `cni_version`; `details` only when there are any."""
        out: dict[str, object] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_json(cls, obj: object) -> CniError:
        """Parse an error object; ValueError when it is not one."""
        if not isinstance(obj, dict):
            raise ValueError("error is not an object")
        code, msg, details = obj.get("code"), obj.get("msg"), obj.get("details", "")
        if isinstance(code, bool) or not isinstance(code, int) or code <= 0:
            raise ValueError("error code is not a positive integer")
        if not isinstance(msg, str) or not isinstance(details, str):
            raise ValueError("error msg/details are not strings")
        return cls(code, msg, details)


def parse_version(text: str) -> tuple[int, int, int]:
    """`"1.0.0"` -> (1, 0, 0); one to three numeric parts; ValueError otherwise."""
    if not _VERSION_RE.fullmatch(text):
        raise ValueError(f"invalid version {text!r}")
    major, minor, micro = (*(int(part) for part in text.split(".")), 0, 0)[:3]
    return major, minor, micro


def version_at_least(version: str, minimum: str) -> bool:
    """True when `version` >= `minimum` (both as understood by `parse_version`)."""
    return parse_version(version) >= parse_version(minimum)


def parse_cni_args(text: str) -> dict[str, str]:
    """`"K=V;K2=V2"` -> {"K": "V", "K2": "V2"}; empty text -> {}; ValueError on a pair
    that is not exactly one non-empty key, one `=` and a value (later keys win)."""
    if text == "":
        return {}
    args: dict[str, str] = {}
    for pair in text.split(";"):
        key, sep, value = pair.partition("=")
        if not sep or not key or "=" in value:
            raise ValueError(f"invalid pair {pair!r} (want KEY=VALUE)")
        args[key] = value
    return args


def format_cni_args(args: Mapping[str, str]) -> str:
    """The inverse of `parse_cni_args`; ValueError for keys or values it could not carry."""
    for key, value in args.items():
        if not key or any(c in key for c in ";=") or any(c in value for c in ";="):
            raise ValueError(f"cannot encode {key!r}={value!r} in CNI_ARGS")
    return ";".join(f"{key}={value}" for key, value in args.items())


def is_valid_name(text: str) -> bool:
    """A valid container ID or network name (alphanumeric first, then `[A-Za-z0-9_.-]`)."""
    return _NAME_RE.fullmatch(text) is not None


def ifname_problem(name: str) -> str | None:
    """Why `name` cannot be a Linux interface name, or None when it can."""
    if not name:
        return "is empty"
    if len(name.encode()) > _MAX_IFNAME:
        return f"is longer than {_MAX_IFNAME} bytes"
    if name in (".", ".."):
        return "is . or .."
    if any(c in "/:" or c.isspace() for c in name):
        return "contains '/', ':' or whitespace"
    return None


def sandbox_checkpoint_path(state_dir: str, container_id: str) -> str:
    """Where the node daemon keeps the checkpoint of sandbox `container_id`."""
    return os.path.join(state_dir, "sandboxes", f"{container_id}.json")


class Invocation:
    """One validated plugin invocation: the CNI_* environment plus the parsed config."""

    __slots__ = (
        "args",
        "cni_version",
        "command",
        "config",
        "container_id",
        "ifname",
        "netns",
        "path",
        "raw_config",
    )

    def __init__(
        self,
        command: str,
        cni_version: str,
        config: dict[str, object],
        raw_config: str,
        env: Mapping[str, str],
        args: dict[str, str],
    ) -> None:
        self.command = command
        self.cni_version = cni_version
        self.config = config
        self.raw_config = raw_config
        self.container_id = env.get("CNI_CONTAINERID", "")
        self.netns = env.get("CNI_NETNS", "")
        self.ifname = env.get("CNI_IFNAME", "")
        self.args = args
        self.path = [p for p in env.get("CNI_PATH", "").split(":") if p]

    @property
    def state_dir(self) -> str:
        """The config's `stateDir` (validated to be an absolute path) or the default."""
        value = self.config.get("stateDir")
        return value if isinstance(value, str) else DEFAULT_STATE_DIR

    def socket_path(self, env: Mapping[str, str]) -> str:
        """The daemon socket: config `socket`, else env DPUNET_CNI_SOCKET, else default."""
        value = self.config.get("socket")
        if isinstance(value, str):
            return value
        return env.get(SOCKET_ENV) or DEFAULT_SOCKET


def reply_version(stdin: bytes) -> str:
    """The `cniVersion` for a reply: the config's when supported, else the latest."""
    try:
        version = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        return LATEST_VERSION
    return version if version in SUPPORTED_VERSIONS else LATEST_VERSION


def version_reply(stdin: bytes) -> dict[str, object]:
    """The VERSION answer: the input's `cniVersion` echoed (latest when absent or invalid)."""
    version = LATEST_VERSION
    try:
        given = json.loads(stdin).get("cniVersion")
    except (ValueError, AttributeError):
        given = None
    if isinstance(given, str) and _VERSION_RE.fullmatch(given):
        version = given
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def parse_invocation(env: Mapping[str, str], stdin: bytes) -> Invocation:
    """Validate env and config as far as possible without the daemon; CniError otherwise."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(ErrorCode.INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in VERBS:
        raise CniError(ErrorCode.INVALID_ENV, f"unknown CNI_COMMAND {command!r}")
    if command == "VERSION":
        return Invocation(command, LATEST_VERSION, {}, "", env, {})
    args = _check_env(command, env)
    config, raw = _decode_config(stdin)
    version = _check_version(command, config)
    _check_config_fields(config)
    return Invocation(command, version, config, raw, env, args)


def _check_env(command: str, env: Mapping[str, str]) -> dict[str, str]:
    required = REQUIRED_ENV.get(command, ())
    missing = [name for name in required if not env.get(name)]
    if missing:
        names = ",".join(missing)
        raise CniError(ErrorCode.INVALID_ENV, f"required env variables [{names}] missing")
    if "CNI_CONTAINERID" in required and not is_valid_name(env["CNI_CONTAINERID"]):
        raise CniError(
            ErrorCode.INVALID_ENV,
            "invalid characters in CNI_CONTAINERID",
            f"{env['CNI_CONTAINERID']!r}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        )
    if "CNI_IFNAME" in required:
        problem = ifname_problem(env["CNI_IFNAME"])
        if problem:
            raise CniError(ErrorCode.INVALID_ENV, f"CNI_IFNAME {env['CNI_IFNAME']!r} {problem}")
    if command in ("ADD", "CHECK") and not env["CNI_NETNS"].startswith("/"):
        raise CniError(
            ErrorCode.INVALID_ENV, f"CNI_NETNS {env['CNI_NETNS']!r} is not an absolute path"
        )
    try:
        return parse_cni_args(env.get("CNI_ARGS", ""))
    except ValueError as exc:
        raise CniError(ErrorCode.INVALID_ENV, f"invalid CNI_ARGS: {exc}") from None


def _decode_config(stdin: bytes) -> tuple[dict[str, object], str]:
    try:
        raw = stdin.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not UTF-8", str(exc)) from None
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not JSON", str(exc)) from None
    if not isinstance(config, dict):
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not a JSON object")
    return config, raw


def _check_version(command: str, config: dict[str, object]) -> str:
    version = config.get("cniVersion")
    if version is None or version == "":
        raise CniError(ErrorCode.INVALID_CONFIG, "network config has no cniVersion")
    if not isinstance(version, str):
        raise CniError(ErrorCode.INVALID_CONFIG, "network config cniVersion is not a string")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"incompatible CNI version {version!r}",
            f"dpunet-cni supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    minimum = MIN_VERSION_FOR_VERB.get(command)
    if minimum and not version_at_least(version, minimum):
        raise CniError(
            ErrorCode.INCOMPATIBLE_VERSION,
            f"config version {version} does not allow {command}",
            f"{command} needs cniVersion >= {minimum}",
        )
    return version


def _check_config_fields(config: dict[str, object]) -> None:
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(ErrorCode.INVALID_CONFIG, "network config has no name")
    if not is_valid_name(name):
        raise CniError(ErrorCode.INVALID_CONFIG, f"invalid characters in network name {name!r}")
    kind = config.get("type")
    if not isinstance(kind, str) or not kind or any(c in kind for c in "/\\\0"):
        raise CniError(ErrorCode.INVALID_CONFIG, "network config has no valid type")
    for key in ("socket", "stateDir"):
        value = config.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith("/")):
            raise CniError(ErrorCode.INVALID_CONFIG, f"{key} must be an absolute path")


def encode_request(env: Mapping[str, str], raw_config: str) -> bytes:
    """The shim's request: the CNI_* variables and the config text."""
    cni_env = {name: env[name] for name in CNI_ENV_VARS if name in env}
    request = {"protocol": PROTOCOL_VERSION, "env": cni_env, "config": raw_config}
    return json.dumps(request).encode()


def decode_response(data: bytes) -> dict[str, object] | None:
    """The result of a daemon response (None: nothing to print); raises the CniError it
    carries; ValueError when the response is malformed."""
    response = json.loads(data)
    if not isinstance(response, dict) or response.get("protocol") != PROTOCOL_VERSION:
        raise ValueError("not a dpunet CNI response")
    if "error" in response:
        raise CniError.from_json(response["error"])
    result = response.get("result", ())
    if result is None or isinstance(result, dict):
        return result
    raise ValueError("response has neither a result object nor an error")


def exchange(path: str, request: bytes, timeout: float) -> bytes:
    """Send `request` to the daemon at `path` and read its whole answer within `timeout`
    seconds; OSError (TimeoutError included) or ValueError (too large) on failure."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
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


def request_timeout(env: Mapping[str, str]) -> float:
    """Seconds from DPUNET_CNI_TIMEOUT (default 120); CniError code 4 when invalid."""
    text = env.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise CniError(ErrorCode.INVALID_ENV, f"{TIMEOUT_ENV} {text!r} is not a positive number")
    return value


def daemon_unreachable(inv: Invocation, path: str, reason: str) -> CniError | None:
    """The outcome of `inv` when the daemon at `path` gave no answer: None means success
    (only a DEL with no checkpoint), otherwise the error to report."""
    if inv.command == "DEL":
        checkpoint = sandbox_checkpoint_path(inv.state_dir, inv.container_id)
        try:
            os.stat(checkpoint)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return CniError(
                ErrorCode.TRY_AGAIN_LATER,
                f"dpunet daemon not reachable at {path} and cannot tell whether sandbox "
                f"{inv.container_id} needs cleanup; try again later",
                f"{reason}; checking {checkpoint}: {exc}",
            )
        return CniError(
            ErrorCode.TRY_AGAIN_LATER,
            f"dpunet daemon not reachable at {path} and sandbox {inv.container_id} "
            "still holds resources; try again later",
            f"{reason}; checkpoint {checkpoint} exists",
        )
    if inv.command == "STATUS":
        return CniError(ErrorCode.NOT_AVAILABLE, f"dpunet daemon not reachable at {path}", reason)
    return CniError(
        ErrorCode.TRY_AGAIN_LATER, f"dpunet daemon not reachable at {path}; try again later", reason
    )


def run(env: Mapping[str, str], stdin: bytes) -> tuple[int, dict[str, object] | None]:
    """One plugin execution: (exit status, JSON object to print or None)."""
    try:
        inv = parse_invocation(env, stdin)
        if inv.command == "VERSION":
            return 0, version_reply(stdin)
        timeout = request_timeout(env)
    except CniError as exc:
        return 1, exc.to_json(reply_version(stdin))
    path = inv.socket_path(env)
    try:
        return 0, decode_response(exchange(path, encode_request(env, inv.raw_config), timeout))
    except CniError as exc:
        return 1, exc.to_json(inv.cni_version)
    except (OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = daemon_unreachable(inv, path, reason)
    if error is None:
        return 0, None
    return 1, error.to_json(inv.cni_version)


def main() -> None:
    """Entry point of the `dpunet-cni` executable."""
    output: dict[str, object] | None
    try:
        stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    except OSError as exc:
        error = CniError(ErrorCode.IO_FAILURE, "cannot read stdin", str(exc))
        status, output = 1, error.to_json(LATEST_VERSION)
    else:
        status, output = run(os.environ, stdin)
    if output is not None:
        sys.stdout.write(json.dumps(output) + "\n")
        sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
