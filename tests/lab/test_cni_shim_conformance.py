"""A real container runtime (podman, CNI backend, runc) drives the installed `dpunet-cni`
against a CniServer whose test handler wires a veth end into the container as eth0."""

from __future__ import annotations

import asyncio
import json
import os
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
    """A podman configured to find `dpunet-cni` and the test network."""

    workdir: Path
    net_dir: Path

    def write_network(self, version: str, socket: Path, state_dir: Path) -> None:
        plugin = {"type": "dpunet-cni", "socket": str(socket), "stateDir": str(state_dir)}
        conflist = {"cniVersion": version, "name": NETWORK, "plugins": [plugin]}
        (self.net_dir / f"{NETWORK}.conflist").write_text(json.dumps(conflist))

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.workdir / "containers.conf")}
        podman = ["podman", "--storage-driver", "vfs", "--root", str(self.workdir / "root")]
        podman += ["--runroot", str(self.workdir / "runroot"), "--runtime", "/usr/sbin/runc"]
        podman += ["--cgroup-manager", "cgroupfs", "run", "--rm", "--network", NETWORK]
        podman += ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        podman += ["--rootfs", str(self.workdir / "rootfs"), *command]
        return subprocess.run(podman, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    workdir = Path(tempfile.mkdtemp(prefix="cnipod", dir="/tmp"))
    install_shim(workdir / "bin", workdir / "lib", python="/usr/bin/python3")
    net_dir = workdir / "net.d"
    net_dir.mkdir()
    (workdir / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", workdir / "rootfs" / "bin" / "busybox")
    (workdir / "containers.conf").write_text(
        "[network]\n"
        'network_backend = "cni"\n'
        f'cni_plugin_dirs = ["{workdir / "bin"}", "/usr/lib/cni"]\n'
        f'network_config_dir = "{net_dir}"\n'
    )
    yield Runtime(workdir, net_dir)
    shutil.rmtree(workdir, ignore_errors=True)


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
def test_podman_attaches_and_detaches_through_the_shim(
    runtime: Runtime, daemon: tuple[CniServer, VethHandler], version: str
) -> None:
    server, handler = daemon
    runtime.write_network(version, server.socket_path, server.state_dir)
    proc = runtime.run("/bin/busybox", "ip", "-o", "addr", "show", "eth0")
    assert proc.returncode == 0, proc.stderr
    assert ADDRESS in proc.stdout

    add, delete = handler.calls
    assert isinstance(add, AddRequest) and isinstance(delete, DelRequest)
    assert add.cni_version == delete.cni_version == version
    assert add.container_id == delete.container_id
    assert (add.ifname, add.config.name, add.config.type) == ("eth0", NETWORK, "dpunet-cni")
    assert add.netns.startswith("/")
    assert add.args.get("K8S_POD_NAME")  # podman passes the container name
    if version != "0.3.1":  # DEL gets the ADD's result back as prevResult from 0.4.0 on
        assert delete.prev_result is not None
        assert [str(i.address) for i in delete.prev_result.ips] == [ADDRESS]
    assert not Path(f"/sys/class/net/{VethHandler.host_end(add.container_id)}").exists()


def test_podman_reports_a_down_daemon(runtime: Runtime) -> None:
    socket = runtime.workdir / "nobody.sock"
    runtime.write_network("1.0.0", socket, runtime.workdir / "state")
    proc = runtime.run("/bin/busybox", "true")
    assert proc.returncode != 0
    assert f"dpunet daemon not reachable at {socket}; try again later" in proc.stderr
