"""Test harness of the controller tests: a real OVN central in a temp dir (standalone or a
3-member raft Northbound), and the controller as a real process serving real HTTP."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from polling import wait_until

NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"
SB_SCHEMA = "/usr/share/ovn/ovn-sb.ovsschema"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def node_token(node: str) -> str:
    """The test token of a node."""
    return f"node-token-{node}-0123456789"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _kill_pidfile(pidfile: Path, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        pid = int(pidfile.read_text().strip())
        os.kill(pid, sig)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            os.kill(pid, 0)
            time.sleep(0.02)


class OvnCentral:
    """OVN NB (standalone or an n-member raft cluster), SB and ovn-northd in a temp dir."""

    def __init__(self, members: int = 1, northd: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dpc-ovn-", dir="/tmp"))
        self.members = members
        self.with_northd = northd
        self.raft_ports = [free_port() for _ in range(members)] if members > 1 else []
        self.env = {**os.environ, "OVN_RUNDIR": str(self.dir), "OVS_RUNDIR": str(self.dir)}

    def nb_sock(self, i: int) -> Path:
        return self.dir / f"nb{i}.sock"

    @property
    def nb_remotes(self) -> list[str]:
        return [f"unix:{self.nb_sock(i)}" for i in range(self.members)]

    @property
    def sb_remote(self) -> str:
        return f"unix:{self.dir / 'sb.sock'}"

    def _server(self, name: str, db: Path, sock: Path) -> None:
        _run(
            "ovsdb-server",
            str(db),
            f"--remote=punix:{sock}",
            f"--pidfile={self.dir / name}.pid",
            f"--unixctl={self.dir / name}.ctl",
            f"--log-file={self.dir / name}.log",
            "--detach",
            env=self.env,
        )

    def start_member(self, i: int) -> None:
        self._server(f"nb{i}", self.dir / f"nb{i}.db", self.nb_sock(i))

    def start(self) -> OvnCentral:
        if self.members == 1:
            _run("ovsdb-tool", "create", str(self.dir / "nb0.db"), NB_SCHEMA)
        else:
            first = f"tcp:127.0.0.1:{self.raft_ports[0]}"
            _run("ovsdb-tool", "create-cluster", str(self.dir / "nb0.db"), NB_SCHEMA, first)
            for i in range(1, self.members):
                _run(
                    "ovsdb-tool",
                    "join-cluster",
                    str(self.dir / f"nb{i}.db"),
                    "OVN_Northbound",
                    f"tcp:127.0.0.1:{self.raft_ports[i]}",
                    first,
                )
        for i in range(self.members):
            self.start_member(i)
        if self.members > 1:
            wait_until("a raft leader", lambda: self.leader() is not None)
        self.nbctl("--no-wait", "init")
        _run("ovsdb-tool", "create", str(self.dir / "sb.db"), SB_SCHEMA)
        self._server("sb", self.dir / "sb.db", self.dir / "sb.sock")
        if self.with_northd:
            _run(
                "ovn-northd",
                f"--ovnnb-db={','.join(self.nb_remotes)}",
                f"--ovnsb-db={self.sb_remote}",
                f"--pidfile={self.dir / 'northd.pid'}",
                f"--log-file={self.dir / 'northd.log'}",
                "--detach",
                env=self.env,
            )
        return self

    def member_status(self, i: int) -> str:
        proc = subprocess.run(
            ["ovs-appctl", "-t", str(self.dir / f"nb{i}.ctl"), "cluster/status", "OVN_Northbound"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return proc.stdout

    def leader(self) -> int | None:
        for i in range(self.members):
            if "Role: leader" in self.member_status(i):
                return i
        return None

    def kill_member(self, i: int) -> None:
        _kill_pidfile(self.dir / f"nb{i}.pid", signal.SIGKILL)

    def stop_nb(self) -> None:
        for i in range(self.members):
            _kill_pidfile(self.dir / f"nb{i}.pid")

    def nbctl(self, *args: str) -> str:
        return _run("ovn-nbctl", f"--db={','.join(self.nb_remotes)}", *args, env=self.env)

    def sbctl(self, *args: str) -> str:
        return _run("ovn-sbctl", f"--db={self.sb_remote}", *args, env=self.env)

    def close(self) -> None:
        for name in ("northd", "sb", *(f"nb{i}" for i in range(self.members))):
            _kill_pidfile(self.dir / f"{name}.pid")
        shutil.rmtree(self.dir, ignore_errors=True)


class ControllerProc:
    """`python -m dpunet.controller` with a generated config and token file."""

    def __init__(self, nb_remotes: list[str], nodes: tuple[str, ...] = (), **settings: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dpc-ctl-", dir="/tmp"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket = self.dir / "api.sock"
        # node tokens of every namespace: the tests use several (docs/controller.md)
        node_lines = [f"{node_token(n)} node:{n} namespaces=*" for n in nodes]
        tokens = [f"{ADMIN_TOKEN} admin", *node_lines]
        (self.dir / "tokens").write_text("# test tokens\n" + "\n".join(tokens) + "\n")
        (self.dir / "tokens").chmod(0o600)
        self.settings = {
            "nb_remotes": nb_remotes,
            "sb_remotes": [],  # NB up only, unless a test passes its SB
            "listen": [f"127.0.0.1:{self.port}", f"unix:{self.socket}"],
            "token_file": str(self.dir / "tokens"),
            "cluster_cidr": "198.18.0.0/16",
            "wait_for_up": False,
            "nb_timeout": 10,
            **settings,
        }
        (self.dir / "config.yaml").write_text(yaml.safe_dump(self.settings))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "controller.log"

    def start(self, wait_ready: bool = True) -> ControllerProc:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dpunet.controller",
                    "--config",
                    str(self.dir / "config.yaml"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"controller exited:\n{self.log.read_text()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"controller not ready after {timeout}s:\n{self.log.read_text()}")

    def client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def async_client(self, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=15)

    def close(self) -> None:
        self.kill(signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


# Lease settings of the Kubernetes-mode controllers: short, so a takeover takes seconds,
# yet with room for a renewal's read and write on a loaded 2-core CI machine, where the API
# mock (in the test process) once took more than 1.2 s to answer one read.
K8S_LEASE = {"lease_duration": 8.0, "lease_renew_deadline": 6.0, "lease_retry_period": 0.5}


def k8s_controller(nb_remotes: list[str], kubeconfig: Path, **settings: Any) -> ControllerProc:
    """A controller in Kubernetes mode against kmock, not started: namespace `dpunet`,
    `kubernetes-admin` as admin, next hop 192.0.2.1, and a reconcile interval and leases
    short enough for a test to see changes in seconds; `settings` add or override."""
    return ControllerProc(
        nb_remotes,
        **{
            "mode": "kubernetes",
            "kubeconfig": str(kubeconfig),
            "k8s_namespace": "dpunet",
            "k8s_admin_users": ["kubernetes-admin"],
            "k8s_next_hop": "192.0.2.1",
            "reconcile_interval": 2,
            "lease_duration": 3,
            "lease_renew_deadline": 2,
            "lease_retry_period": 0.5,
            **settings,
        },
    )


@contextlib.contextmanager
def running(
    nb_remotes: list[str], nodes: tuple[str, ...] = (), **settings: Any
) -> Iterator[ControllerProc]:
    """A started controller, stopped (and its files removed) afterwards."""
    ctl = ControllerProc(nb_remotes, nodes, **settings)
    try:
        yield ctl.start()
    finally:
        ctl.close()


def register(client: httpx.Client, name: str, **spec: Any) -> dict[str, Any]:
    """PUT a node (defaults: a full node on chassis `name`, 192.0.2.x/24 via .1, gateway
    MAC 02:00 + the node IP, so its gateway router exists; `gateway_mac=None`: none)."""
    body = {
        "role": "full",
        "chassis": name,
        "node_ip": "192.0.2.50/24",
        "next_hop": "192.0.2.1",
        **spec,
    }
    if "gateway_mac" not in spec:
        ip = str(body["node_ip"]).split("/")[0]
        body["gateway_mac"] = "02:00:" + ":".join(f"{int(b):02x}" for b in ip.split("."))
    resp = client.put(f"/v1/nodes/{name}", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())
