"""`PodAgent`'s ADD/DEL/CHECK/GC/reconcile state machine against fakes of the device layer
and the controller (tests/unit/pod_agent_fakes.py): rollback of every ADD phase, crashes
at every checkpoint write, reconcile and GC interleaved with verbs of the same sandbox,
unreadable records, several attachments per sandbox, GC per network.

Verbs run under the agent's per-container lock, as the CNI server runs them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pod_agent_fakes import (
    HOST,
    NODE,
    Crash,
    CrashingStore,
    FakeAttacher,
    FakeController,
    Gate,
    World,
    add_request,
    check_request,
    del_request,
    gc_request,
    pod_args,
    port_info,
    vf_device,
)
from prometheus_client import CollectorRegistry

from dpunet.cni.models import AddRequest, parse_netconf
from dpunet.cni.pods import AgentMetrics, PodAgent
from dpunet.cni.results import AddResult
from dpunet.cni.sandboxes import Phase, SandboxRecord, SandboxStore, device_json
from dpunet.cni.server import CniServer
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.contract.client import ClientError
from dpunet.linux.netlink import InterfaceConfig, LinuxError


class InterfaceProblems:
    """What CHECK's look into the pod finds (scripted by the test)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def __call__(self, netns: str | None, cfg: InterfaceConfig) -> list[str]:
        return list(self.problems)


class GatewayProbe:
    """The pod-side gateway check (scripted by the test): each call is recorded; it
    answers `answer` (seconds until the gateway answered, or None), or raises `error`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, InterfaceConfig, float]] = []
        self.answer: float | None = 0.003
        self.error: LinuxError | None = None

    def __call__(self, netns: str, cfg: InterfaceConfig, timeout: float) -> float | None:
        self.calls.append((netns, cfg, timeout))
        if self.error is not None:
            raise self.error
        return self.answer


@dataclass
class Rig:
    """A PodAgent over fakes; `restart` replaces it as a restarted daemon would."""

    world: World
    attacher: FakeAttacher
    controller: FakeController
    state_dir: Path
    inspect: InterfaceProblems
    gateway: GatewayProbe = field(default_factory=GatewayProbe)
    gateway_timeout: float = 0.5
    agent: PodAgent = field(init=False)

    def __post_init__(self) -> None:
        self.agent = self.make_agent()

    def make_agent(self, store: SandboxStore | None = None) -> PodAgent:
        return PodAgent(
            NODE,
            self.attacher,
            store or SandboxStore(self.state_dir),
            self.controller,
            AgentMetrics(CollectorRegistry(), "test"),
            port_timeout=5,
            interface_problems=self.inspect,
            gateway_timeout=self.gateway_timeout,
            gateway_probe=self.gateway,
        )

    def restart(self, store: SandboxStore | None = None) -> PodAgent:
        self.world.alive = True
        self.agent = self.make_agent(store)
        return self.agent

    @property
    def store(self) -> SandboxStore:
        return self.agent.store

    async def add(self, cid: str, pod: str, **kw: Any) -> AddResult:
        netns = kw.pop("netns", None) or self.world.netns(cid)
        async with self.agent.locks.hold(cid):
            return await self.agent.add(add_request(cid, netns, pod, **kw))

    async def delete(self, cid: str, pod: str, **kw: Any) -> None:
        async with self.agent.locks.hold(cid):
            await self.agent.delete(del_request(cid, pod, **kw))

    def records(self) -> list[SandboxRecord]:
        return self.store.scan().records

    def metric(self, name: str, **labels: str) -> float:
        value = self.agent.metrics.registry.get_sample_value(f"test_{name}", labels)
        return 0.0 if value is None else value


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    world = World(tmp_path)
    return Rig(
        world, FakeAttacher(world), FakeController(world), tmp_path / "state", InterfaceProblems()
    )


def run(coro_fn: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))


def assert_settled(rig: Rig) -> None:
    """Nothing leaked, nothing dangling: every device away from the host is the recorded
    device of an attached sandbox, in its pod; every port belongs to such a sandbox."""
    scan = rig.store.scan()
    records = scan.records
    assert all(r.phase is Phase.ATTACHED for r in records), records
    expected = {r.device.key: ("pod", r.netns, r.ifname) for r in records}
    claimed_elsewhere = {d.get("pci") for u in scan.unreadable for d in u.devices}
    away = {pci: w for pci, w in rig.attacher.away().items() if pci not in claimed_elsewhere}
    assert away == expected
    assert rig.controller.sandboxes() <= {r.container_id for r in records} | {
        u.container_id for u in scan.unreadable
    }
    for r in records:
        assert rig.controller.ports[(r.namespace, r.pod, r.port_network)].sandbox == r.container_id


def assert_nothing_held(rig: Rig) -> None:
    assert rig.attacher.away() == {}
    assert rig.controller.ports == {}
    assert rig.store.scan().records == []
    assert list((rig.state_dir / "sandboxes").glob("*.json")) == []


# ----------------------------------------------------------------------------- ADD
def test_add_attaches_a_device_and_records_it(rig: Rig) -> None:
    async def scenario() -> None:
        result = await rig.add("c1", "web")
        (record,) = rig.records()
        assert record.phase is Phase.ATTACHED and record.network == "dpunet"
        pci = record.device.key
        assert rig.attacher.location[pci] == ("pod", record.netns, "eth0")
        port = rig.controller.ports[("default", "web", None)]
        assert port.sandbox == "c1" and port.pci == pci and port.lsp == "default_web"
        assert result.interfaces[0].name == "eth0" and result.interfaces[0].mac == port.mac
        assert str(result.ips[0].address) == port.ips[0]
        assert [(str(r.dst), str(r.gw)) for r in result.routes] == [("0.0.0.0/0", "10.0.0.1")]
        assert_settled(rig)

    run(scenario)


def test_add_returns_once_the_gateway_answers_the_pod(rig: Rig) -> None:
    async def scenario() -> None:
        await rig.add("c1", "web")
        ((netns, cfg, timeout),) = rig.gateway.calls
        (record,) = rig.records()
        assert (netns, cfg.ifname, str(cfg.gateway), timeout) == (
            record.netns, "eth0", "10.0.0.1", 0.5,
        )  # fmt: skip
        assert rig.metric("cni_gateway_checks_total", result="answered") == 1
        assert rig.metric("cni_phase_seconds_count", verb="ADD", phase="gateway") == 1

    run(scenario)


@pytest.mark.parametrize("failure", ["unanswered", "unreadable"])
def test_an_unanswered_gateway_is_reported_and_the_pod_stays_attached(
    rig: Rig, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OVN said the port is up; a gateway that does not answer in time is a warning, not a
    failed ADD (the pod's kernel keeps asking)."""

    async def scenario() -> None:
        rig.gateway.answer = None
        if failure == "unreadable":
            rig.gateway.error = LinuxError("link eth0 not found")
        caplog.set_level(logging.WARNING, logger="dpunet.agent")
        result = await rig.add("c1", "web")
        (record,) = rig.records()
        assert record.phase is Phase.ATTACHED and result.interfaces[0].name == "eth0"
        assert rig.metric("cni_gateway_checks_total", result="unanswered") == 1
        assert rig.metric("cni_requests_total", verb="ADD", result="ok") == 1
        (warning,) = [r for r in caplog.records if r.getMessage() == "gateway.unanswered"]
        assert warning.levelno == logging.WARNING
        assert_settled(rig)

    run(scenario)


@pytest.mark.parametrize("case", ["switched-off", "no-default-route"])
def test_no_gateway_check_when_off_or_without_a_default_route(rig: Rig, case: str) -> None:
    async def scenario() -> None:
        if case == "switched-off":
            rig.gateway_timeout = 0
            rig.restart()
            await rig.add("c1", "web")
        else:  # a secondary network's port: the controller gives it no default route
            await rig.add("c1", "web", ifname="net1")
        assert rig.gateway.calls == []
        assert rig.metric("cni_gateway_checks_total", result="answered") == 0
        assert_settled(rig)

    run(scenario)


def test_repeated_add_of_an_attachment_returns_its_result(rig: Rig) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("c1")
        first = await rig.add("c1", "web", netns=netns)
        again = await rig.add("c1", "web", netns=netns)
        assert again == first and rig.controller.calls.count("put_port") == 1

    run(scenario)


def _fail_add_at(rig: Rig, phase: str) -> int:
    """Script a failure of ADD `phase`; the CNI code the ADD must answer."""
    a, c = rig.attacher, rig.controller
    if phase == "claim":
        a.fail["claim"] = [CniError(ErrorCode.NO_DEVICE, "no free device")]
        return ErrorCode.NO_DEVICE
    if phase in ("prepare", "stage", "plug"):
        a.fail[phase] = [LinuxError(f"{phase} failed")]
        return ErrorCode.PLUG_FAILED
    statuses = {
        "port-409": (409, ErrorCode.CONTROLLER_REFUSED),
        "port-503": (503, ErrorCode.TRY_AGAIN_LATER),
    }
    statuses["port-timeout"] = (0, ErrorCode.TRY_AGAIN_LATER)  # the client's status for no answer
    status, code = statuses[phase]
    c.fail["put_port"] = [ClientError(status, f"{phase}")]
    return code


@pytest.mark.parametrize(
    "phase", ["claim", "prepare", "port-409", "port-503", "port-timeout", "stage", "plug"]
)
def test_a_failed_add_phase_rolls_back_everything(rig: Rig, phase: str) -> None:
    async def scenario() -> None:
        code = _fail_add_at(rig, phase)
        with pytest.raises(CniError) as err:
            await rig.add("c1", "web")
        assert err.value.code == code
        assert_nothing_held(rig)
        if phase == "claim":  # nothing was done, so nothing is undone
            assert "unplug" not in rig.attacher.calls
            assert "delete_port" not in rig.controller.calls
        assert rig.metric("cni_requests_total", verb="ADD", result="error") == 1
        await rig.add("c2", "web2")  # the device layer and the store work on
        assert_settled(rig)

    run(scenario)


class FailingStore(SandboxStore):
    """A store whose `fail_at`-th save raises OSError (a full disk)."""

    def __init__(self, state_dir: Path, fail_at: int) -> None:
        super().__init__(state_dir)
        self.fail_at, self.saves = fail_at, 0

    def save(self, record: SandboxRecord) -> None:
        self.saves += 1
        if self.saves == self.fail_at:
            raise OSError(28, "No space left on device")
        super().save(record)


@pytest.mark.parametrize("save", [1, 2, 3])
def test_a_failed_checkpoint_save_rolls_back(rig: Rig, save: int) -> None:
    """Saves 1-3 of an ADD: RESERVED (claim), PLUGGING, ATTACHED."""

    async def scenario() -> None:
        rig.restart(FailingStore(rig.state_dir, save))
        with pytest.raises(OSError):
            await rig.add("c1", "web")
        assert_nothing_held(rig)

    run(scenario)


def test_concurrent_adds_get_different_devices(rig: Rig) -> None:
    async def scenario() -> None:
        count = len(rig.attacher.devices)
        outcomes = await asyncio.gather(
            *(rig.add(f"c{n}", f"pod{n}") for n in range(count + 1)), return_exceptions=True
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], CniError)
        assert failed[0].code == ErrorCode.NO_DEVICE
        pcis = [r.device.key for r in rig.records()]
        assert sorted(pcis) == sorted(rig.attacher.devices)
        assert_settled(rig)

    run(scenario)


async def entered_both(first: Gate, second: Gate) -> None:
    """Both gated calls are in progress at the same time."""
    await asyncio.wait_for(asyncio.gather(first.entered.wait(), second.entered.wait()), 5)


def test_two_adds_look_at_their_devices_at_once_and_neither_waits(rig: Rig) -> None:
    """No node-wide claim lock: while one ADD's look at its device (sysfs and netlink on a
    real node) is held, another ADD's look runs too, and that ADD completes entirely."""

    async def scenario() -> None:
        slow, quick = Gate(), Gate()
        rig.attacher.gates["describe"] = [slow, quick]
        first = asyncio.create_task(rig.add("c1", "web"))
        await asyncio.wait_for(slow.entered.wait(), 5)
        second = asyncio.create_task(rig.add("c2", "db"))
        await entered_both(slow, quick)  # overlapping: the second did not queue behind
        quick.open()
        result = await asyncio.wait_for(second, 5)  # done while the first is still held
        assert not first.done()
        assert [r.container_id for r in rig.records()] == ["c2"]
        slow.open()
        await asyncio.wait_for(first, 5)
        devices = {cid: pci for cid, pci in rig.attacher.described}
        assert devices["c1"] != devices["c2"]
        assert result.interfaces[0].name == "eth0"
        assert_settled(rig)
        assert rig.agent.claims.tracked() == 0  # nothing remembered once the claims end

    run(scenario)


def test_an_add_does_not_wait_for_another_claims_look_and_both_are_measured(rig: Rig) -> None:
    """While one ADD's look at its device is held, another ADD's claim is not blocked: its
    `claim_wait` stays near zero, and the held look shows as the first one's own
    `claim_sysfs` (the metric that makes "no ADD waits on another's claim" visible)."""

    async def scenario() -> None:
        slow = Gate()
        rig.attacher.gates["describe"] = [slow]
        first = asyncio.create_task(rig.add("c1", "web"))
        await asyncio.wait_for(slow.entered.wait(), 5)
        await asyncio.wait_for(rig.add("c2", "db"), 5)
        await asyncio.sleep(0.1)
        slow.open()
        await asyncio.wait_for(first, 5)
        assert rig.metric("cni_phase_seconds_count", verb="ADD", phase="claim_wait") == 2
        assert rig.metric("cni_phase_seconds_sum", verb="ADD", phase="claim_wait") < 0.05
        assert rig.metric("cni_phase_seconds_sum", verb="ADD", phase="claim_sysfs") >= 0.1

    run(scenario)


def test_a_burst_of_claims_shares_the_devices_exactly(rig: Rig) -> None:
    """Every ADD of a burst is inside its look at a device at once (none queued); each
    device goes to one of them, and the one too many finds none."""

    async def scenario() -> None:
        count = len(rig.attacher.devices)
        gates = [Gate() for _ in range(count)]
        rig.attacher.gates["describe"] = list(gates)
        adds = [asyncio.create_task(rig.add(f"c{n}", f"pod{n}")) for n in range(count + 1)]
        await asyncio.wait_for(asyncio.gather(*(g.entered.wait() for g in gates)), 5)
        done, held = await asyncio.wait(adds, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        (spare,) = done  # the one that found no device; the others are inside their look
        error = spare.exception()
        assert isinstance(error, CniError) and error.code == ErrorCode.NO_DEVICE
        for gate in reversed(gates):
            gate.open()
        await asyncio.wait_for(asyncio.gather(*held), 10)
        assert sorted(r.device.key for r in rig.records()) == sorted(rig.attacher.devices)
        assert_settled(rig)

    run(scenario)


@pytest.mark.parametrize("after_write", [False, True])
def test_a_crash_while_another_claim_is_in_flight_leaks_nothing(
    rig: Rig, after_write: bool
) -> None:
    """ADD c1 is looking at its device when the daemon dies at ADD c2's record write: after
    the restart nothing is held but what a record says, and every device can be claimed."""

    async def scenario() -> None:
        rig.restart(CrashingStore(rig.state_dir, rig.world, crash_at=1, after_write=after_write))
        held = Gate()
        rig.attacher.gates["describe"] = [held]
        first = asyncio.create_task(rig.add("c1", "web"))
        await asyncio.wait_for(held.entered.wait(), 5)
        with pytest.raises(Crash):
            await rig.add("c2", "db")
        held.open()
        with pytest.raises(Crash):
            await first
        rig.restart()
        await rig.agent.reconcile()
        assert_settled(rig)
        for cid in ("c1", "c2"):
            await rig.delete(cid, "x")
        assert_nothing_held(rig)
        count = len(rig.attacher.devices)
        await asyncio.gather(*(rig.add(f"n{n}", f"pod{n}") for n in range(count)))
        assert sorted(r.device.key for r in rig.records()) == sorted(rig.attacher.devices)

    run(scenario)


# ------------------------------------------------------------------- crash + reconcile
ADD_WRITES = [(n, after) for n in (1, 2, 3) for after in (False, True)]


@pytest.mark.parametrize(("crash_at", "after_write"), ADD_WRITES)
def test_a_crash_at_any_add_checkpoint_leaks_nothing(
    rig: Rig, crash_at: int, after_write: bool
) -> None:
    async def scenario() -> None:
        rig.restart(CrashingStore(rig.state_dir, rig.world, crash_at, after_write))
        with pytest.raises(Crash):
            await rig.add("c1", "web")
        rig.restart()
        await rig.agent.reconcile()
        assert_settled(rig)
        # whatever survived, the runtime's DEL (it got no answer) leaves nothing behind
        await rig.delete("c1", "web")
        assert_nothing_held(rig)

    run(scenario)


@pytest.mark.parametrize(("crash_at", "after_write"), [(1, False), (1, True), (2, False)])
def test_a_crash_at_any_del_checkpoint_leaks_nothing(
    rig: Rig, crash_at: int, after_write: bool
) -> None:
    """Writes of a DEL: 1 the RELEASING record, 2 the removal. The runtime got no answer,
    so it repeats the DEL (the pod's namespace still exists)."""

    async def scenario() -> None:
        await rig.add("c1", "web")
        rig.restart(CrashingStore(rig.state_dir, rig.world, crash_at, after_write))
        with pytest.raises(Crash):
            await rig.delete("c1", "web")
        rig.restart()
        await rig.agent.reconcile()
        await rig.delete("c1", "web")
        assert_nothing_held(rig)

    run(scenario)


def test_a_crash_after_the_port_was_made_leaks_nothing(rig: Rig) -> None:
    async def scenario() -> None:
        rig.controller.fail_after["put_port"] = [Crash()]
        with pytest.raises(Crash):
            await rig.add("c1", "web")
        assert rig.controller.sandboxes() == {"c1"}
        rig.restart()
        await rig.agent.reconcile()
        assert_nothing_held(rig)

    run(scenario)


def test_reconcile_releases_orphan_ports_and_sandboxes_whose_pod_is_gone(rig: Rig) -> None:
    async def scenario() -> None:
        await rig.add("c1", "web")
        await rig.add("c2", "db")
        rig.attacher.delete_netns(rig.world.netns("c1"))
        db = rig.controller.ports[("default", "db", None)]
        lost = db.model_copy(update={"name": "lost", "sandbox": "c9"})
        rig.controller.ports[("default", "lost", None)] = lost
        await rig.agent.reconcile()
        assert {r.container_id for r in rig.records()} == {"c2"}
        assert rig.controller.sandboxes() == {"c2"}
        assert rig.metric("reconcile_actions_total", action="sandbox-gone") == 1
        assert rig.metric("reconcile_actions_total", action="orphan-port") == 1
        assert_settled(rig)

    run(scenario)


# ------------------------------------------------------------ interleaving (defect 1)
def test_a_late_reconcile_leaves_the_retried_add_alone(rig: Rig) -> None:
    """A crash left sandbox x1 RESERVED; while a reconcile is busy with another sandbox,
    the runtime's retried ADD of x1 succeeds; the reconcile then must not undo it."""

    async def scenario() -> None:
        await rig.add("a1", "gone")
        rig.attacher.delete_netns(rig.world.netns("a1"))
        x_netns = rig.world.netns("x1")
        rig.restart(CrashingStore(rig.state_dir, rig.world, crash_at=1, after_write=True))
        with pytest.raises(Crash):
            await rig.add("x1", "web", netns=x_netns)
        rig.restart()
        gate = rig.attacher.gates["unplug"] = Gate()  # the reconcile's undo of a1
        reconcile = asyncio.create_task(rig.agent.reconcile())
        await gate.entered.wait()
        await rig.add("x1", "web", netns=x_netns)
        gate.open()
        await reconcile
        (record,) = rig.records()
        assert record.container_id == "x1" and record.phase is Phase.ATTACHED
        assert rig.controller.ports[("default", "web", None)].sandbox == "x1"
        assert rig.attacher.location[record.device.key] == ("pod", x_netns, "eth0")
        assert_settled(rig)

    run(scenario)


def test_an_add_waits_for_the_reconcile_undoing_its_sandbox(rig: Rig) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("x1")
        rig.restart(CrashingStore(rig.state_dir, rig.world, crash_at=2, after_write=False))
        with pytest.raises(Crash):
            await rig.add("x1", "web", netns=netns)
        rig.restart()
        gate = rig.attacher.gates["unplug"] = Gate()
        reconcile = asyncio.create_task(rig.agent.reconcile())
        await gate.entered.wait()
        add = asyncio.create_task(rig.add("x1", "web", netns=netns))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not add.done() and rig.controller.calls.count("put_port") == 1
        gate.open()
        await reconcile
        await add
        assert_settled(rig)
        assert [r.phase for r in rig.records()] == [Phase.ATTACHED]

    run(scenario)


def test_gc_waits_for_a_verb_of_the_same_sandbox(rig: Rig) -> None:
    async def scenario() -> None:
        gate = rig.controller.gates["put_port"] = Gate()
        add = asyncio.create_task(rig.add("c1", "web"))
        await gate.entered.wait()
        assert rig.agent.locks.held("c1")
        gc = asyncio.create_task(rig.agent.gc(gc_request("dpunet", [])))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not gc.done()
        gate.open()
        await add
        await gc  # the GC saw the finished ADD, not a half-made one
        assert_nothing_held(rig)

    run(scenario)


def test_the_cni_server_holds_the_agents_lock(rig: Rig, tmp_path: Path) -> None:
    async def scenario() -> None:
        server = CniServer(
            rig.agent,
            tmp_path / "cni.sock",
            state_dir=rig.state_dir,
            locks=rig.agent.locks,
            netns_check=lambda path: None,  # the rig's namespaces are fake
        )
        netns = rig.world.netns("c1")
        env = {
            "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        }  # fmt: skip
        config = {"cniVersion": "1.1.0", "name": "dpunet", "type": "dpunet-cni"}
        config["stateDir"] = str(rig.state_dir)
        gate = rig.controller.gates["put_port"] = Gate()
        answer = asyncio.create_task(server.handle(env, json.dumps(config).encode()))
        await gate.entered.wait()
        assert rig.agent.locks.held("c1")
        gate.open()
        assert "result" in await answer
        assert not rig.agent.locks.held("c1")

    run(scenario)


# ------------------------------------------------------------------ DEL (CNI spec)
def test_del_is_idempotent_and_needs_no_netns(rig: Rig) -> None:
    """Spec: plugins MUST accept multiple DELs and succeed when the attachment is gone;
    CNI_NETNS is optional for DEL."""

    async def scenario() -> None:
        await rig.delete("never", "added")
        await rig.add("c1", "web")
        await rig.delete("c1", "web")
        assert_nothing_held(rig)
        await rig.delete("c1", "web")
        assert rig.metric("cni_requests_total", verb="DEL", result="ok") == 3

    run(scenario)


def test_a_del_the_controller_cannot_answer_is_retried_to_completion(rig: Rig) -> None:
    async def scenario() -> None:
        await rig.add("c1", "web")
        rig.controller.fail["delete_port"] = [ClientError(0, "unreachable")]
        with pytest.raises(CniError) as err:
            await rig.delete("c1", "web")
        assert err.value.code == ErrorCode.TRY_AGAIN_LATER
        assert rig.attacher.away() == {}  # the device is back already
        assert [r.phase for r in rig.records()] == [Phase.RELEASING]
        await rig.delete("c1", "web")
        assert_nothing_held(rig)

    run(scenario)


# ---------------------------------------------------------------- CHECK (CNI spec)
def test_check_reports_a_missing_resource_and_a_foreign_port(rig: Rig) -> None:
    """Spec: CHECK errs when a resource ADD created is missing or in an invalid state."""

    async def scenario() -> None:
        netns = rig.world.netns("c1")
        prev = await rig.add("c1", "web", netns=netns)
        req = check_request("c1", netns, "web", prev)
        async with rig.agent.locks.hold("c1"):
            await rig.agent.check(req)
            rig.inspect.problems = ["interface eth0 is missing"]
            with pytest.raises(CniError) as err:
                await rig.agent.check(req)
            assert err.value.code == ErrorCode.CHECK_FAILED and "eth0 is missing" in str(
                err.value.details
            )
            rig.inspect.problems = []
            rig.controller.ports[("default", "web", None)].sandbox = "other"
            with pytest.raises(CniError) as err:
                await rig.agent.check(req)
            assert err.value.code == ErrorCode.CHECK_FAILED
            with pytest.raises(CniError) as err:
                await rig.agent.check(check_request("c1", netns, "web", prev, ifname="net1"))
            assert err.value.code == ErrorCode.UNKNOWN_CONTAINER

    run(scenario)


# ------------------------------------------------- several attachments (defect 3)
def test_two_ifnames_of_one_sandbox_are_independent(rig: Rig) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("c1")
        await rig.add("c1", "web", netns=netns)
        await rig.add("c1", "web", netns=netns, ifname="net1", network="storage")
        where = sorted(w for w in rig.attacher.away().values())
        assert where == [("pod", netns, "eth0"), ("pod", netns, "net1")]
        await rig.delete("c1", "web")
        assert list(rig.attacher.away().values()) == [("pod", netns, "net1")]
        (record,) = rig.records()
        assert (record.ifname, record.network) == ("net1", "storage")
        await rig.delete("c1", "web", ifname="net1", network="storage")
        assert rig.attacher.away() == {} and rig.records() == []

    run(scenario)


def test_an_ifname_another_network_attached_is_refused(rig: Rig) -> None:
    """Spec: an interface of the requested name already in the container is an error."""

    async def scenario() -> None:
        netns = rig.world.netns("c1")
        await rig.add("c1", "web", netns=netns)
        with pytest.raises(CniError) as err:
            await rig.add("c1", "web", netns=netns, network="storage")
        assert err.value.code == ErrorCode.IFNAME_IN_USE
        await rig.delete("c1", "web", network="storage")  # not that network's: nothing
        assert len(rig.attacher.away()) == 1
        assert_settled(rig)

    run(scenario)


# ---------------------------------------------------------- GC per network (defect 4)
def test_gc_of_one_network_leaves_the_other_networks(rig: Rig) -> None:
    async def scenario() -> None:
        await rig.add("a1", "pa", network="net-a")
        await rig.add("b1", "pb", network="net-b")
        await rig.agent.gc(gc_request("net-a", []))
        assert {r.container_id for r in rig.records()} == {"b1"}
        assert rig.controller.sandboxes() == {"b1"}
        assert_settled(rig)

    run(scenario)


def test_gc_keeps_valid_attachments_only(rig: Rig) -> None:
    """Spec: an attachment is (containerID, ifname); GC removes what is not listed."""

    async def scenario() -> None:
        netns = rig.world.netns("c1")
        await rig.add("c1", "web", netns=netns)
        await rig.add("c1", "web", netns=netns, ifname="net1")
        await rig.add("c2", "db")
        await rig.agent.gc(gc_request("dpunet", [("c1", "eth0"), ("c2", "eth0")]))
        assert sorted((r.container_id, r.ifname) for r in rig.records()) == [
            ("c1", "eth0"),
            ("c2", "eth0"),
        ]

    run(scenario)


def test_gc_goes_on_past_a_failure_and_reports_it(rig: Rig) -> None:
    """Spec: on an error GC continues, removing as much as it can, and reports errors."""

    async def scenario() -> None:
        await rig.add("c1", "web")
        await rig.add("c2", "db")
        rig.controller.fail["delete_port"] = [ClientError(503, "busy")]
        with pytest.raises(CniError) as err:
            await rig.agent.gc(gc_request("dpunet", []))
        assert err.value.code == ErrorCode.TRY_AGAIN_LATER
        assert len(rig.records()) == 1 and rig.attacher.away() == {}
        await rig.agent.gc(gc_request("dpunet", []))
        assert_nothing_held(rig)

    run(scenario)


# ---------------------------------------------------- unreadable records (defect 2)
def _newer_record(rig: Rig, cid: str, pci: str, netns: str) -> Path:
    """A record of a newer dpunet (one more field, a higher format) holding `pci`."""
    path = rig.state_dir / "sandboxes" / f"{cid}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": 99, "container_id": cid, "netns": netns, "ifname": "eth0",
        "network": "dpunet", "namespace": "default", "pod": "newer", "pod_uid": "u",
        "device": {"pci": pci}, "phase": "attached", "port": {}, "bandwidth": 10,
    }  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_a_newer_record_keeps_its_device_and_blocks_nothing_else(rig: Rig) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("g1")
        pci = rig.attacher.devices[0]
        rig.attacher.location[pci] = ("pod", netns, "eth0")
        path = _newer_record(rig, "g1", pci, netns)
        rig.controller.ports[("default", "newer", None)] = port_info("newer", "g1", "u")
        await rig.add("c1", "web")
        (record,) = rig.records()
        assert record.device.key != pci
        await rig.agent.reconcile()  # neither raises nor releases the newer sandbox
        assert path.exists() and ("default", "newer", None) in rig.controller.ports
        assert rig.metric("sandbox_records_unreadable") == 1
        for verb in (rig.delete("g1", "newer"), rig.add("g1", "newer", netns=netns)):
            with pytest.raises(CniError) as err:
                await verb
            assert err.value.code == ErrorCode.RECORD_UNREADABLE and str(path) in str(err.value)
        await rig.delete("c1", "web")
        assert rig.attacher.away() == {pci: ("pod", netns, "eth0")}

    run(scenario)


def test_a_garbage_record_is_reported_and_skipped(rig: Rig) -> None:
    async def scenario() -> None:
        path = rig.state_dir / "sandboxes" / "junk.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{not json")
        await rig.add("c1", "web")
        await rig.agent.reconcile()
        assert rig.metric("sandbox_records_unreadable") == 1
        (unreadable,) = rig.store.scan().unreadable
        assert unreadable.container_id == "junk" and unreadable.devices == []
        await rig.delete("c1", "web")
        path.unlink()
        await rig.agent.reconcile()
        assert rig.metric("sandbox_records_unreadable") == 0
        assert_nothing_held(rig)

    run(scenario)


def test_an_unreadable_file_is_forgotten_once_gone(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """What the agent remembers of unreadable files (to log each once) is pruned by every
    whole scan: a stream of them that come and go leaves nothing behind."""

    def reported() -> int:
        return sum(r.getMessage() == "record-unreadable" for r in caplog.records)

    async def scenario() -> None:
        junk = rig.state_dir / "sandboxes"
        junk.mkdir(parents=True, exist_ok=True)
        caplog.set_level(logging.ERROR, logger="dpunet.agent")
        for i in range(20):
            path = junk / f"junk{i}.json"
            path.write_text("{not json")
            await rig.agent.reconcile()
            await rig.agent.reconcile()  # logged once while it stays
            path.unlink()
            await rig.agent.reconcile()
        assert reported() == 20
        assert rig.agent._unreadable_seen == set()
        path = junk / "junk0.json"
        path.write_text("{not json")
        await rig.add("c1", "web")  # the claim's scan finds it again: it is logged again
        assert reported() == 21
        await rig.delete("c1", "web")

    run(scenario)


def test_add_del_cycles_leave_no_per_pod_state(rig: Rig) -> None:
    """After many pods came and went (each its own sandbox, pod name and namespace file,
    with reconciles between them) the agent holds nothing of them: no lock, no claim, no
    event report, no new metric series."""

    def series() -> int:
        return sum(len(m.samples) for m in rig.agent.metrics.registry.collect())

    async def scenario() -> None:
        await rig.add("warm", "warm")
        await rig.delete("warm", "warm")
        await rig.agent.reconcile()
        before = series()
        for i in range(100):
            await rig.add(f"c{i}", f"pod{i}")
            await rig.delete(f"c{i}", f"pod{i}")
            if i % 20 == 0:
                await rig.agent.reconcile()
        await rig.agent.reconcile()
        assert series() == before
        assert rig.agent.locks._locks == {}
        assert rig.agent.claims.tracked() == 0
        assert rig.agent._reports == set()
        assert_nothing_held(rig)

    run(scenario)


def test_a_record_of_the_previous_format_is_read_and_released(rig: Rig) -> None:
    """Format 1 (no `format`, no `network`): one attachment, whichever network asks."""

    async def scenario() -> None:
        netns = rig.world.netns("old")
        pci = rig.attacher.devices[0]
        rig.attacher.location[pci] = ("pod", netns, "eth0")
        port = port_info("legacy", "old", "u")
        rig.controller.ports[("default", "legacy", None)] = port
        path = rig.state_dir / "sandboxes" / "old.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        legacy = {
            "container_id": "old", "netns": netns, "ifname": "eth0", "namespace": "default",
            "pod": "legacy", "pod_uid": "u", "device": device_json(vf_device(pci)),
            "phase": "attached", "port": port.model_dump(mode="json", exclude={"network"}),
        }  # fmt: skip
        path.write_text(json.dumps(legacy))
        (record,) = rig.records()
        assert record.network is None and record.phase is Phase.ATTACHED
        await rig.agent.gc(gc_request("dpunet", []))  # its network is unknown: kept
        assert path.exists()
        await rig.add("c1", "web")
        assert rig.store.load("c1")[0].device.key != pci
        await rig.delete("old", "legacy", network="ovn-kubernetes")
        assert not path.exists() and ("default", "legacy", None) not in rig.controller.ports
        assert rig.attacher.location[pci] == HOST

    run(scenario)


def test_each_network_of_a_pod_gets_its_own_port_and_only_eth0_the_default_route(
    rig: Rig,
) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("c1")
        primary = await rig.add("c1", "web", netns=netns)
        net1 = await rig.add("c1", "web", netns=netns, ifname="net1", network="san-a")
        await rig.add("c1", "web", netns=netns, ifname="net2", network="san-b")
        ports = rig.controller.ports
        assert sorted(ports, key=str) == sorted(
            [("default", "web", None), ("default", "web", "san-a"), ("default", "web", "san-b")],
            key=str,
        )
        assert ports[("default", "web", "san-a")].lsp == "san.a_default_web"
        assert len({p.mac for p in ports.values()}) == len({p.ips[0] for p in ports.values()}) == 3
        assert [str(r.dst) for r in primary.routes] == ["0.0.0.0/0"]
        assert net1.routes == () and str(net1.ips[0].gateway) == "10.0.0.1"
        assert_settled(rig)
        await rig.delete("c1", "web", ifname="net1", network="san-a")
        assert set(ports) == {("default", "web", None), ("default", "web", "san-b")}
        assert sorted(r.ifname for r in rig.records()) == ["eth0", "net2"]
        assert_settled(rig)

    run(scenario)


def test_the_orphan_sweep_matches_ports_per_attachment(rig: Rig) -> None:
    async def scenario() -> None:
        netns = rig.world.netns("c1")
        await rig.add("c1", "web", netns=netns)
        await rig.add("c1", "web", netns=netns, ifname="net1", network="san-a")
        lost = port_info("web", "c1", "uid-web", network="san-b")  # its record is gone
        rig.controller.ports[("default", "web", "san-b")] = lost
        await rig.agent.reconcile()
        assert set(rig.controller.ports) == {("default", "web", None), ("default", "web", "san-a")}
        assert rig.metric("reconcile_actions_total", action="orphan-port") == 1
        assert_settled(rig)

    run(scenario)


# ------------------------------------------------------------- pod metadata
def _add_with_runtime_config(cid: str, netns: str, runtime_config: dict[str, Any]) -> AddRequest:
    config = parse_netconf(
        {"cniVersion": "1.1.0", "name": "dpunet", "type": "dpunet-cni",
         "runtimeConfig": runtime_config}
    )  # fmt: skip
    return AddRequest(
        command="ADD", cni_version="1.1.0", config=config, raw_config="{}",
        args=pod_args("web"), container_id=cid, ifname="eth0", netns=netns,
    )  # fmt: skip


def test_add_passes_labels_and_named_ports_from_runtime_config(rig: Rig) -> None:
    meta = {
        "dpunet.io/labels": {"app": "web", "example.com/tier": "front"},
        "dpunet.io/ports": [{"name": "http", "containerPort": 8080},
                            {"name": "dns", "containerPort": 53, "protocol": "UDP"}],
    }  # fmt: skip

    async def scenario() -> None:
        async with rig.agent.locks.hold("c1"):
            await rig.agent.add(_add_with_runtime_config("c1", rig.world.netns("c1"), meta))
        request = rig.controller.requests[("default", "web", None)]
        assert request.labels == {"app": "web", "example.com/tier": "front"}
        assert [(p.name, p.container_port, p.protocol) for p in request.ports] == [
            ("http", 8080, "TCP"),
            ("dns", 53, "UDP"),
        ]

    run(scenario)


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"dpunet.io/labels": {"app": "not ok!"}}, "labels.app"),
        ({"dpunet.io/labels": ["app=web"]}, "labels"),
        ({"dpunet.io/ports": [{"name": "HTTP", "containerPort": 80}]}, "ports.0.name"),
        ({"dpunet.io/ports": [{"name": "http", "containerPort": 0}]}, "ports.0.containerPort"),
        ({"dpunet.io/ports": [{"name": "a", "containerPort": 1}] * 2}, "repeat"),
    ],
)
def test_malformed_pod_metadata_is_code_7_before_anything_is_claimed(
    rig: Rig, meta: dict[str, Any], reason: str
) -> None:
    async def scenario() -> None:
        async with rig.agent.locks.hold("c1"):
            with pytest.raises(CniError) as err:
                await rig.agent.add(_add_with_runtime_config("c1", rig.world.netns("c1"), meta))
        assert err.value.code == ErrorCode.INVALID_CONFIG
        assert reason in (err.value.details or ""), err.value.details
        assert_nothing_held(rig)

    run(scenario)
