"""The SB monitor against a remote that accepts connections and never answers: the
schema request times out and the next remote is tried."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpunet.dpu.sb import SbMonitor
from dpunet.ovsdb.rpc import fetch_schema

SB_SCHEMA = Path("/usr/share/ovn/ovn-sb.ovsschema")


@pytest.fixture
def silent_remote() -> Iterator[str]:
    """tcp: remote whose connections the kernel accepts and nobody ever reads."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"tcp:127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def real_sb(tmp_path: Path) -> Iterator[str]:
    """A real ovsdb-server with an empty OVN_Southbound database."""
    if shutil.which("ovsdb-server") is None or not SB_SCHEMA.exists():
        pytest.skip("needs ovsdb-server and the OVN SB schema")
    db, sock = tmp_path / "sb.db", tmp_path / "sb.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SB_SCHEMA)], check=True)
    server = subprocess.Popen(
        ["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--unixctl={tmp_path}/sb.ctl"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # until it accepts connections
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
                break
            time.sleep(0.01)
        yield f"unix:{sock}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def closing_remote() -> Iterator[str]:
    """A TCP listener that accepts each connection and closes it at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                listener.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp:127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_schema_request_to_a_silent_remote_times_out(silent_remote: str) -> None:
    with pytest.raises(OSError, match=f"{silent_remote}: .*timed out"):
        fetch_schema([silent_remote], "OVN_Southbound", timeout_ms=200)


def test_a_remote_that_hangs_up_is_named_as_such(closing_remote: str) -> None:
    # whether the hang-up comes before the request is written (a reset) or after (EOF)
    hung_up = "(connection closed by the server|Connection reset by peer)"
    with pytest.raises(OSError, match=f"{closing_remote}: {hung_up}"):
        fetch_schema([closing_remote], "OVN_Southbound", timeout_ms=2000)


def test_schema_comes_from_the_next_remote_after_a_silent_one(
    silent_remote: str, real_sb: str
) -> None:
    schema = fetch_schema([silent_remote, real_sb], "OVN_Southbound", timeout_ms=200)
    assert schema["name"] == "OVN_Southbound"


def test_monitor_synchronises_through_the_second_remote(silent_remote: str, real_sb: str) -> None:
    changed = threading.Event()
    monitor = SbMonitor([silent_remote, real_sb], "dpu1", ["dpu1"], changed.set)
    monitor.start()
    try:
        for _ in range(60):  # the IDL itself leaves a silent remote after its probes
            if monitor.synced:
                break
            changed.wait(1)
            changed.clear()
        assert monitor.synced and monitor.snapshot().synced
    finally:
        monitor.stop()
