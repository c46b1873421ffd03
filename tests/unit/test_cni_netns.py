"""CNI_NETNS must name a network namespace other than the daemon's and the host's: checked
by the CNI server before the handler runs (so before anything is claimed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cni_harness import RecordingHandler, attachment_env, netconf

from dpunet.cni.server import CniServer
from dpunet.cni.wire import ErrorCode, encode_request
from dpunet.linux.netns import netns_problem


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cni", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def exchange(workdir: Path, command: str, netns: str, handler: RecordingHandler) -> Any:
    env = attachment_env(command, CNI_NETNS=netns)
    config = netconf("1.1.0", workdir, prevResult={"cniVersion": "1.1.0"})

    async def scenario() -> Any:
        async with CniServer(handler, workdir / "cni.sock", state_dir=workdir) as server:
            reader, writer = await asyncio.open_unix_connection(str(server.socket_path))
            writer.write(encode_request(env, json.dumps(config)))
            writer.write_eof()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return json.loads(data)

    return asyncio.run(scenario())


def _fifo(workdir: Path) -> str:
    path = workdir / "fifo"
    os.mkfifo(path)
    return str(path)


def _file(workdir: Path) -> str:
    path = workdir / "empty"
    path.touch()
    return str(path)


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_fifo, "not a network namespace"),
        (_file, "not a network namespace"),
        (lambda _: "/dev/null", "not a network namespace"),
        (lambda w: str(w), "not a network namespace"),
        (lambda w: str(w / "missing"), "No such file"),
        (lambda _: "/proc/self/ns/mnt", "not a network namespace"),
        (lambda _: "/proc/self/ns/net", "network namespace, not a pod's"),
        # (in a container PID 1's namespace may be out of reach: refused all the same)
        (lambda _: "/proc/1/ns/net", "is the host's network namespace, not a pod's|denied"),
    ],
    ids=["fifo", "file", "chardev", "directory", "missing", "mntns", "own", "host"],
)
def test_a_path_that_is_no_pod_netns_is_refused_before_the_handler(
    workdir: Path, command: str, make: Any, problem: str
) -> None:
    handler = RecordingHandler()
    answer = exchange(workdir, command, make(workdir), handler)
    assert answer["error"]["code"] == ErrorCode.INVALID_ENV, answer
    assert "CNI_NETNS" in answer["error"]["msg"]
    assert re.search(problem, answer["error"]["msg"] + answer["error"].get("details", ""))
    assert handler.calls == []


def test_a_pod_netns_reaches_the_handler(workdir: Path, other_netns: str) -> None:
    handler = RecordingHandler()
    answer = exchange(workdir, "ADD", other_netns, handler)
    assert "result" in answer, answer
    assert [c.command for c in handler.calls] == ["ADD"]
    assert netns_problem(other_netns) is None
