"""Test harness of the CNI layer: a real `CniServer` on a temporary socket, served from a
background event loop, with a handler that records its requests; and the shim executed
the way a container runtime executes a plugin (env + stdin, stdout + exit status)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dpunet
from dpunet.cni import wire
from dpunet.cni.models import (
    AddRequest,
    CheckRequest,
    CniRequest,
    DelRequest,
    GcRequest,
    StatusRequest,
)
from dpunet.cni.results import AddResult, Dns, Interface, IPConfig, Route
from dpunet.cni.server import CniServer

T = TypeVar("T")

SHIM_MODULE = [sys.executable, "-m", "dpunet.cni.shim"]
# the shim from the source tree without site-packages: the standard library only
SHIM_ISOLATED = [
    sys.executable,
    "-IS",
    "-c",
    f"import sys; sys.path.insert(0, {str(Path(dpunet.__file__).parents[1])!r}); "
    "from dpunet.cni.shim import main; main()",
]
CONTAINER_ID = "3f1c2a9b8e7d"
NETNS = "/run/netns/cni-test"
POD_ARGS = (
    "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
    f"K8S_POD_INFRA_CONTAINER_ID={CONTAINER_ID};K8S_POD_UID=6b0e4a52-1f0c-4f1e-9d7a-2c5f1e3b9a10"
)
VF_PCI = "0000:02:00.2"


def any_netns(path: str) -> str | None:
    """A CniServer `netns_check` that takes every path (the tests' netns paths are fake)."""
    return None


def sample_result(netns: str) -> AddResult:
    """What a dpu-host handler would return: a VF as eth0 with v4 + v6, routes, DNS."""
    return AddResult(
        interfaces=(
            Interface(name="eth0", mac="0a:58:c6:12:00:05", mtu=1400, sandbox=netns, pci_id=VF_PCI),
        ),
        ips=(
            IPConfig.model_validate(
                {"address": "198.18.0.5/24", "gateway": "198.18.0.1", "interface": 0}
            ),
            IPConfig.model_validate(
                {"address": "2001:db8::5/64", "gateway": "2001:db8::1", "interface": 0}
            ),
        ),
        routes=(
            Route.model_validate({"dst": "0.0.0.0/0", "gw": "198.18.0.1", "mtu": 1400}),
            Route.model_validate({"dst": "198.18.0.0/15", "gw": "198.18.0.1", "priority": 10}),
        ),
        dns=Dns.model_validate({"nameservers": ["198.18.0.10"], "search": ["svc.cluster.local"]}),
    )


@dataclass
class RecordingHandler:
    """A `CniHandler` that records requests; `errors[verb]` makes that verb raise."""

    calls: list[CniRequest] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    delay: float = 0.0

    async def _record(self, req: CniRequest) -> None:
        self.calls.append(req)
        if self.delay:
            await asyncio.sleep(self.delay)
        error = self.errors.get(req.command)
        if error is not None:
            raise error

    async def add(self, req: AddRequest) -> AddResult:
        await self._record(req)
        return sample_result(req.netns)

    async def delete(self, req: DelRequest) -> None:
        await self._record(req)

    async def check(self, req: CheckRequest) -> None:
        await self._record(req)

    async def status(self, req: StatusRequest) -> None:
        await self._record(req)

    async def gc(self, req: GcRequest) -> None:
        await self._record(req)


class BackgroundLoop:
    """An event loop running in a thread, for servers the shim subprocess talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run `coro` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Daemon:
    """A started CniServer with its recording handler."""

    server: CniServer
    handler: RecordingHandler
    state_dir: Path

    @property
    def socket(self) -> Path:
        return self.server.socket_path


def netconf(version: str = "1.0.0", state_dir: Path | None = None, **extra: Any) -> dict[str, Any]:
    """The seed's NAD-style config (as multus passes it, with `deviceID`) plus `extra`."""
    config: dict[str, Any] = {
        "cniVersion": version,
        "name": "ovn-kubernetes",
        "type": "dpunet-cni",
        "ipam": {},
        "dns": {},
        "deviceID": VF_PCI,
    }
    if state_dir is not None:
        config["stateDir"] = str(state_dir)
    config.update(extra)
    return config


def attachment_env(command: str, **overrides: str | None) -> dict[str, str]:
    """The env a runtime sets for `command` on the test sandbox (None drops a variable)."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": CONTAINER_ID,
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": POD_ARGS,
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
    }
    if command in ("STATUS", "GC", "VERSION"):
        env = {"CNI_COMMAND": command, "CNI_PATH": env["CNI_PATH"]}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class ShimRun:
    """What a runtime sees of one plugin execution."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> Any:
        """stdout as JSON (None when empty)."""
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def code(self) -> int:
        """The CNI error code printed on failure."""
        assert self.returncode != 0, self
        return int(self.output["code"])


def run_shim(
    env: dict[str, str],
    stdin: dict[str, Any] | str | bytes,
    *,
    socket: Path | None = None,
    command: list[str] | None = None,
    timeout: float = 30.0,
) -> ShimRun:
    """Execute the shim with only `env` (+ PATH and the daemon socket) and `stdin`."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    if socket is not None:
        full_env[wire.SOCKET_ENV] = str(socket)
    if isinstance(stdin, dict):
        data = json.dumps(stdin).encode()
    elif isinstance(stdin, str):
        data = stdin.encode()
    else:
        data = stdin
    proc = subprocess.run(
        command or SHIM_MODULE,
        input=data,
        env=full_env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return ShimRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
