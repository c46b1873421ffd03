"""The CNI server itself: socket lifecycle, framing, serialization per container, logging."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_harness import CONTAINER_ID, RecordingHandler, any_netns, attachment_env, netconf

from dpunet.cni.models import AddRequest
from dpunet.cni.results import AddResult
from dpunet.cni.server import CniServer
from dpunet.cni.wire import MAX_MESSAGE_BYTES, ErrorCode, encode_request


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cni", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def server_in(workdir: Path, handler: Any = None) -> CniServer:
    return CniServer(
        handler or RecordingHandler(),
        workdir / "cni.sock",
        state_dir=workdir,
        netns_check=any_netns,
    )


async def raw_exchange(path: Path, payload: bytes) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    writer.write_eof()
    data = await reader.read()
    writer.close()
    return json.loads(data)


def test_start_close_lifecycle(workdir: Path) -> None:
    async def scenario() -> None:
        server = server_in(workdir)
        await server.start()
        assert (workdir / "cni.sock").exists()
        await server.close()
        assert not (workdir / "cni.sock").exists()
        await server.close()  # idempotent

    asyncio.run(scenario())


def test_stale_socket_is_replaced(workdir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(workdir / "cni.sock"))
    stale.close()  # the file stays; nobody listens

    async def scenario() -> None:
        async with server_in(workdir) as server:
            env = attachment_env("VERSION")
            answer = await raw_exchange(server.socket_path, encode_request(env, ""))
            assert answer["result"]["cniVersion"] == "1.1.0"

    asyncio.run(scenario())


def test_a_live_server_is_not_replaced(workdir: Path) -> None:
    async def scenario() -> None:
        async with server_in(workdir):
            with pytest.raises(OSError, match="another process is serving"):
                await server_in(workdir).start()
            assert (workdir / "cni.sock").exists()

    asyncio.run(scenario())


def test_a_non_socket_file_is_not_replaced(workdir: Path) -> None:
    (workdir / "cni.sock").write_text("precious")

    async def scenario() -> None:
        with pytest.raises(FileExistsError):
            await server_in(workdir).start()

    asyncio.run(scenario())
    assert (workdir / "cni.sock").read_text() == "precious"


def test_close_leaves_a_successors_socket_alone(workdir: Path) -> None:
    async def scenario() -> None:
        first = server_in(workdir)
        await first.start()
        os.unlink(workdir / "cni.sock")
        async with server_in(workdir):
            await first.close()
            assert (workdir / "cni.sock").exists()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", 6),
        (b"{not json", 6),
        (b'{"protocol": 99, "env": {}, "config": ""}', 5),
        (b'{"protocol": 1, "env": {"CNI_COMMAND": 1}, "config": ""}', 6),
        (b'{"protocol": 1, "env": {}, "config": {}}', 6),
        (b"x" * (MAX_MESSAGE_BYTES + 1), 5),
    ],
)
def test_malformed_requests_get_an_error(workdir: Path, payload: bytes, code: int) -> None:
    async def scenario() -> Any:
        async with server_in(workdir) as server:
            return await raw_exchange(server.socket_path, payload)

    answer = asyncio.run(scenario())
    assert answer["protocol"] == 1
    assert answer["error"]["code"] == code
    assert answer["error"]["cniVersion"] == "1.1.0"


def test_a_client_that_never_finishes_is_dropped(workdir: Path) -> None:
    async def scenario() -> bytes:
        server = CniServer(
            RecordingHandler(), workdir / "cni.sock", state_dir=workdir, read_timeout=0.2
        )
        async with server:
            reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
            writer.write(b'{"protocol": 1')  # and no EOF
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return data

    assert asyncio.run(scenario()) == b""


class ConcurrencyProbe(RecordingHandler):
    """Tracks how many ADDs run at once, per container and overall."""

    def __init__(self) -> None:
        super().__init__()
        self.active: dict[str, int] = {}
        self.max_same = 0
        self.max_total = 0

    async def add(self, req: AddRequest) -> AddResult:
        self.active[req.container_id] = self.active.get(req.container_id, 0) + 1
        self.max_same = max(self.max_same, self.active[req.container_id])
        self.max_total = max(self.max_total, sum(self.active.values()))
        await asyncio.sleep(0.05)
        self.active[req.container_id] -= 1
        return AddResult()


def test_requests_of_one_container_are_serialized_others_run_in_parallel(workdir: Path) -> None:
    probe = ConcurrencyProbe()
    config = json.dumps(netconf("1.0.0", workdir)).encode()

    async def scenario() -> None:
        server = server_in(workdir, probe)
        same = [server.handle(attachment_env("ADD"), config) for _ in range(3)]
        others = [
            server.handle(attachment_env("ADD", CNI_CONTAINERID=f"other{i}"), config)
            for i in range(3)
        ]
        answers = await asyncio.gather(*same, *others)
        assert all("result" in answer for answer in answers), answers

    asyncio.run(scenario())
    assert probe.max_same == 1
    assert probe.max_total >= 3
    assert probe.active == {CONTAINER_ID: 0, "other0": 0, "other1": 0, "other2": 0}


def test_one_log_line_per_request(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    handler = RecordingHandler()
    handler.errors["DEL"] = RuntimeError("boom")
    config = json.dumps(netconf("1.0.0", workdir)).encode()

    async def scenario() -> None:
        server = server_in(workdir, handler)
        await server.handle(attachment_env("ADD"), config)
        await server.handle(attachment_env("DEL"), config)

    with caplog.at_level(logging.INFO, logger="dpunet.cni"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event=cni ")]
    assert len(lines) == 2
    add, delete = lines
    assert add.startswith(
        f"event=cni verb=ADD container={CONTAINER_ID} ifname=eth0 pod=default/web-0"
    )
    assert "outcome=ok" in add and "duration_ms=" in add
    assert "verb=DEL" in delete and "outcome=error code=11" in delete
    failure = next(
        r for r in caplog.records if r.getMessage().startswith("event=cni_handler_failed")
    )
    assert failure.exc_info is not None  # the traceback stays in the daemon's log


def _nested_config(depth: int) -> str:
    """A valid-looking config whose `args` holds `depth` nested arrays."""
    config = {"cniVersion": "1.1.0", "name": "dpunet", "type": "dpunet-cni", "args": "HOLE"}
    return json.dumps(config).replace('"HOLE"', "[" * depth + "]" * depth)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"protocol": 1, "env": {}, "config": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        encode_request(attachment_env("ADD"), _nested_config(5_000)),
        encode_request(attachment_env("ADD"), _nested_config(900)),
        encode_request(attachment_env("STATUS"), _nested_config(100_000)),
    ],
    ids=["envelope-unterminated", "envelope", "config", "config-near-limit", "config-huge"],
)
def test_deeply_nested_requests_get_a_decode_error(workdir: Path, payload: bytes) -> None:
    handler = RecordingHandler()

    async def scenario() -> Any:
        async with server_in(workdir, handler) as server:
            return await raw_exchange(server.socket_path, payload)

    answer = asyncio.run(scenario())
    assert answer["error"]["code"] == ErrorCode.DECODE_FAILURE
    assert "nested deeper than" in answer["error"]["details"]
    assert handler.calls == []


@pytest.mark.parametrize(
    ("env", "change", "code"),
    [
        (attachment_env("ADD", CNI_CONTAINERID="../../etc"), {}, ErrorCode.INVALID_ENV),
        (attachment_env("ADD", CNI_NETNS="netns-1"), {}, ErrorCode.INVALID_ENV),
        (attachment_env("ADD"), {"name": "bad name"}, ErrorCode.INVALID_CONFIG),
        (attachment_env("ADD"), {"socket": "relative.sock"}, ErrorCode.INVALID_CONFIG),
        (attachment_env("CHECK"), {"cniVersion": "0.3.1"}, ErrorCode.INCOMPATIBLE_VERSION),
    ],
    ids=["container-id", "netns", "name", "socket", "check-version"],
)
def test_requests_not_sent_by_the_shim_are_checked_in_full(
    workdir: Path, env: dict[str, str], change: dict[str, str], code: int
) -> None:
    # The socket is an untrusted boundary: the daemon takes nothing the shim checks for granted.
    handler = RecordingHandler()
    config = json.dumps({**netconf("1.0.0", workdir), **change}).encode()
    answer = asyncio.run(server_in(workdir, handler).handle(env, config))
    assert answer["error"]["code"] == code
    assert handler.calls == []
