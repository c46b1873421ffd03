"""The CNI rules dpunet-cni and the node daemons share: standard library only.

What the spec says of a plugin invocation (CNI spec 1.1,
https://github.com/containernetworking/cni/blob/main/SPEC.md) and what dpunet adds, in one
place for both ends of the unix socket: the versions and verbs, the validation of the
``CNI_*`` environment (`parse_command`, `check_env`), the config's decoding
(`decode_config`) and its CNI fields (`check_config`), composed by the daemon into
`parse_invocation`; every CNI error code dpunet reports (`ErrorCode`) and the error
object (`CniError`), the sandbox checkpoint path the shim's DEL fallback relies on, and the
socket protocol: one request per connection, the shim sends ``{"protocol": 1, "env":
{CNI_* variables}, "config": "<stdin text>"}`` and shuts down its write side; the daemon
answers ``{"protocol": 1, "result": <object or null>}`` or ``{"protocol": 1, "error": <CNI
error object>}`` and closes the connection (`encode_request`, `decode_response`).

Like the shim, it imports only cheap standard-library modules (not json, re, enum or
socket, whose imports alone cost more than the interpreter's start) and nothing from
dpunet: ``dpunet.cni.install`` copies it next to the shim. Hence its own JSON codec.
"""

from __future__ import annotations

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
SOCKET_ENV = "DPUNET_CNI_SOCKET"
PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Arrays and objects nested deeper than this are refused (a network config needs a few
# levels; the limit keeps every parse far from the interpreter's recursion limit).
MAX_JSON_DEPTH = 64

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MAX_IFNAME = 15


class ErrorCode:
    """Every CNI error code dpunet reports (docs/cni.md, "Error codes"): the spec's
    well-known codes, then dpunet's own from 100 (the spec reserves 0-99). Plain ints,
    not an enum: importing `enum` would cost the shim's start-up."""

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
    NO_DEVICE = 100  # no free device, or the one asked for is not this node's to hand out
    CONTROLLER_REFUSED = 101  # the controller refused the port
    PLUG_FAILED = 102  # moving or configuring the device in the pod failed
    CHECK_FAILED = 103  # CHECK found a difference
    RECORD_UNREADABLE = 104  # the sandbox's record cannot be read
    IFNAME_IN_USE = 105  # CNI_IFNAME is attached to another network of the sandbox


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


# --- JSON ---------------------------------------------------------------------------
# The stdlib json module imports re and enum, which cost more start-up time than the
# interpreter itself; this small codec covers what the shim reads and writes. It accepts
# exactly RFC 8259 JSON (no NaN/Infinity) nested at most MAX_JSON_DEPTH deep and writes
# what json.dumps writes by default.

_WHITESPACE = " \t\n\r"
_DIGITS = "0123456789"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_UNESCAPE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_LITERALS = (("true", True), ("false", False), ("null", None))


class _JsonParser:
    """Recursive-descent parser over one JSON text."""

    __slots__ = ("depth", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def error(self, problem: str) -> ValueError:
        return ValueError(f"{problem} at offset {self.pos}")

    def skip_whitespace(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self.pos = pos

    def value(self) -> object:
        self.skip_whitespace()
        char = self.text[self.pos : self.pos + 1]
        if char == "{" or char == "[":
            if self.depth == MAX_JSON_DEPTH:
                raise self.error(f"arrays and objects nested deeper than {MAX_JSON_DEPTH}")
            self.depth += 1
            nested = self.parse_object() if char == "{" else self.parse_array()
            self.depth -= 1
            return nested
        if char == '"':
            return self.parse_string()
        if char != "" and char in "-0123456789":
            return self.parse_number()
        for literal, value in _LITERALS:
            if self.text.startswith(literal, self.pos):
                self.pos += len(literal)
                return value
        raise self.error("expected a value" if char else "unexpected end of input")

    def expect(self, char: str) -> None:
        self.skip_whitespace()
        if not self.text.startswith(char, self.pos):
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def members(self, close: str) -> bool:
        """After an opening bracket or a member: True when another member follows."""
        self.skip_whitespace()
        if self.text.startswith(close, self.pos):
            self.pos += 1
            return False
        return True

    def separator(self, close: str) -> bool:
        """After a member: consume `,` (True) or the closing bracket (False)."""
        self.skip_whitespace()
        char = self.text[self.pos : self.pos + 1]
        if char == "," or char == close:
            self.pos += 1
            return char == ","
        raise self.error(f"expected ',' or {close!r}")

    def parse_object(self) -> dict[str, object]:
        self.pos += 1
        result: dict[str, object] = {}
        more = self.members("}")
        while more:
            self.skip_whitespace()
            if not self.text.startswith('"', self.pos):
                raise self.error("expected a string key")
            key = self.parse_string()
            self.expect(":")
            result[key] = self.value()
            more = self.separator("}")
        return result

    def parse_array(self) -> list[object]:
        self.pos += 1
        result: list[object] = []
        more = self.members("]")
        while more:
            result.append(self.value())
            more = self.separator("]")
        return result

    def parse_string(self) -> str:
        text = self.text
        pos = self.pos + 1
        parts: list[str] = []
        while True:
            quote = text.find('"', pos)
            if quote < 0:
                self.pos = pos
                raise self.error("unterminated string")
            backslash = text.find("\\", pos, quote)
            stop = quote if backslash < 0 else backslash
            chunk = text[pos:stop]
            if chunk and min(chunk) < " ":
                self.pos = pos
                raise self.error("control character in string")
            parts.append(chunk)
            if backslash < 0:
                self.pos = quote + 1
                return "".join(parts)
            self.pos = backslash
            escape = text[backslash + 1 : backslash + 2]
            if escape == "u":
                code = self.hex4(backslash + 2)
                pos = backslash + 6
                if 0xD800 <= code < 0xDC00 and text.startswith("\\u", pos):
                    low = self.hex4(pos + 2)
                    if 0xDC00 <= low < 0xE000:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        pos += 6
                parts.append(chr(code))
            elif escape in _UNESCAPE:
                parts.append(_UNESCAPE[escape])
                pos = backslash + 2
            else:
                raise self.error("invalid escape")

    def hex4(self, start: int) -> int:
        digits = self.text[start : start + 4]
        if len(digits) != 4 or not all(c in _HEX_DIGITS for c in digits):
            raise self.error("invalid \\u escape")
        return int(digits, 16)

    def digits(self, pos: int) -> int:
        """The position after the run of digits at `pos`; ValueError when there is none."""
        text, start = self.text, pos
        while pos < len(text) and text[pos] in _DIGITS:
            pos += 1
        if pos == start:
            self.pos = pos
            raise self.error("expected a digit")
        return pos

    def parse_number(self) -> int | float:
        text, start = self.text, self.pos
        pos = start + 1 if text.startswith("-", start) else start
        pos = pos + 1 if text.startswith("0", pos) else self.digits(pos)
        fraction = text.startswith(".", pos)
        if fraction:
            pos = self.digits(pos + 1)
        exponent = text[pos : pos + 1] in ("e", "E")
        if exponent:
            pos = self.digits(pos + 2 if text[pos + 1 : pos + 2] in ("+", "-") else pos + 1)
        self.pos = pos
        literal = text[start:pos]
        return float(literal) if fraction or exponent else int(literal)


def json_loads(text: str) -> object:
    """Decode one JSON text; ValueError when it is not valid JSON."""
    parser = _JsonParser(text)
    value = parser.value()
    parser.skip_whitespace()
    if parser.pos != len(text):
        raise parser.error("extra data")
    return value


def json_dumps(value: object) -> str:
    """Encode `value` (dict, list, tuple, str, int, float, bool, None) as json.dumps does."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: object, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, str):
        out.append(_quote(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if not -float("inf") < value < float("inf"):
            raise ValueError(f"{value} is not valid JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {key!r}")
            out.append(", " if index else "")
            out.append(_quote(key))
            out.append(": ")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            out.append(", " if index else "")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _quote(text: str) -> str:
    """`text` as an ASCII-only JSON string."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = []
    for char in text:
        if char in _ESCAPE:
            out.append(_ESCAPE[char])
        elif " " <= char <= "~":
            out.append(char)
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            code = ord(char) - 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
    return '"' + "".join(out) + '"'


def parse_version(text: str) -> tuple[int, int, int]:
    """`"1.0.0"` -> (1, 0, 0); one to three numeric parts; ValueError otherwise."""
    parts = text.split(".")
    if len(parts) > 3 or not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"invalid version {text!r}")
    major, minor, micro = (*(int(part) for part in parts), 0, 0)[:3]
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
    return text[:1] != "" and text[0] in _ALNUM and all(c in _ALNUM or c in "_.-" for c in text)


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
    separator = "" if state_dir.endswith("/") else "/"
    return f"{state_dir}{separator}sandboxes/{container_id}.json"


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


def _input_version(stdin: bytes) -> object:
    """The `cniVersion` value of the config on stdin, None when there is none."""
    try:
        config = json_loads(stdin.decode("utf-8"))
    except ValueError:
        return None
    return config.get("cniVersion") if isinstance(config, dict) else None


def reply_version(stdin: bytes) -> str:
    """The `cniVersion` for a reply to the config on stdin (`supported_or_latest`)."""
    return supported_or_latest(_input_version(stdin))


def supported_or_latest(version: object) -> str:
    """`version` when dpunet speaks it, else the latest: the cniVersion of a reply."""
    return version if isinstance(version, str) and version in SUPPORTED_VERSIONS else LATEST_VERSION


def version_reply(stdin: bytes) -> dict[str, object]:
    """The VERSION answer: the input's `cniVersion` echoed (latest when absent or invalid)."""
    version = _input_version(stdin)
    try:
        echoed = version if isinstance(version, str) and parse_version(version) else None
    except ValueError:
        echoed = None
    return {"cniVersion": echoed or LATEST_VERSION, "supportedVersions": list(SUPPORTED_VERSIONS)}


def parse_invocation(env: Mapping[str, str], stdin: bytes) -> Invocation:
    """Every CNI rule, in the order the errors are reported: env, then the config's
    decoding, version and fields; CniError when one is broken."""
    command = parse_command(env)
    if command == "VERSION":
        return Invocation(command, LATEST_VERSION, {}, "", env, {})
    args = check_env(command, env)
    config, raw = decode_config(stdin)
    version = check_config(command, config)
    return Invocation(command, version, config, raw, env, args)


def parse_command(env: Mapping[str, str]) -> str:
    """CNI_COMMAND, one of `VERBS`; CniError code 4 otherwise."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(ErrorCode.INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in VERBS:
        raise CniError(ErrorCode.INVALID_ENV, f"unknown CNI_COMMAND {command!r}")
    return command


def check_env(command: str, env: Mapping[str, str]) -> dict[str, str]:
    """Check the CNI_* variables `command` needs; the parsed CNI_ARGS; CniError code 4."""
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


def decode_config(stdin: bytes) -> tuple[dict[str, object], str]:
    """The config object and its text; CniError code 6 when it is not a JSON object."""
    try:
        raw = stdin.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not UTF-8", str(exc)) from None
    try:
        config = json_loads(raw)
    except ValueError as exc:
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not JSON", str(exc)) from None
    if not isinstance(config, dict):
        raise CniError(ErrorCode.DECODE_FAILURE, "network config is not a JSON object")
    return config, raw


def check_config(command: str, config: Mapping[str, object]) -> str:
    """Check the config's CNI fields (version first: code 1, then code 7 for cniVersion,
    name, type and the `socket` and `stateDir` paths); its cniVersion."""
    version = _check_version(command, config)
    _check_config_fields(config)
    return version


def _check_version(command: str, config: Mapping[str, object]) -> str:
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


def _check_config_fields(config: Mapping[str, object]) -> None:
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
    return json_dumps(request).encode()


def decode_response(data: bytes) -> dict[str, object] | None:
    """The result of a daemon response (None: nothing to print); raises the CniError it
    carries; ValueError when the response is malformed."""
    response = json_loads(data.decode("utf-8"))
    if not isinstance(response, dict) or response.get("protocol") != PROTOCOL_VERSION:
        raise ValueError("not a dpunet CNI response")
    if "error" in response:
        raise CniError.from_json(response["error"])
    result = response.get("result", ())
    if result is None or isinstance(result, dict):
        return result
    raise ValueError("response has neither a result object nor an error")
