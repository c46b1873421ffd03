"""`ControllerClient(token_file=...)` follows a rotated token file (projected tokens)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dpunet.contract.client import ControllerClient

SEEN: list[str] = []


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        SEEN.append(self.headers.get("Authorization", ""))
        body = json.dumps({"items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_rotated_token_file_is_used(url: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token-0123456789\n")
    with ControllerClient(url, token_file=str(token)) as client:
        client.list_nodes()
        fresh = tmp_path / "token.new"
        fresh.write_text("second-token-0123456789")
        os.replace(fresh, token)  # as kubelet swaps projected volumes: a new inode
        client.list_nodes()
        token.unlink()  # a vanished file keeps the last token
        client.list_nodes()
    assert SEEN[-3:] == [
        "Bearer first-token-0123456789",
        "Bearer second-token-0123456789",
        "Bearer second-token-0123456789",
    ]


def test_missing_token_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        ControllerClient("http://127.0.0.1:1", token_file=str(tmp_path / "absent"))
