"""When a port PUT's wait ends (docs/controller.md, "When a port PUT answers"): SB
`Port_Binding.up` on the requested chassis with the contents the PUT wrote, or NB
`Logical_Switch_Port.up`, whichever first; a replaced or removed port is a Conflict.

The waiter is the controller's own (`NbClient.wait_port_up` over `SbBindings`); NB's replica,
its reads and the SB monitor thread are fakes fed from another thread, as the IDL threads
feed them."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address
from types import SimpleNamespace
from typing import Any

import pytest

from dpunet.controller import nb as nb_module
from dpunet.controller.errors import Conflict, DeadlineExceeded
from dpunet.controller.nb import NbClient, NbUnavailable
from dpunet.controller.nbcommands import LR, LS, LSP, PortRow
from dpunet.controller.sb import Expected, SbBindings
from dpunet.controller.topology import PodPort

NAME = "default_web-0"
DPU1, DPU2 = uuid.uuid4(), uuid.uuid4()


def pod_port(uid: str = "u1", sandbox: str = "s1", ip: str = "10.233.64.5") -> PodPort:
    return PodPort(
        namespace="default",
        pod="web-0",
        uid=uid,
        sandbox=sandbox,
        pci="0000:03:00.2",
        pf_mac="02:00:00:00:00:01",
        vf_num=2,
        node="host1",
        ip=IPv4Address(ip),
    )


def expected(port: PodPort, chassis: str = "dpu1") -> Expected:
    return Expected(chassis, (f"{port.mac} {port.ip}",), port.external_ids())


def bind(
    sb: SbBindings,
    port: PodPort,
    chassis: uuid.UUID | None = DPU1,
    up: bool = True,
    row: uuid.UUID | None = None,
) -> uuid.UUID:
    """SB reports `port`'s binding (as python-ovs gives the columns)."""
    row = row or uuid.uuid4()
    sb.port_changed(
        False,
        row,
        port.name,
        [SimpleNamespace(uuid=chassis)] if chassis else [],
        [up],
        [f"{port.mac} {port.ip}"],
        port.external_ids(),
    )
    return row


def sb_view() -> SbBindings:
    sb = SbBindings()
    sb.chassis_changed(False, DPU1, ["dpu1", "dpu1.example"])
    sb.chassis_changed(False, DPU2, ["dpu2", ""])
    sb.connected = True
    return sb


# ------------------------------------------------------------------ SbBindings
def test_ready_needs_up_on_the_requested_chassis_with_the_written_contents() -> None:
    sb, port = sb_view(), pod_port()
    assert not sb.ready(NAME, expected(port))  # no binding yet
    row = bind(sb, port, chassis=None, up=False)  # northd made it; nobody bound it
    assert not sb.ready(NAME, expected(port))
    bind(sb, port, chassis=DPU1, up=False, row=row)  # claimed, flows not installed yet
    assert not sb.ready(NAME, expected(port))
    bind(sb, port, chassis=DPU1, up=True, row=row)
    assert sb.ready(NAME, expected(port))
    assert sb.ready(NAME, expected(port, "dpu1.example"))  # requested by hostname
    assert not sb.ready(NAME, expected(port, "dpu2"))  # wrong chassis does not count
    bind(sb, port, chassis=DPU2, up=True, row=row)
    assert not sb.ready(NAME, expected(port))
    assert sb.ready(NAME, expected(port, "dpu2"))


def test_a_binding_showing_an_earlier_port_of_the_name_does_not_count() -> None:
    """A pod re-created under its name: until northd copies the new LSP's contents, SB
    still shows the old binding up, which says nothing about the new port's flows."""
    sb = sb_view()
    old, new = pod_port(uid="u1", ip="10.233.64.5"), pod_port(uid="u2", ip="10.233.64.6")
    row = bind(sb, old)
    assert sb.ready(NAME, expected(old))
    assert not sb.ready(NAME, expected(new))
    repointed = pod_port(uid="u1", sandbox="s2", ip="10.233.64.5")  # same address, sandbox
    assert not sb.ready(NAME, expected(repointed))
    bind(sb, new, row=row)
    assert sb.ready(NAME, expected(new))


def test_not_ready_while_disconnected_deleted_or_unknown_chassis() -> None:
    sb, port = sb_view(), pod_port()
    row = bind(sb, port)
    sb.connected = False
    assert not sb.ready(NAME, expected(port))
    sb.connected = True
    sb.chassis_changed(True, DPU1, [])
    assert not sb.ready(NAME, expected(port))
    sb.chassis_changed(False, DPU1, ["dpu1"])
    assert sb.ready(NAME, expected(port))
    sb.port_changed(True, uuid.uuid4(), NAME, [], [], [], {})  # another row's delete
    assert sb.ready(NAME, expected(port))
    sb.port_changed(True, row, NAME, [], [], [], {})
    assert not sb.ready(NAME, expected(port))
    assert len(sb) == 0


@pytest.mark.parametrize(
    "column,value",
    [
        ("logical_port", 7),
        ("up", ["yes"]),
        ("up", [True, False]),
        ("chassis", [SimpleNamespace(uuid=DPU1), SimpleNamespace(uuid=DPU2)]),
        ("chassis", ["dpu1"]),
        ("mac", "0a:58:0a:e9:40:05 10.233.64.5"),
        ("mac", ["0a:58:0a:e9:40:05"]),
        ("mac", ["0a:58:0a:e9:40:06 10.233.64.5"]),  # MAC not of its address
        ("external_ids", {"dpunet:owner": "dpunet", "dpunet:kind": "pod"}),  # no pod ids
        ("external_ids", {"dpunet:vf-num": 3}),
        ("external_ids", ["not", "a", "map"]),
    ],
)
def test_a_malformed_row_is_reported_once_and_skipped(
    column: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sb, port = sb_view(), pod_port()
    row = bind(sb, port)
    assert sb.ready(NAME, expected(port))
    columns: dict[str, Any] = {
        "logical_port": port.name,
        "chassis": [SimpleNamespace(uuid=DPU1)],
        "up": [True],
        "mac": [f"{port.mac} {port.ip}"],
        "external_ids": port.external_ids(),
    }
    if column == "external_ids" and isinstance(value, dict) and "dpunet:vf-num" in value:
        value = {**port.external_ids(), **value}
    columns[column] = value
    caplog.set_level(logging.WARNING, "dpunet.controller.sb")
    for _ in range(3):
        sb.port_changed(False, row, *columns.values())
    reports = [r for r in caplog.records if "sb.port_binding_malformed" in r.getMessage()]
    assert len(reports) == 1, caplog.text
    assert not sb.ready(NAME, expected(port))  # the row's earlier good state is gone too
    bind(sb, port, row=row)  # fixed: counts again
    assert sb.ready(NAME, expected(port))


def test_a_resync_forgets_the_rows_reported_malformed(caplog: pytest.LogCaptureFixture) -> None:
    """Rows reported malformed and deleted while the monitor was away are not remembered
    past the resync (no delete ever comes for them); one still there is reported again."""
    sb, port = sb_view(), pod_port()
    caplog.set_level(logging.WARNING, "dpunet.controller.sb")
    rows = [uuid.uuid4() for _ in range(50)]
    for row in rows:
        sb.port_changed(False, row, port.name, [], [True], ["junk"], port.external_ids())
    sb.clear()  # a resync: only rows[0] is still in the replica
    sb.port_changed(False, rows[0], port.name, [], [True], ["junk"], port.external_ids())
    reports = [r for r in caplog.records if "sb.port_binding_malformed" in r.getMessage()]
    assert len(reports) == 51, caplog.text
    assert sb._malformed == {rows[0]}


# ------------------------------------------------------------------ the waiter
class FakeNb(NbClient):
    """The controller's NB client over a fake replica: `lsp_rows` (what the replica
    holds) and `current` (what a read of the port returns)."""

    def __init__(self, sb: SbBindings | None) -> None:
        super().__init__(["unix:/nonexistent"], timeout=1, workers=1, sb=sb)
        self.lsp_rows: dict[uuid.UUID, object] = {}
        self._idl: Any = SimpleNamespace(tables={LSP: SimpleNamespace(rows=self.lsp_rows)})
        self.current: PortRow | None = None
        self.nb_down = False
        self.reads = 0

    async def read(self, make: Callable[[Any], Any]) -> Any:
        self.reads += 1
        if self.nb_down:
            raise NbUnavailable("NB down (fake)")
        return self.current

    def lsp_up(self, row: uuid.UUID, up: bool = True) -> None:
        """The IDL thread reports LSP `row` (named NAME) changed."""
        lsp = SimpleNamespace(
            uuid=row, name=NAME, up=[up], external_ids={}, _data=None, _changes={}, _mutations={}
        )
        self._port_changed("update", lsp)


def port_row(row: uuid.UUID, up: bool = False) -> PortRow:
    return PortRow(NAME, row, "host1", up, "u1", None, {})


@pytest.fixture
def fast_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb_module, "_RECHECK_S", 0.05)


async def from_thread(after: float, action: Callable[[], None]) -> None:
    """Run `action` in another thread after `after` seconds (as an IDL thread would)."""
    await asyncio.sleep(after)
    thread = threading.Thread(target=action)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)


async def started(nb: FakeNb, port: PodPort, row: uuid.UUID, timeout: float = 2.0) -> Any:
    loop = asyncio.get_running_loop()
    nb._loop = loop
    nb.lsp_rows[row] = object()
    nb.current = port_row(row)
    return asyncio.create_task(
        nb.wait_port_up(NAME, row, loop.time() + timeout, "the test port", expected(port))
    )


@pytest.mark.asyncio
async def test_sb_up_first_answers_without_nb_up() -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    t0 = asyncio.get_running_loop().time()
    await from_thread(0, lambda: bind(sb, port))
    assert await asyncio.wait_for(waiter, 1) == "sb"
    assert asyncio.get_running_loop().time() - t0 < 1.5  # woken (the NB recheck is at 2 s)
    assert nb.reads == 0


@pytest.mark.asyncio
async def test_both_up_when_the_waiter_runs_is_sb() -> None:
    """The source says whether SB's view had the port: when both signals are in by the
    time the waiter runs (a busy event loop), it is "sb"."""
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)
    nb.lsp_up(row)  # on the loop's thread: the waiter has not run yet
    bind(sb, port)
    assert await asyncio.wait_for(waiter, 1) == "sb"


@pytest.mark.asyncio
async def test_nb_up_first_answers_without_sb() -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)
    await from_thread(0.05, lambda: nb.lsp_up(row))
    assert await asyncio.wait_for(waiter, 1) == "nb"


@pytest.mark.asyncio
async def test_sb_up_on_the_wrong_chassis_does_not_count() -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row, timeout=0.4)
    await from_thread(0.05, lambda: bind(sb, port, chassis=DPU2))
    with pytest.raises(DeadlineExceeded, match="the test port"):
        await asyncio.wait_for(waiter, 2)


@pytest.mark.asyncio
async def test_a_port_replaced_while_waiting_is_a_conflict(fast_recheck: None) -> None:
    """SB shows the port up with the PUT's contents, but NB's row is another one now (a
    DELETE and a new PUT meanwhile): not an answer for this PUT."""
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)
    replacement = uuid.uuid4()

    def replace() -> None:
        del nb.lsp_rows[row]
        nb.lsp_rows[replacement] = object()
        nb.current = port_row(replacement, up=True)
        bind(sb, port)

    await from_thread(0.02, replace)
    with pytest.raises(Conflict, match="removed or replaced"):
        await asyncio.wait_for(waiter, 1)


@pytest.mark.asyncio
async def test_a_port_removed_while_waiting_is_a_conflict(fast_recheck: None) -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)

    def remove() -> None:
        del nb.lsp_rows[row]
        nb.current = None

    await from_thread(0.02, remove)
    with pytest.raises(Conflict, match="removed or replaced"):
        await asyncio.wait_for(waiter, 1)


@pytest.mark.asyncio
async def test_deadline_names_what_it_waited_for(fast_recheck: None) -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    nb = FakeNb(sb)
    waiter = await started(nb, port, row, timeout=0.3)
    nb.nb_down = True
    with pytest.raises(DeadlineExceeded) as info:
        await asyncio.wait_for(waiter, 2)
    assert "the test port" in str(info.value)
    assert "Northbound not connected" in str(info.value)


@pytest.mark.asyncio
async def test_sb_disconnected_falls_back_to_nb() -> None:
    sb, port, row = sb_view(), pod_port(), uuid.uuid4()
    bind(sb, port)
    sb.connected = False  # the replica says up, but it is not live
    nb = FakeNb(sb)
    waiter = await started(nb, port, row)
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await from_thread(0, lambda: nb.lsp_up(row))
    assert await asyncio.wait_for(waiter, 1) == "nb"


@pytest.mark.asyncio
async def test_without_an_sb_view_only_nb_up_counts() -> None:
    port, row = pod_port(), uuid.uuid4()
    nb = FakeNb(None)
    waiter = await started(nb, port, row)
    await from_thread(0.05, lambda: nb.lsp_up(row, up=False))
    assert not waiter.done()
    await from_thread(0, lambda: nb.lsp_up(row))
    assert await asyncio.wait_for(waiter, 1) == "nb"


@pytest.mark.asyncio
async def test_a_snapshot_forgets_the_up_ports_a_resync_dropped() -> None:
    """python-ovs drops the rows deleted while it was away without a delete: the next
    snapshot (run against the replica) forgets they were up."""

    class ReplicaNb(FakeNb):
        async def read(self, make: Callable[[Any], Any]) -> Any:
            tables = {LS: {}, LR: {}, LSP: self.lsp_rows}
            command = make(
                SimpleNamespace(tables={t: SimpleNamespace(rows=r) for t, r in tables.items()})
            )
            command.run_idl(None)
            return command.result

    nb, row = ReplicaNb(None), uuid.uuid4()
    nb.lsp_rows[row] = object()
    nb.lsp_up(row)
    del nb.lsp_rows[row]  # the resync
    await nb.snapshot()
    assert nb._up_rows == {}
