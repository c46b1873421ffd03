"""The host agent while its DPU's lease is expired: CNI STATUS answers code 50, ADD fails
with code 50 before it claims anything (a DPUNotReady event for the pod), the device
plugin marks the node's VFs Unhealthy, and all of it recovers once the DPU renews. The
controller is a fake; the lease view's clock is the test's."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from host_daemon_config import RESOURCE, config
from pod_agent_fakes import NODE, FakeAttacher, FakeController, World, add_request, netconf
from prometheus_client import CollectorRegistry

from dpunet.cni.models import StatusRequest
from dpunet.cni.pods import AgentMetrics, PodAgent
from dpunet.cni.sandboxes import SandboxStore
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.contract.api import DpuLease, LeaseState, NodeInfo
from dpunet.contract.client import ClientError
from dpunet.host.daemon import HostDaemon
from dpunet.host.lease import DpuLeaseView

TTL = 2.0
EXPIRED = DpuLease(
    chassis="dpu1", state=LeaseState.EXPIRED, duration=15, renewed_ago=40, silent_for=40
)
HELD = DpuLease(chassis="dpu1", state=LeaseState.HELD, duration=15, renewed_ago=1, silent_for=1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class LeaseController(FakeController):
    """The fake controller whose node record carries `lease`."""

    lease: DpuLease | None = EXPIRED

    def get_node(self, name: str) -> NodeInfo:
        return super().get_node(name).model_copy(update={"dpu_lease": self.lease})


class Host:
    """A PodAgent over fakes with the host daemon's lease view wired in."""

    def __init__(self, root: Path) -> None:
        self.world = World(root)
        self.attacher = FakeAttacher(self.world)
        self.controller = LeaseController(self.world)
        self.clock = Clock()
        self.agent = PodAgent(
            NODE, self.attacher, SandboxStore(root / "state"), self.controller,
            AgentMetrics(CollectorRegistry(), "test"), port_timeout=5,
        )  # fmt: skip
        view = DpuLeaseView(NODE, lambda: self.controller.get_node(NODE), TTL, self.clock)
        self.agent.dpu_down = view.problem

    async def add(self, cid: str) -> None:
        async with self.agent.locks.hold(cid):
            await self.agent.add(add_request(cid, self.world.netns(cid), f"pod-{cid}"))

    async def status(self) -> None:
        await self.agent.status(
            StatusRequest(command="STATUS", cni_version="1.1.0", config=netconf("dpunet"),
                          raw_config="{}", args={})
        )  # fmt: skip


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 30))


def test_status_is_50_while_the_lease_is_expired_and_recovers(host: Host) -> None:
    async def scenario() -> None:
        with pytest.raises(CniError) as err:
            await host.status()
        assert err.value.code == ErrorCode.NOT_AVAILABLE
        assert err.value.msg.startswith(f"the DPU dpu1 of node {NODE} is down: its last lease")
        assert "40 s ago (a lease holds 15 s)" in err.value.msg
        host.controller.lease = HELD  # renewed: STATUS asks the controller every time
        await host.status()

    run(scenario())


def test_add_fails_fast_with_50_and_claims_nothing(host: Host) -> None:
    async def scenario() -> None:
        with pytest.raises(CniError) as err:
            await host.add("c1")
        assert err.value.code == ErrorCode.NOT_AVAILABLE and "the DPU dpu1 of node" in err.value.msg
        assert "nothing was claimed" in err.value.details
        await asyncio.sleep(0)  # the event report runs in the background
        await asyncio.gather(*host.agent._reports)
        assert host.attacher.away() == {} and host.controller.ports == {}
        assert host.agent.store.scan().records == []
        assert "put_port" not in host.controller.calls
        [report] = host.controller.events
        assert report.reason == "DPUNotReady" and "dpu1" in report.message

    run(scenario())


def test_add_reuses_the_lease_state_for_ttl_then_recovers(host: Host) -> None:
    async def scenario() -> None:
        host.controller.lease = HELD
        await host.add("c1")
        host.controller.lease = EXPIRED
        host.clock.now += TTL / 2
        await host.add("c2")  # within the TTL: the cached state, no call to the controller
        assert host.controller.calls.count("get_node") == 1
        host.clock.now += TTL
        with pytest.raises(CniError, match="is down"):
            await host.add("c3")
        assert host.controller.calls.count("get_node") == 2
        host.controller.lease = HELD
        host.clock.now += TTL
        await host.add("c3")
        assert len(host.agent.store.scan().records) == 3

    run(scenario())


@pytest.mark.parametrize(
    "lease",
    [None, DpuLease(chassis="dpu1", state=LeaseState.UNKNOWN, duration=15, renewed_ago=None,
                    silent_for=3)],
)  # fmt: skip
def test_no_lease_or_an_unknown_one_does_not_stop_adds(host: Host, lease: DpuLease) -> None:
    host.controller.lease = lease
    run(host.add("c1"))
    assert len(host.agent.store.scan().records) == 1


def test_a_controller_that_cannot_say_does_not_stop_adds(host: Host) -> None:
    host.controller.fail["get_node"] = [ClientError(0, "cannot reach the controller")]
    run(host.add("c1"))
    assert len(host.agent.store.scan().records) == 1


# ------------------------------------------------------------------------ device plugin
@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dpl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_device_plugin_marks_vfs_unhealthy_while_the_lease_is_expired(base: Path) -> None:
    daemon = HostDaemon(config(base))
    daemon.mgmt_ok = True
    clock, controller = Clock(), LeaseController(World(base))
    daemon.lease = DpuLeaseView("dpu-host", lambda: controller.get_node("dpu-host"), TTL, clock)
    assert daemon.device_plugin is not None

    def health() -> set[tuple[str, str | None]]:
        assert daemon.device_plugin is not None
        return {(d.health, d.problem) for d in daemon.device_plugin._survey()[RESOURCE]}

    [(state, problem)] = health()
    assert state == "Unhealthy" and problem is not None
    assert problem.startswith("DPU not ready: the DPU dpu1 of node dpu-host is down")
    controller.lease = HELD
    clock.now += TTL
    assert health() == {("Healthy", None)}
