"""CNI conformance of `dpunet-cni`: the shim executed as a runtime executes it (env +
stdin, stdout + exit status), against a real CniServer with a recording handler."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cni_harness import (
    CONTAINER_ID,
    NETNS,
    SHIM_ISOLATED,
    SHIM_MODULE,
    VF_PCI,
    BackgroundLoop,
    Daemon,
    RecordingHandler,
    any_netns,
    attachment_env,
    netconf,
    run_shim,
    sample_result,
)

from dpunet.cni.models import AddRequest, CheckRequest, DelRequest, GcRequest, StatusRequest
from dpunet.cni.server import CniServer
from dpunet.cni.wire import SUPPORTED_VERSIONS, CniError, ErrorCode

LEGACY = ("0.3.0", "0.3.1", "0.4.0")


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short temporary directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cni", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def loop() -> Iterator[BackgroundLoop]:
    background = BackgroundLoop()
    yield background
    background.stop()


@pytest.fixture
def daemon(loop: BackgroundLoop, workdir: Path) -> Iterator[Daemon]:
    handler = RecordingHandler()
    state_dir = workdir / "state"
    socket_path = workdir / "run" / "dpunet" / "cni.sock"
    server = CniServer(handler, socket_path, state_dir=state_dir, netns_check=any_netns)
    loop.run(server.start())
    yield Daemon(server, handler, state_dir)
    loop.run(server.close())


def conf(daemon: Daemon, version: str = "1.0.0", **extra: object) -> dict[str, object]:
    return netconf(version, daemon.state_dir, **extra)


def write_checkpoint(state_dir: Path) -> Path:
    """What a node daemon leaves while the test sandbox holds resources."""
    path = state_dir / "sandboxes" / f"{CONTAINER_ID}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"phase": "attached"}')
    return path


def prev_result(version: str) -> dict[str, object]:
    return sample_result(NETNS).render(version)


# --- VERSION -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [SHIM_MODULE, SHIM_ISOLATED, [str(Path(sys.executable).with_name("dpunet-cni"))]],
    ids=["module", "single-file", "console-script"],
)
def test_version_is_answered_without_a_daemon(command: list[str], workdir: Path) -> None:
    run = run_shim(
        attachment_env("VERSION"),
        {"cniVersion": "0.4.0"},
        socket=workdir / "absent.sock",
        command=command,
    )
    assert run.returncode == 0, run
    assert run.output == {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)}


@pytest.mark.parametrize("stdin", ["", "garbage", '{"cniVersion": 3}'])
def test_version_without_a_usable_input_version_reports_the_latest(stdin: str) -> None:
    run = run_shim({"CNI_COMMAND": "VERSION"}, stdin)
    assert run.returncode == 0, run
    assert run.output["cniVersion"] == "1.1.0"
    assert run.output["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


# --- ADD and result shapes -----------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_relays_the_result_in_the_requested_version(daemon: Daemon, version: str) -> None:
    run = run_shim(attachment_env("ADD"), conf(daemon, version), socket=daemon.socket)
    assert run.returncode == 0, run
    out = run.output
    assert out["cniVersion"] == version
    assert [ip["address"] for ip in out["ips"]] == ["198.18.0.5/24", "2001:db8::5/64"]
    assert all(ip["interface"] == 0 for ip in out["ips"])
    assert out["ips"][0]["gateway"] == "198.18.0.1"
    assert out["dns"] == {"nameservers": ["198.18.0.10"], "search": ["svc.cluster.local"]}
    iface = out["interfaces"][0]
    assert (iface["name"], iface["mac"], iface["sandbox"]) == ("eth0", "0a:58:c6:12:00:05", NETNS)
    if version in LEGACY:
        assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    else:
        assert all("version" not in ip for ip in out["ips"])
    if version == "1.1.0":
        assert iface["mtu"] == 1400 and iface["pciID"] == VF_PCI
        assert out["routes"][0] == {"dst": "0.0.0.0/0", "gw": "198.18.0.1", "mtu": 1400}
        assert out["routes"][1]["priority"] == 10
    else:
        assert set(iface) == {"name", "mac", "sandbox"}
        assert out["routes"] == [
            {"dst": "0.0.0.0/0", "gw": "198.18.0.1"},
            {"dst": "198.18.0.0/15", "gw": "198.18.0.1"},
        ]


def test_add_hands_the_handler_a_typed_request(daemon: Daemon) -> None:
    config = conf(daemon, runtimeConfig={"deviceID": VF_PCI.upper()}, extraKnob=True)
    run = run_shim(attachment_env("ADD"), config, socket=daemon.socket)
    assert run.returncode == 0, run
    [req] = daemon.handler.calls
    assert isinstance(req, AddRequest)
    assert (req.container_id, req.netns, req.ifname) == (CONTAINER_ID, NETNS, "eth0")
    assert (req.pod_namespace, req.pod_name) == ("default", "web-0")
    assert req.pod_uid == "6b0e4a52-1f0c-4f1e-9d7a-2c5f1e3b9a10"
    assert req.infra_container_id == CONTAINER_ID
    assert req.args["IgnoreUnknown"] == "1"
    assert req.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert req.cni_version == "1.0.0" and req.prev_result is None
    assert req.config.name == "ovn-kubernetes"
    assert req.config.vf_pci_address == VF_PCI
    assert req.config.model_extra == {"extraKnob": True}
    assert json.loads(req.raw_config) == config


def test_standalone_config_with_socket_field(daemon: Daemon) -> None:
    config = {
        "cniVersion": "1.1.0",
        "name": "dpunet",
        "type": "dpunet-cni",
        "resourceName": "mellanox.com/mlnx_sriov_switchdev",
        "socket": str(daemon.socket),
        "stateDir": str(daemon.state_dir),
    }
    run = run_shim(attachment_env("ADD"), config, socket=Path("/nonexistent/elsewhere.sock"))
    assert run.returncode == 0, run
    [req] = daemon.handler.calls
    assert req.config.resource_name == "mellanox.com/mlnx_sriov_switchdev"
    assert req.config.vf_pci_address is None


def test_chained_add_appends_to_prev_result(daemon: Daemon) -> None:
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "lo"}],
        "ips": [{"address": "127.0.0.1/8", "interface": 0}],
    }
    run = run_shim(attachment_env("ADD"), conf(daemon, prevResult=prev), socket=daemon.socket)
    assert run.returncode == 0, run
    out = run.output
    assert [iface["name"] for iface in out["interfaces"]] == ["lo", "eth0"]
    assert [(ip["address"], ip["interface"]) for ip in out["ips"]] == [
        ("127.0.0.1/8", 0),
        ("198.18.0.5/24", 1),
        ("2001:db8::5/64", 1),
    ]


# --- DEL, CHECK, STATUS, GC ----------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_del_succeeds_silently(daemon: Daemon, version: str) -> None:
    config = conf(daemon, version, prevResult=prev_result(version))
    run = run_shim(attachment_env("DEL", CNI_NETNS=None), config, socket=daemon.socket)
    assert (run.returncode, run.stdout) == (0, ""), run
    [req] = daemon.handler.calls
    assert isinstance(req, DelRequest)
    assert req.netns is None and req.container_id == CONTAINER_ID
    assert req.prev_result is not None
    assert req.prev_result.render(version) == prev_result(version)


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check_passes_prev_result(daemon: Daemon, version: str) -> None:
    config = conf(daemon, version, prevResult=prev_result(version))
    run = run_shim(attachment_env("CHECK"), config, socket=daemon.socket)
    assert (run.returncode, run.stdout) == (0, ""), run
    [req] = daemon.handler.calls
    assert isinstance(req, CheckRequest)
    assert req.prev_result.interfaces[0].name == "eth0"
    assert [str(ip.address) for ip in req.prev_result.ips] == ["198.18.0.5/24", "2001:db8::5/64"]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_on_a_pre_0_4_config_is_refused(daemon: Daemon, version: str) -> None:
    config = conf(daemon, version, prevResult=prev_result(version))
    run = run_shim(attachment_env("CHECK"), config, socket=daemon.socket)
    assert run.code == ErrorCode.INCOMPATIBLE_VERSION
    assert "CHECK" in run.output["msg"]
    assert daemon.handler.calls == []


def test_check_without_prev_result_is_invalid_config(daemon: Daemon) -> None:
    run = run_shim(attachment_env("CHECK"), conf(daemon), socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_CONFIG
    assert daemon.handler.calls == []


def test_status_ok_and_not_available(daemon: Daemon) -> None:
    run = run_shim(attachment_env("STATUS"), conf(daemon, "1.1.0"), socket=daemon.socket)
    assert (run.returncode, run.stdout) == (0, ""), run
    assert isinstance(daemon.handler.calls[0], StatusRequest)
    for code in (ErrorCode.NOT_AVAILABLE, ErrorCode.LIMITED_CONNECTIVITY):
        daemon.handler.errors["STATUS"] = CniError(code, "no free VF in pool", "pool p0: 0/3")
        run = run_shim(attachment_env("STATUS"), conf(daemon, "1.1.0"), socket=daemon.socket)
        assert run.code == code
        assert run.output == {
            "cniVersion": "1.1.0",
            "code": code,
            "msg": "no free VF in pool",
            "details": "pool p0: 0/3",
        }


def test_gc_passes_valid_attachments(daemon: Daemon) -> None:
    attachments = [
        {"containerID": "abc", "ifname": "eth0"},
        {"containerID": "def", "ifname": "net1"},
    ]
    config = conf(daemon, "1.1.0", **{"cni.dev/valid-attachments": attachments})
    run = run_shim(attachment_env("GC"), config, socket=daemon.socket)
    assert (run.returncode, run.stdout) == (0, ""), run
    [req] = daemon.handler.calls
    assert isinstance(req, GcRequest)
    assert [(a.container_id, a.ifname) for a in req.valid_attachments] == [
        ("abc", "eth0"),
        ("def", "net1"),
    ]


def test_gc_without_valid_attachments_is_invalid_config(daemon: Daemon) -> None:
    run = run_shim(attachment_env("GC"), conf(daemon, "1.1.0"), socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_CONFIG
    assert "cni.dev/valid-attachments" in run.output["msg"]


@pytest.mark.parametrize("verb", ["STATUS", "GC"])
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_status_and_gc_need_1_1(daemon: Daemon, verb: str, version: str) -> None:
    config = conf(daemon, version, **{"cni.dev/valid-attachments": []})
    run = run_shim(attachment_env(verb), config, socket=daemon.socket)
    assert run.code == ErrorCode.INCOMPATIBLE_VERSION
    assert run.output["cniVersion"] == version
    assert daemon.handler.calls == []


# --- local validation: env, stdin, config --------------------------------------------


@pytest.mark.parametrize(
    ("verb", "overrides", "named"),
    [
        ("ADD", {"CNI_COMMAND": None}, "CNI_COMMAND"),
        ("ADD", {"CNI_COMMAND": "ATTACH"}, "CNI_COMMAND"),
        ("ADD", {"CNI_NETNS": None}, "CNI_NETNS"),
        ("ADD", {"CNI_NETNS": "netns-1"}, "CNI_NETNS"),
        ("ADD", {"CNI_CONTAINERID": None, "CNI_IFNAME": None}, "CNI_CONTAINERID,CNI_IFNAME"),
        ("ADD", {"CNI_CONTAINERID": "-bad/id"}, "CNI_CONTAINERID"),
        ("ADD", {"CNI_IFNAME": "averyveryverylongname"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": "eth 0"}, "CNI_IFNAME"),
        ("ADD", {"CNI_ARGS": "K8S_POD_NAME"}, "CNI_ARGS"),
        ("CHECK", {"CNI_NETNS": None}, "CNI_NETNS"),
        ("DEL", {"CNI_IFNAME": None}, "CNI_IFNAME"),
        ("ADD", {"DPUNET_CNI_TIMEOUT": "soon"}, "DPUNET_CNI_TIMEOUT"),
    ],
)
def test_invalid_env_is_code_4(
    daemon: Daemon, verb: str, overrides: dict[str, str | None], named: str
) -> None:
    run = run_shim(attachment_env(verb, **overrides), conf(daemon), socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_ENV
    assert named in run.output["msg"]
    assert run.output["cniVersion"] == "1.0.0"
    assert daemon.handler.calls == []


@pytest.mark.parametrize(
    "stdin", [b"", b"not json", b"[1, 2]", b'"a string"', b'{"cniVersion": ', b"\xff\xfe{}"]
)
def test_undecodable_stdin_is_code_6(daemon: Daemon, stdin: bytes) -> None:
    run = run_shim(attachment_env("ADD"), stdin, socket=daemon.socket)
    assert run.code == ErrorCode.DECODE_FAILURE
    assert run.output["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(
    "change",
    [
        {"cniVersion": None},
        {"cniVersion": 1.0},
        {"name": None},
        {"name": ""},
        {"name": "bad name"},
        {"type": None},
        {"type": ["dpunet-cni"]},
        {"type": "../dpunet-cni"},
        {"stateDir": "relative/dir"},
        {"socket": 5},
    ],
)
def test_invalid_config_is_code_7_even_without_daemon(workdir: Path, change: dict) -> None:
    config = {k: v for k, v in {**netconf(), **change}.items() if v is not None}
    run = run_shim(attachment_env("ADD"), config, socket=workdir / "absent.sock")
    assert run.code == ErrorCode.INVALID_CONFIG


@pytest.mark.parametrize(
    "change",
    [
        {"deviceID": "02:00.2"},
        {"deviceID": VF_PCI, "pciBusID": "0000:02:00.3"},
        {"dns": {"nameservers": ["not-an-ip"]}},
        {"resourceName": ""},
        {"runtimeConfig": {"deviceID": 7}},
        {"prevResult": {"ips": [{"address": "198.18.0.5/24", "interface": 3}]}},
    ],
)
def test_invalid_dpunet_fields_are_code_7(daemon: Daemon, change: dict) -> None:
    run = run_shim(attachment_env("ADD"), conf(daemon, **change), socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_CONFIG
    assert run.output["details"]
    assert daemon.handler.calls == []


def test_state_dir_other_than_the_daemons_is_refused(daemon: Daemon, workdir: Path) -> None:
    config = netconf("1.0.0", workdir / "elsewhere")
    run = run_shim(attachment_env("ADD"), config, socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_CONFIG
    assert "stateDir" in run.output["msg"]


@pytest.mark.parametrize(
    "change", [{"deviceID": "zz"}, {"stateDir": "/elsewhere"}, {"prevResult": {"ips": 5}}]
)
def test_del_with_a_refused_config_is_gated_on_the_checkpoint(daemon: Daemon, change: dict) -> None:
    # The ADD with this config failed before attaching anything: its DEL must not fail.
    config = conf(daemon, **change)
    run = run_shim(attachment_env("DEL"), config, socket=daemon.socket)
    assert (run.returncode, run.stdout) == (0, ""), run
    write_checkpoint(daemon.state_dir)
    run = run_shim(attachment_env("DEL"), config, socket=daemon.socket)
    assert run.code == ErrorCode.INVALID_CONFIG
    assert daemon.handler.calls == []


def test_ipam_delegate_is_an_unsupported_field(daemon: Daemon) -> None:
    config = conf(daemon, ipam={"type": "host-local", "subnet": "198.18.0.0/24"})
    run = run_shim(attachment_env("ADD"), config, socket=daemon.socket)
    assert run.code == ErrorCode.UNSUPPORTED_FIELD
    assert "ipam.type" in run.output["msg"] and "host-local" in run.output["msg"]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.2.0", "2.0.0", "1.0", "latest"])
@pytest.mark.parametrize("verb", ["ADD", "DEL", "CHECK"])
def test_unsupported_config_version_is_code_1(daemon: Daemon, verb: str, version: str) -> None:
    # Not "invalid config" (7): the config may be fine for a version dpunet does not speak.
    run = run_shim(attachment_env(verb), conf(daemon, version), socket=daemon.socket)
    assert run.code == ErrorCode.INCOMPATIBLE_VERSION
    assert version in run.output["msg"]
    assert run.output["cniVersion"] == "1.1.0"


def test_unsupported_version_wins_over_other_config_problems(workdir: Path) -> None:
    config = {"cniVersion": "0.2.0", "type": "dpunet-cni"}  # no name either
    run = run_shim(attachment_env("ADD"), config, socket=workdir / "absent.sock")
    assert run.code == ErrorCode.INCOMPATIBLE_VERSION


def test_a_reachable_daemon_alone_decides_on_the_config(
    loop: BackgroundLoop, workdir: Path
) -> None:
    # The shim checks the config only when no daemon answers: once per side.
    async def accept_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.write(b'{"protocol": 1, "result": null}')
        writer.close()

    sock_path = workdir / "lenient.sock"
    server = loop.run(asyncio.start_unix_server(accept_all, str(sock_path)))
    try:
        config = {**netconf(), "name": "bad name"}
        run = run_shim(attachment_env("DEL"), config, socket=sock_path)
        assert (run.returncode, run.stdout) == (0, ""), run
    finally:
        server.close()


# --- handler failures ----------------------------------------------------------------


def test_handler_cni_errors_are_relayed(daemon: Daemon) -> None:
    daemon.handler.errors["ADD"] = CniError(ErrorCode.UNKNOWN_CONTAINER, "pod is gone")
    run = run_shim(attachment_env("ADD"), conf(daemon, "0.3.1"), socket=daemon.socket)
    assert run.returncode == 1
    assert run.output == {
        "cniVersion": "0.3.1",
        "code": ErrorCode.UNKNOWN_CONTAINER,
        "msg": "pod is gone",
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RuntimeError("controller said 500"), ErrorCode.TRY_AGAIN_LATER),
        (TimeoutError("port never came up"), ErrorCode.TRY_AGAIN_LATER),
        (PermissionError(13, "Permission denied"), ErrorCode.IO_FAILURE),
    ],
)
def test_unexpected_handler_exceptions_get_a_spec_code(
    daemon: Daemon, error: Exception, code: int
) -> None:
    daemon.handler.errors["ADD"] = error
    run = run_shim(attachment_env("ADD"), conf(daemon), socket=daemon.socket)
    assert run.code == code
    assert type(error).__name__ in run.output["details"]
    assert "Traceback" not in run.stdout + run.stderr


def test_unexpected_status_failure_is_not_available(daemon: Daemon) -> None:
    daemon.handler.errors["STATUS"] = RuntimeError("pool scan failed")
    run = run_shim(attachment_env("STATUS"), conf(daemon, "1.1.0"), socket=daemon.socket)
    assert run.code == ErrorCode.NOT_AVAILABLE


# --- daemon unreachable --------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "version", "code"),
    [
        ("ADD", "1.0.0", ErrorCode.TRY_AGAIN_LATER),
        ("CHECK", "1.0.0", ErrorCode.TRY_AGAIN_LATER),
        ("GC", "1.1.0", ErrorCode.TRY_AGAIN_LATER),
        ("STATUS", "1.1.0", ErrorCode.NOT_AVAILABLE),
    ],
)
def test_daemon_down(workdir: Path, verb: str, version: str, code: int) -> None:
    config = netconf(version, workdir, prevResult=prev_result(version))
    config["cni.dev/valid-attachments"] = []
    sock = workdir / "down.sock"
    run = run_shim(attachment_env(verb), config, socket=sock)
    assert run.code == code
    assert str(sock) in run.output["msg"]
    assert run.output["cniVersion"] == version


def test_del_with_daemon_down_and_no_checkpoint_succeeds(workdir: Path) -> None:
    run = run_shim(attachment_env("DEL"), netconf("1.0.0", workdir), socket=workdir / "down.sock")
    assert (run.returncode, run.stdout) == (0, ""), run


def test_del_with_daemon_down_and_a_checkpoint_is_try_again(workdir: Path) -> None:
    checkpoint = write_checkpoint(workdir)
    run = run_shim(attachment_env("DEL"), netconf("1.0.0", workdir), socket=workdir / "down.sock")
    assert run.code == ErrorCode.TRY_AGAIN_LATER
    assert str(checkpoint) in run.output["details"]


def test_default_state_dir_is_used_without_stateDir(workdir: Path) -> None:
    # No stateDir in the config: /var/lib/dpunet; this test's sandbox is not checkpointed.
    assert not Path("/var/lib/dpunet/sandboxes", f"{CONTAINER_ID}.json").exists()
    run = run_shim(attachment_env("DEL"), netconf("1.0.0"), socket=workdir / "down.sock")
    assert (run.returncode, run.stdout) == (0, ""), run


def test_connection_refused_is_try_again(workdir: Path) -> None:
    sock_path = workdir / "refusing.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))  # bound, never listening: connect() is refused
        run = run_shim(attachment_env("ADD"), netconf(), socket=sock_path)
    assert run.code == ErrorCode.TRY_AGAIN_LATER
    assert "ConnectionRefusedError" in run.output["details"]


def test_silent_daemon_times_out(workdir: Path) -> None:
    sock_path = workdir / "silent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        sock.listen()  # accepts into the backlog, never answers
        env = attachment_env("ADD", DPUNET_CNI_TIMEOUT="0.5")
        run = run_shim(env, netconf(), socket=sock_path)
    assert run.code == ErrorCode.TRY_AGAIN_LATER
    assert "TimeoutError" in run.output["details"]


def test_daemon_dropping_the_connection_keeps_del_gated_on_the_checkpoint(
    loop: BackgroundLoop, workdir: Path
) -> None:
    async def hang_up(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    sock_path = workdir / "crashy.sock"
    server = loop.run(asyncio.start_unix_server(hang_up, str(sock_path)))
    try:
        config = netconf("1.0.0", workdir)
        assert run_shim(attachment_env("DEL"), config, socket=sock_path).returncode == 0
        write_checkpoint(workdir)
        run = run_shim(attachment_env("DEL"), config, socket=sock_path)
        assert run.code == ErrorCode.TRY_AGAIN_LATER
        assert (
            run_shim(attachment_env("ADD"), config, socket=sock_path).code
            == ErrorCode.TRY_AGAIN_LATER
        )
    finally:
        server.close()


# --- the socket ----------------------------------------------------------------------


def test_socket_is_private_and_its_directory_created(daemon: Daemon) -> None:
    info = os.stat(daemon.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert daemon.socket.parent.is_dir()
    assert sorted(p.name for p in daemon.socket.parent.iterdir()) == ["cni.sock"]
