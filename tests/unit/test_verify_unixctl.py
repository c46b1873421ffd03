"""The JSON-RPC client of ovs-vswitchd's control socket, against a server speaking the
protocol over a real unix socket (answers split over several writes, as OVS may)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpunet.verify import unixctl


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, object]]]]:
    """A unixctl-like server at `<tmp>/ovs-vswitchd.4242.ctl`; records the requests."""
    path = tmp_path / "ovs-vswitchd.4242.ctl"
    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    requests: list[dict[str, object]] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = json.loads(conn.recv(65536))
                requests.append(request)
                if request["method"] == "dpctl/show":
                    reply = {"id": request["id"], "result": "port 1: p0\n", "error": None}
                elif request["method"] == "hang":
                    time.sleep(1.0)
                    continue
                else:
                    reply = {"id": request["id"], "result": None, "error": "no such command\n"}
                data = json.dumps(reply).encode()
                for i in range(0, len(data), 7):  # several small writes
                    conn.sendall(data[i : i + 7])
                time.sleep(0.2)  # the daemon keeps the connection open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield tmp_path, requests
    listener.close()


def test_call_returns_the_result(server: tuple[Path, list[dict[str, object]]]) -> None:
    rundir, requests = server
    path = unixctl.vswitchd_socket(rundir)
    assert path.name == "ovs-vswitchd.4242.ctl"
    assert unixctl.call(path, "dpctl/show", "-s") == "port 1: p0\n"
    assert requests == [{"method": "dpctl/show", "params": ["-s"], "id": 0}]


def test_error_answer(server: tuple[Path, list[dict[str, object]]]) -> None:
    rundir, _ = server
    with pytest.raises(unixctl.UnixctlError, match="no such command"):
        unixctl.call(unixctl.vswitchd_socket(rundir), "bogus")


def test_timeout(server: tuple[Path, list[dict[str, object]]]) -> None:
    rundir, _ = server
    with pytest.raises(unixctl.UnixctlError):
        unixctl.call(unixctl.vswitchd_socket(rundir), "hang", timeout=0.2)


def test_no_pidfile(tmp_path: Path) -> None:
    with pytest.raises(unixctl.UnixctlError, match="is ovs-vswitchd running"):
        unixctl.vswitchd_socket(tmp_path)
    (tmp_path / "ovs-vswitchd.pid").write_text("77\n")
    with pytest.raises(unixctl.UnixctlError, match="no control socket"):
        unixctl.vswitchd_socket(tmp_path)
