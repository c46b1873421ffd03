"""A real container runtime (containerd's CRI plugin, runc), driven over CRI gRPC as kubelet
drives it, executes the installed `dpunet-cni` against a CniServer whose test handler wires
a veth end into the pod sandbox as eth0."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dpunet.cni.install import install_shim
from dpunet.cni.models import (
    AddRequest,
    CheckRequest,
    CniRequest,
    DelRequest,
    GcRequest,
    StatusRequest,
)
from dpunet.cni.results import AddResult, Interface, IPConfig
from dpunet.cni.server import CniServer
from dpunet.lab.cri.client import CriClient, CriError
from dpunet.lab.cri.containerd import Containerd, sandbox_netns
from dpunet.lab.cri.engine import sandbox_config

pytestmark = pytest.mark.lab

ADDRESS = "192.0.2.50/24"
GATEWAY = "192.0.2.1"
NETWORK = "dpunetconf"


def ip(*args: str, netns: str | None = None) -> str:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    proc = subprocess.run([*prefix, "ip", *args], capture_output=True, text=True, check=True)
    return proc.stdout


@dataclass
class VethHandler:
    """Puts one end of a fresh veth pair into the sandbox as `ifname` (a stand-in for the
    VF the real daemons move) and records every request."""

    calls: list[CniRequest] = field(default_factory=list)

    @staticmethod
    def host_end(container_id: str) -> str:
        return f"dpt{container_id[:10]}"

    async def add(self, req: AddRequest) -> AddResult:
        self.calls.append(req)
        host, peer = self.host_end(req.container_id), f"dpp{req.container_id[:10]}"
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", req.netns)
        ip("link", "set", peer, "name", req.ifname, netns=req.netns)
        ip("addr", "add", ADDRESS, "dev", req.ifname, netns=req.netns)
        ip("link", "set", req.ifname, "up", netns=req.netns)
        link = ip("-o", "link", "show", req.ifname, netns=req.netns)
        mac = link.split("link/ether ")[1].split()[0]
        return AddResult(
            interfaces=(Interface(name=req.ifname, mac=mac, sandbox=req.netns),),
            ips=(
                IPConfig.model_validate({"address": ADDRESS, "gateway": GATEWAY, "interface": 0}),
            ),
        )

    async def delete(self, req: DelRequest) -> None:
        self.calls.append(req)
        subprocess.run(["ip", "link", "del", self.host_end(req.container_id)], check=False)

    async def check(self, req: CheckRequest) -> None:
        self.calls.append(req)

    async def status(self, req: StatusRequest) -> None:
        self.calls.append(req)

    async def gc(self, req: GcRequest) -> None:
        self.calls.append(req)


@dataclass
class Runtime:
    """A containerd of its own whose CRI plugin finds `dpunet-cni` and the test network."""

    workdir: Path
    containerd: Containerd

    def write_network(self, version: str, socket: Path, state_dir: Path) -> None:
        """The conflist, written before containerd starts (it loads it at start)."""
        plugin = {"type": "dpunet-cni", "socket": str(socket), "stateDir": str(state_dir)}
        conflist = {"cniVersion": version, "name": NETWORK, "plugins": [plugin]}
        (self.containerd.cni_conf_dir / f"{NETWORK}.conflist").write_text(json.dumps(conflist))

    def cri(self) -> CriClient:
        self.containerd.ensure_running()
        return self.containerd.client(timeout=60)


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    workdir = Path(tempfile.mkdtemp(prefix="cnipod", dir="/tmp"))
    install_shim(workdir / "bin", workdir / "lib", python="/usr/bin/python3")
    (workdir / "net.d").mkdir()
    containerd = Containerd(
        base=workdir / "containerd",
        cni_bin_dir=workdir / "bin",
        cni_conf_dir=workdir / "net.d",
        cgroup_parent="/dpunet-cni-conformance",
    )
    yield Runtime(workdir, containerd)
    containerd.stop()
    assert not containerd.base.exists() and not containerd.shim_pids()
    shutil.rmtree(workdir)


@pytest.fixture
def daemon(runtime: Runtime) -> Iterator[tuple[CniServer, VethHandler]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    handler = VethHandler()
    server = CniServer(handler, runtime.workdir / "cni.sock", state_dir=runtime.workdir / "state")
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server, handler
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_containerd_attaches_and_detaches_through_the_shim(
    runtime: Runtime, daemon: tuple[CniServer, VethHandler], version: str
) -> None:
    server, handler = daemon
    runtime.write_network(version, server.socket_path, server.state_dir)
    with runtime.cri() as cri:
        sandbox_id = cri.run_pod_sandbox(sandbox_config(runtime.containerd, "conf-pod"))
        assert cri.pod_sandbox_status(sandbox_id).status.network.ip == ADDRESS.split("/")[0]
        netns = sandbox_netns(cri, sandbox_id)
        assert netns is not None
        assert ADDRESS in ip("-o", "addr", "show", "eth0", netns=netns)
        cri.stop_pod_sandbox(sandbox_id)
        cri.stop_pod_sandbox(sandbox_id)
        cri.remove_pod_sandbox(sandbox_id)
        assert cri.list_pod_sandbox() == []

    add, *deletes = handler.calls  # a DEL per Stop and Remove
    assert isinstance(add, AddRequest) and deletes
    assert all(isinstance(d, DelRequest) for d in deletes)
    delete = deletes[0]
    assert {c.cni_version for c in handler.calls} == {version}
    assert {c.container_id for c in handler.calls} == {sandbox_id}
    assert (add.ifname, add.config.name, add.config.type) == ("eth0", NETWORK, "dpunet-cni")
    assert add.netns == netns and delete.netns == netns
    assert all(d.netns in (netns, None) for d in deletes)  # later DELs: namespace gone
    assert add.args.get("K8S_POD_NAME") == "conf-pod"  # as kubelet's runtime passes them
    assert add.args.get("K8S_POD_NAMESPACE") == "default"
    assert add.args.get("K8S_POD_INFRA_CONTAINER_ID") == sandbox_id
    if version != "0.3.1":  # DEL gets the ADD's result back as prevResult from 0.4.0 on
        assert delete.prev_result is not None
        assert [str(i.address) for i in delete.prev_result.ips] == [ADDRESS]
    assert not Path(f"/sys/class/net/{VethHandler.host_end(add.container_id)}").exists()
    assert not Path(netns).exists()


def test_containerd_reports_a_down_daemon(runtime: Runtime) -> None:
    socket = runtime.workdir / "nobody.sock"
    runtime.write_network("1.0.0", socket, runtime.workdir / "state")
    with runtime.cri() as cri:
        with pytest.raises(CriError) as failed:
            cri.run_pod_sandbox(sandbox_config(runtime.containerd, "conf-pod"))
        assert f"dpunet daemon not reachable at {socket}; try again later" in failed.value.details
        assert cri.list_pod_sandbox() == []
