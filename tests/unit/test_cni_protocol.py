"""The shim's pure rules: CNI_ARGS, versions, names, invocation parsing, wire messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpunet.cni import wire
from dpunet.cni.install import PACKAGE_NAME, install_shim
from dpunet.cni.shim import daemon_socket
from dpunet.cni.wire import (
    CniError,
    ErrorCode,
    decode_response,
    format_cni_args,
    ifname_problem,
    is_valid_name,
    parse_cni_args,
    parse_invocation,
    parse_version,
    version_at_least,
)

# --- CNI_ARGS ------------------------------------------------------------------------

arg_text = st.text(st.characters(exclude_characters=";="))
arg_dicts = st.dictionaries(arg_text.filter(bool), arg_text, max_size=8)


def test_cni_args_examples() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("FOO=BAR;ABC=123") == {"FOO": "BAR", "ABC": "123"}
    assert parse_cni_args("K8S_POD_NAME=web-0;K8S_POD_UID=") == {
        "K8S_POD_NAME": "web-0",
        "K8S_POD_UID": "",
    }
    assert parse_cni_args("A=1;A=2") == {"A": "2"}


@pytest.mark.parametrize("text", ["FOO", "A=1;", ";A=1", "=value", "A=B=C", "A=1;;B=2"])
def test_cni_args_rejects_malformed_pairs(text: str) -> None:
    with pytest.raises(ValueError, match="invalid pair"):
        parse_cni_args(text)


@given(arg_dicts)
def test_cni_args_round_trip_from_dict(args: dict[str, str]) -> None:
    assert parse_cni_args(format_cni_args(args)) == args


@given(arg_dicts)
def test_cni_args_round_trip_from_text(args: dict[str, str]) -> None:
    text = format_cni_args(args)
    assert format_cni_args(parse_cni_args(text)) == text


@pytest.mark.parametrize("args", [{"": "x"}, {"A;B": "x"}, {"A": "x=y"}, {"A": "x;y"}])
def test_cni_args_refuses_to_encode_what_it_cannot_carry(args: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        format_cni_args(args)


# --- versions ------------------------------------------------------------------------


def test_version_examples() -> None:
    assert parse_version("1.1.0") == (1, 1, 0)
    assert parse_version("0.4") == (0, 4, 0)
    assert parse_version("1") == (1, 0, 0)
    assert version_at_least("0.4.0", "0.4.0")
    assert version_at_least("1.0.0", "0.4.0")
    assert not version_at_least("0.3.1", "0.4.0")
    assert version_at_least("0.10.0", "0.4.0")  # numeric, not lexical
    assert not version_at_least("1.0.0", "1.1.0")


@pytest.mark.parametrize("text", ["", "v1.0.0", "1.0.0.0", "1..0", "1.0.0-rc1", " 1.0.0", "x"])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(ValueError):
        parse_version(text)


versions = st.tuples(*[st.integers(0, 10_000)] * 3)


@given(versions, versions)
def test_version_order_is_numeric_tuple_order(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    text_a, text_b = (".".join(map(str, v)) for v in (a, b))
    assert parse_version(text_a) == a
    assert version_at_least(text_a, text_b) == (a >= b)


def test_supported_versions_are_ordered() -> None:
    ordered = sorted(wire.SUPPORTED_VERSIONS, key=parse_version)
    assert list(wire.SUPPORTED_VERSIONS) == ordered
    assert ordered[-1] == wire.LATEST_VERSION == "1.1.0"


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "3f1c2a9b", "ovn-kubernetes", "k8s_pod.net-1"])
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize("name", ["", "-a", ".a", "a b", "a/b", "../x", "a:b", "ä"])
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


@pytest.mark.parametrize("name", ["eth0", "net1", "a" * 15, "ovn-k8s-mp0"])
def test_valid_ifnames(name: str) -> None:
    assert ifname_problem(name) is None


@pytest.mark.parametrize("name", ["", ".", "..", "a" * 16, "eth/0", "eth:0", "eth 0", "eth\t0"])
def test_invalid_ifnames(name: str) -> None:
    assert ifname_problem(name)


# --- invocation parsing --------------------------------------------------------------

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
}
CONFIG = {"cniVersion": "1.0.0", "name": "net", "type": "dpunet-cni"}


def parse(env: dict[str, str], config: object) -> wire.Invocation:
    return parse_invocation(env, json.dumps(config).encode())


def error_of(env: dict[str, str], config: object) -> CniError:
    with pytest.raises(CniError) as info:
        parse(env, config)
    return info.value


def test_invocation_fields() -> None:
    env = {**ADD_ENV, "CNI_ARGS": "A=1", "CNI_PATH": "/opt/cni/bin::/usr/lib/cni"}
    inv = parse(env, CONFIG)
    assert (inv.command, inv.cni_version, inv.container_id) == ("ADD", "1.0.0", "abc")
    assert (inv.netns, inv.ifname, inv.args) == ("/run/netns/x", "eth0", {"A": "1"})
    assert inv.path == ["/opt/cni/bin", "/usr/lib/cni"]


def test_daemon_socket() -> None:
    env = {wire.SOCKET_ENV: "/tmp/x.sock"}
    assert daemon_socket(CONFIG, {}) == wire.DEFAULT_SOCKET
    assert daemon_socket(CONFIG, env) == "/tmp/x.sock"
    assert daemon_socket({**CONFIG, "socket": "/a.sock"}, env) == "/a.sock"
    # a socket the daemon refuses is not where the shim looks for it
    assert daemon_socket({**CONFIG, "socket": "a.sock"}, env) == "/tmp/x.sock"


def test_del_needs_no_netns_and_status_gc_no_attachment() -> None:
    env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "abc", "CNI_IFNAME": "eth0"}
    assert parse(env, CONFIG).netns == ""
    v11 = {**CONFIG, "cniVersion": "1.1.0"}
    assert parse({"CNI_COMMAND": "STATUS"}, v11).command == "STATUS"
    assert parse({"CNI_COMMAND": "GC"}, v11).command == "GC"


def test_env_is_checked_before_stdin() -> None:
    env = {k: v for k, v in ADD_ENV.items() if k != "CNI_NETNS"}
    with pytest.raises(CniError) as info:
        parse_invocation(env, b"garbage")
    assert info.value.code == ErrorCode.INVALID_ENV


def test_check_minimum_version_applies_to_supported_versions_only() -> None:
    env = {**ADD_ENV, "CNI_COMMAND": "CHECK"}
    assert error_of(env, {**CONFIG, "cniVersion": "0.3.1"}).msg == (
        "config version 0.3.1 does not allow CHECK"
    )
    assert "incompatible" in error_of(env, {**CONFIG, "cniVersion": "0.2.0"}).msg


def test_version_reply() -> None:
    assert wire.version_reply(b'{"cniVersion": "0.3.1"}')["cniVersion"] == "0.3.1"
    assert wire.version_reply(b"[]")["cniVersion"] == "1.1.0"
    assert wire.reply_version(b'{"cniVersion": "0.2.0"}') == "1.1.0"
    assert wire.reply_version(b'{"cniVersion": "0.4.0"}') == "0.4.0"


def test_cni_error_json() -> None:
    error = CniError(ErrorCode.TRY_AGAIN_LATER, "busy")
    assert error.to_json("0.4.0") == {
        "cniVersion": "0.4.0",
        "code": ErrorCode.TRY_AGAIN_LATER,
        "msg": "busy",
    }
    parsed = CniError.from_json({"code": 7, "msg": "bad", "details": "why"})
    assert (parsed.code, parsed.msg, parsed.details) == (7, "bad", "why")
    bad_errors: list[object] = [
        [],
        {"code": "7", "msg": "x"},
        {"code": True, "msg": "x"},
        {"code": 7},
    ]
    for bad in bad_errors:
        with pytest.raises(ValueError):
            CniError.from_json(bad)


# --- wire messages -------------------------------------------------------------------


def test_request_carries_only_cni_variables() -> None:
    env = {**ADD_ENV, "HOME": "/root", "DPUNET_CNI_SOCKET": "/x", "CNI_PATH": "/opt/cni/bin"}
    request = json.loads(wire.encode_request(env, '{"a": 1}'))
    assert request == {
        "protocol": wire.PROTOCOL_VERSION,
        "env": {**ADD_ENV, "CNI_PATH": "/opt/cni/bin"},
        "config": '{"a": 1}',
    }


def test_decode_response() -> None:
    assert decode_response(b'{"protocol": 1, "result": null}') is None
    assert decode_response(b'{"protocol": 1, "result": {"cniVersion": "1.0.0"}}') == {
        "cniVersion": "1.0.0"
    }
    with pytest.raises(CniError) as info:
        decode_response(b'{"protocol": 1, "error": {"code": 3, "msg": "gone"}}')
    assert info.value.code == 3
    for bad in (b"", b"{}", b'{"protocol": 2, "result": null}', b'{"protocol": 1, "result": 5}'):
        with pytest.raises(ValueError):
            decode_response(bad)


def test_checkpoint_path() -> None:
    assert wire.sandbox_checkpoint_path("/var/lib/dpunet", "abc") == (
        "/var/lib/dpunet/sandboxes/abc.json"
    )


def test_shim_start_up_imports_only_cheap_modules(tmp_path: Path) -> None:
    # The shim must start close to a bare interpreter: no third-party or dpunet module,
    # and none of the expensive stdlib ones (json, re, enum, socket, typing, ...).
    install_shim(tmp_path / "bin", tmp_path / "lib")
    probe = (
        "import sys; before = set(sys.modules); "
        f"sys.path.insert(0, {str(tmp_path / 'lib')!r}); import {PACKAGE_NAME}.shim; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-IS", "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(out) <= {
        PACKAGE_NAME,
        f"{PACKAGE_NAME}.shim",
        f"{PACKAGE_NAME}.wire",
        "__future__",
        "_socket",
        "os",
        "os.path",
        "posixpath",
        "genericpath",
        "stat",
        "_stat",
        "_collections_abc",
        "time",
    }, out
