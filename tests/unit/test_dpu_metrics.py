"""DPU agent: the /metrics, /healthz, /readyz endpoint and the one-line event logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest

from dpunet import logs
from dpunet.dpu.metrics import Metrics
from dpunet.dpu.sb import port_binding_condition
from dpunet.observability import check_handler, metrics_handler, start_http


async def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_http_endpoints() -> None:
    metrics = Metrics()
    metrics.ports_owned.set(3)
    metrics.plug_latency.observe(0.02)
    healthy = {"ok": False}

    async def scenario() -> list[tuple[int, dict[str, str], bytes]]:
        server = await start_http(
            "127.0.0.1",
            0,
            {
                "/metrics": metrics_handler(metrics.registry),
                "/healthz": check_handler(lambda: (healthy["ok"], "detail")),
            },
        )
        port = server.sockets[0].getsockname()[1]
        out = [
            await _request(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            await _request(port, b"GET /healthz?verbose HTTP/1.0\r\n\r\n"),
        ]
        healthy["ok"] = True
        out += [
            await _request(port, b"GET /healthz HTTP/1.1\r\n\r\n"),
            await _request(port, b"HEAD /healthz HTTP/1.1\r\n\r\n"),
            await _request(port, b"GET /nope HTTP/1.1\r\n\r\n"),
            await _request(port, b"POST /metrics HTTP/1.1\r\n\r\n"),
            await _request(port, b"garbage\r\n\r\n"),
        ]
        server.close()
        await server.wait_closed()
        return out

    metrics_resp, sick, well, head, missing, post, garbage = asyncio.run(scenario())
    assert metrics_resp[0] == 200
    assert metrics_resp[1]["Content-Type"].startswith("text/plain; version=")
    text = metrics_resp[2].decode()
    assert "dpunet_dpu_ports_owned 3.0" in text
    assert "dpunet_dpu_plug_latency_seconds_count 1.0" in text
    assert "dpunet_dpu_reconcile_actions_total" in text
    assert sick[0] == 503 and sick[2] == b"detail\n"
    assert well[0] == 200 and well[2] == b"detail\n"
    assert head[0] == 200 and head[2] == b"" and head[1]["Content-Length"] == "7"
    assert missing[0] == 404 and post[0] == 405 and garbage[0] == 400


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_kv_event_lines(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("kv", "info")
    log = logging.getLogger("dpunet.test")
    logs.event(log, "port-added", port="pf0vf1", lsp="ns_a", mtu=1400, mgmt=None, ok=True)
    logs.event(log, "binding-refused", logging.WARNING, detail='pf-mac "x" = bad', names=["a", "b"])
    logs.event(log, "hidden", logging.DEBUG, x=1)
    logging.getLogger("ovsdbapp").info("library chatter")
    log.warning("plain %s", "message")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("ts=") and lines[0].endswith(
        "level=info event=port-added port=pf0vf1 lsp=ns_a mtu=1400 ok=true"
    )
    assert 'detail="pf-mac \\"x\\" = bad" names=a,b' in lines[1]
    assert "level=warning event=log logger=dpunet.test " in lines[2]
    assert lines[2].endswith('msg="plain message"')


def test_json_event_lines(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json", "debug")
    logs.event(logging.getLogger("t"), "reconciled", owned=2, names={"b", "a"})
    record = json.loads(capsys.readouterr().err.strip())
    assert record["event"] == "reconciled" and record["level"] == "info"
    assert record["owned"] == 2 and record["names"] == ["a", "b"]


def test_port_binding_condition() -> None:
    assert port_binding_condition(["dpu1", "dpu1.lab"], None, []) == [
        ["options", "includes", ["map", [["requested-chassis", "dpu1"]]]],
        ["options", "includes", ["map", [["requested-chassis", "dpu1.lab"]]]],
    ]
    cond = port_binding_condition(["dpu1"], "6b4d9323-da0a-4c9c-bef3-e27067b70334", ["k8s-h"])
    assert cond[1:] == [
        ["requested_chassis", "==", ["uuid", "6b4d9323-da0a-4c9c-bef3-e27067b70334"]],
        ["logical_port", "==", "k8s-h"],
    ]
