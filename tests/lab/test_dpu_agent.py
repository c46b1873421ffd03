"""`dpunet dpu run` (the DPU agent) in a dedicated lab `dpuag` against real OVS/OVN.

The test writes the Logical_Switch_Ports itself (as the controller would) with
`ovn-nbctl` in cp, runs the agent as a real process inside the DPU namespace with the
node's environment, and checks br-int, the representor links, NB `up` and the agent's
HTTP endpoint. The lab is destructive territory (the management representor gets
renamed, daemons get killed), hence its own lab instead of the shared one.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

from dpunet.hw.representors import read_smart_nic_pf_mac
from dpunet.hw.sysfs import Sysfs
from dpunet.lab import daemons
from dpunet.lab.lab import down, exec_argv
from dpunet.lab.runner import pid_alive, run
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "dpuag"
SWITCH = "t-dpu"
HTTP = "127.0.0.1:9477"
OWNED = "dpunet-owned"


class Lab:
    """The dedicated lab with helpers for NB, the DPU's OVS and links."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.dpu = plan.node("dpu1")
        self.env = plan.node_env(self.dpu)
        sysfs = Sysfs(Path(self.env["DPUNET_SYSFS_ROOT"]))
        pf_mac = read_smart_nic_pf_mac(sysfs, "p0")
        assert pf_mac is not None
        self.pf_mac = pf_mac

    def nbctl(self, *args: str) -> str:
        return daemons.nbctl(self.plan, *args)

    def lsp(
        self,
        name: str,
        vf: int | str,
        chassis: str = "dpu1",
        pf_mac: str | None = None,
        mtu: int | None = None,
        ver: str | None = None,
        ip: int = 10,
    ) -> str:
        """Create LSP `name` the way the controller does (docs/architecture.md section 3)."""
        mac = f"0a:58:c6:12:00:{ip:02x}"
        address = f"{mac} 198.18.0.{ip}"
        options = [
            f"options:requested-chassis={chassis}",
            f"options:iface-id-ver={ver or 'uid-' + name}",
            "options:dpunet-plug=representor",
            f'options:"dpunet-plug:pf-mac"="{pf_mac or self.pf_mac}"',
            f'options:"dpunet-plug:vf-num"="{vf}"',
            'external_ids:"dpunet:namespace"=ns',
            f'external_ids:"dpunet:pod"={name}',
        ]
        if mtu is not None:
            options.append(f'options:dpunet-plug-mtu-request="{mtu}"')
        self.nbctl(
            "lsp-add", SWITCH, name,
            "--", "lsp-set-addresses", name, address,
            "--", "lsp-set-port-security", name, address,
            "--", "set", "Logical_Switch_Port", name, *options,
        )  # fmt: skip
        return mac

    def lsp_up(self, name: str) -> bool:
        return self.nbctl(
            "--bare", "--columns=up", "list", "Logical_Switch_Port", name
        ).strip() == ("true")

    def reset_switch(self) -> None:
        self.nbctl("--if-exists", "ls-del", SWITCH, "--", "ls-add", SWITCH)

    def vsctl(self, *args: str) -> str:
        return daemons.vsctl(self.plan, self.dpu, *args)

    def ports(self) -> dict[str, dict[str, str]]:
        """br-int port -> its interface's external_ids."""
        names = set(self.vsctl("list-ports", "br-int").split())
        rows = json.loads(
            self.vsctl("--format=json", "--columns=name,external_ids", "list", "Interface")
        )["data"]
        return {name: dict(ids[1]) for name, ids in rows if name in names}

    def owned(self) -> dict[str, dict[str, str]]:
        return {n: ids for n, ids in self.ports().items() if ids.get(OWNED) == "true"}

    def link(self, name: str) -> dict[str, Any] | None:
        proc = run(["ip", "-j", "link", "show", "dev", name], netns=self.dpu.netns, check=False)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None

    def http(self, path: str) -> tuple[int, str]:
        """(status, body) of GET `path` on the agent; status 0 when nothing listens."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://{HTTP}{path}', timeout=5)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print(e.read().decode())\n"
            "except OSError as e:\n"
            "    print(0); print(e)\n"
        )
        out = run([sys.executable, "-c", code], netns=self.dpu.netns).stdout
        status, _, body = out.partition("\n")
        return int(status), body


class Agent:
    """The agent as a process inside dpu1 (started the way an operator would)."""

    def __init__(self, lab: Lab, log: Path) -> None:
        self.lab = lab
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        # SB is TLS only in the lab: the DPU's certificate from the lab's CA
        config = self.log_path.with_name("agent.yaml")
        cert = self.lab.plan.tls("dpu1")
        ssl = {k: str(getattr(cert, k)) for k in ("private_key", "certificate", "ca_cert")}
        config.write_text(json.dumps({"sb_ssl": ssl}))
        argv = exec_argv(
            self.lab.plan,
            "dpu1",
            [
                sys.executable, "-m", "dpunet.cli.dpu_agent_cmds", "--config", str(config),
                "--metrics-address", HTTP, "--retry-interval", "1", *extra,
            ],
        )  # fmt: skip
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(15) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()

    def log(self) -> str:
        return self.log_path.read_text()

    def events(self, name: str) -> list[str]:
        return [line for line in self.log().splitlines() if f" event={name} " in f"{line} "]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB, "--bare"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"dpunet lab up failed:\n{proc.stdout}\n{proc.stderr}")
    try:
        yield Lab(LabPlan(LabSpec(name=LAB)))
    finally:
        down(LAB)


@pytest.fixture
def agent(lab: Lab, tmp_path: Path) -> Iterator[Agent]:
    """An empty test switch and a running agent; afterwards the agent has unplugged every
    pod port again and is stopped."""
    lab.reset_switch()
    a = Agent(lab, tmp_path / "agent.log")
    a.start()
    try:
        wait_until("the agent to be ready", lambda: lab.http("/readyz")[0] == 200)
        yield a
        lab.reset_switch()
        if a.proc is not None and a.proc.poll() is not None:
            a.start()
        wait_until("pod ports to be unplugged", lambda: set(lab.owned()) <= {"ovn-k8s-mp0"})
    finally:
        a.stop()
        print(a.log())


def test_plugs_representors_and_the_management_port(lab: Lab, agent: Agent) -> None:
    started = time.monotonic()
    mac_a = lab.lsp("ns_a", 1, mtu=1400, ip=11)
    wait_until("ns_a up in NB", lambda: lab.lsp_up("ns_a"))
    print(f"LSP created -> up in NB: {time.monotonic() - started:.3f}s")
    mac_b = lab.lsp("ns_b", 2, ip=12)
    # the management port's LSP as the controller writes it (plug options for VF0)
    mac_mp = lab.lsp("k8s-host1", 0, mtu=1400, ver="mp-1", ip=2)
    wait_until("ns_b, k8s-host1 up in NB", lambda: lab.lsp_up("ns_b") and lab.lsp_up("k8s-host1"))
    owned = lab.owned()
    for port, lport, mac in (("pf0vf1", "ns_a", mac_a), ("pf0vf2", "ns_b", mac_b)):
        ids = owned[port]
        assert ids["iface-id"] == lport and ids["iface-id-ver"] == f"uid-{lport}"
        assert ids["attached-mac"] == mac and ids[OWNED] == "true"
        assert ids.get("ovn-installed") == "true"  # ovn-controller bound it
    vf1 = lab.link("pf0vf1")
    assert vf1 is not None and vf1["mtu"] == 1400 and "UP" in vf1["flags"]

    # management port: VF0's representor renamed and plugged as k8s-<host node>
    assert lab.link("pf0vf0") is None
    mp = lab.link("ovn-k8s-mp0")
    assert mp is not None and "UP" in mp["flags"] and mp["mtu"] == 1400
    assert owned["ovn-k8s-mp0"]["iface-id"] == "k8s-host1"
    assert owned["ovn-k8s-mp0"]["iface-id-ver"] == "mp-1"
    assert owned["ovn-k8s-mp0"]["attached-mac"] == mac_mp
    assert not agent.events("binding-refused")
    assert set(owned) == {"pf0vf1", "pf0vf2", "ovn-k8s-mp0"}
    sysfs = Sysfs(Path(lab.env["DPUNET_SYSFS_ROOT"]))
    assert (sysfs.netdev("ovn-k8s-mp0") / "phys_port_name").read_text().strip() == "pf0vf0"

    status, body = lab.http("/metrics")
    assert status == 200
    assert "dpunet_dpu_ports_owned 3.0" in body
    assert 'dpunet_dpu_reconcile_actions_total{action="add"}' in body
    assert "dpunet_dpu_plug_latency_seconds_count" in body
    assert lab.http("/healthz")[0] == 200
    added = agent.events("port-added")
    assert any("port=pf0vf1 lsp=ns_a" in line and "pod=ns/ns_a" in line for line in added)


def test_refuses_bad_bindings_and_plugs_nothing(lab: Lab, agent: Agent) -> None:
    lab.lsp("ns_badmac", 3, pf_mac="02:00:00:00:00:99", ip=21)
    lab.lsp("ns_novf", 9, ip=22)
    lab.lsp("ns_mgmtvf", 0, ip=23)
    lab.lsp("ns_garbage", "x", ip=24)
    wait_until("four refusals", lambda: len(agent.events("binding-refused")) >= 4)
    lines = agent.events("binding-refused")
    reasons = {
        lsp: reason
        for line in lines
        for lsp, reason in [(_field(line, "lsp"), _field(line, "reason"))]
    }
    assert reasons == {
        "ns_badmac": "unknown-pf-mac",
        "ns_novf": "no-representor",
        "ns_mgmtvf": "mgmt-vf",
        "ns_garbage": "bad-options",
    }
    time.sleep(1.5)  # a retry pass later: still nothing plugged
    assert set(lab.owned()) == {"ovn-k8s-mp0"}
    assert lab.owned()["ovn-k8s-mp0"]["iface-id"] == "k8s-host1"
    body = lab.http("/metrics")[1]
    assert 'dpunet_dpu_refused_bindings{reason="unknown-pf-mac"} 1.0' in body
    assert 'dpunet_dpu_refusals_total{reason="mgmt-vf"} 1.0' in body


def _field(line: str, key: str) -> str:
    return next(p.split("=", 1)[1] for p in line.split() if p.startswith(f"{key}="))


def test_removes_deleted_and_moved_bindings_and_leaves_foreign_ports(
    lab: Lab, agent: Agent
) -> None:
    lab.vsctl(
        "add-port", "br-int", "foreign0",
        "--", "set", "Interface", "foreign0", "type=internal", "external_ids:iface-id=someone",
    )  # fmt: skip
    try:
        lab.lsp("ns_a", 1, ip=31)
        lab.lsp("ns_b", 2, ip=32)
        wait_until("both plugged", lambda: {"pf0vf1", "pf0vf2"} <= set(lab.owned()))
        lab.nbctl("lsp-del", "ns_b")
        wait_until("pf0vf2 unplugged", lambda: "pf0vf2" not in lab.ports())
        lab.nbctl("set", "Logical_Switch_Port", "ns_a", "options:requested-chassis=cp")
        wait_until("pf0vf1 unplugged", lambda: "pf0vf1" not in lab.ports())
        assert lab.ports()["foreign0"] == {"iface-id": "someone"}

        # a port dpunet does not own but named like a wanted representor: refused, kept
        lab.vsctl(
            "add-port", "br-int", "pf0vf3", "--", "set", "Interface", "pf0vf3", "external_ids:x=y"
        )
        lab.lsp("ns_c", 3, ip=33)
        wait_until(
            "refusal of ns_c", lambda: any("lsp=ns_c" in e for e in agent.events("binding-refused"))
        )
        time.sleep(1.5)
        assert lab.ports()["pf0vf3"] == {"x": "y"}
        lab.vsctl("del-port", "br-int", "pf0vf3")
        wait_until("ns_c plugged once the port is gone", lambda: lab.lsp_up("ns_c"))
        assert lab.owned()["pf0vf3"]["iface-id"] == "ns_c"
    finally:
        lab.vsctl("--if-exists", "del-port", "br-int", "foreign0")


def test_kill9_at_any_moment_then_restart_converges(lab: Lab, agent: Agent) -> None:
    lab.lsp("ns_a", 1, ip=41)
    lab.lsp("ns_b", 2, ip=42)
    wait_until("both up", lambda: lab.lsp_up("ns_a") and lab.lsp_up("ns_b"))
    renames_before = len(agent.events("mgmt-renamed"))
    rng = random.Random(5)
    # NB changes while the agent is dead, and kills at random points of its start-up
    changes: list[Callable[[], object]] = [
        lambda: lab.nbctl("lsp-del", "ns_b"),
        lambda: lab.lsp("ns_c", 3, ip=43),
        lambda: lab.nbctl("set", "Logical_Switch_Port", "ns_a", "options:iface-id-ver=uid-2"),
        lambda: lab.nbctl("lsp-del", "ns_c"),
        lambda: lab.lsp("ns_b", 2, ip=44, ver="uid-b2"),
    ]
    for change in changes:
        agent.kill9()
        change()
        agent.start()
        time.sleep(rng.uniform(0.1, 2.5))
    agent.kill9()
    lab.lsp("ns_d", 3, ip=45)
    agent.start()
    expected = {
        "pf0vf1": ("ns_a", "uid-2"),
        "pf0vf2": ("ns_b", "uid-b2"),
        "pf0vf3": ("ns_d", "uid-ns_d"),
    }

    def converged() -> bool:
        owned = lab.owned()
        pods = {n: (i["iface-id"], i.get("iface-id-ver")) for n, i in owned.items()}
        pods.pop("ovn-k8s-mp0", None)
        return pods == expected and "ovn-k8s-mp0" in owned

    wait_until("convergence after the restart", converged)
    wait_until("ns_a, ns_b, ns_d up", lambda: all(lab.lsp_up(n) for n in ("ns_a", "ns_b", "ns_d")))
    assert lab.link("pf0vf0") is None and lab.link("ovn-k8s-mp0") is not None
    assert len(agent.events("mgmt-renamed")) == renames_before  # already renamed: never again


def test_sb_outage_freezes_ports_then_resyncs(lab: Lab, agent: Agent) -> None:
    lab.lsp("ns_a", 1, ip=51)
    lab.lsp("ns_b", 2, ip=52)
    wait_until("both plugged", lambda: {"pf0vf1", "pf0vf2"} <= set(lab.owned()))
    sb = next(d for d in daemons.node_daemons(lab.plan, lab.plan.cp) if d.name == "ovn-sb")
    pid = daemons.daemon_pid(sb)
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    os.kill(pid, signal.SIGKILL)
    wait_until("SB server gone", lambda: not pid_alive(pid))
    try:
        wait_until("the agent to notice", lambda: agent.events("sb-disconnected"))
        lab.nbctl("lsp-del", "ns_b")  # northd cannot tell SB yet
        time.sleep(2)
        assert {"pf0vf1", "pf0vf2"} <= set(lab.owned())  # nothing removed blindly
    finally:
        with contextlib.suppress(FileNotFoundError):
            sb.pidfile.unlink()
        run(argv, netns=lab.plan.cp.netns, env=lab.plan.node_env(lab.plan.cp))
    wait_until("pf0vf2 unplugged after the resync", lambda: "pf0vf2" not in lab.ports(), timeout=30)
    assert "pf0vf1" in lab.owned()
    assert len(agent.events("sb-synced")) >= 2


def test_sb_replica_only_holds_this_chassis_bindings(lab: Lab, agent: Agent) -> None:
    lab.lsp("ns_here", 1, ip=61)
    lab.lsp("ns_there", 2, chassis="cp", ip=62)
    lab.nbctl("lsp-add", SWITCH, "ns_plain")
    cert = lab.plan.tls("dpu1")
    code = (
        "import time\n"
        "from dpunet.dpu.sb import SbMonitor\n"
        "from dpunet.tls import TlsFiles\n"
        f"ssl = TlsFiles(private_key='{cert.private_key}', certificate='{cert.certificate}', "
        f"ca_cert='{cert.ca_cert}')\n"
        f"m = SbMonitor(['{lab.plan.sb_remote}'], 'dpu1', ['dpu1'], lambda: None, ['k8s-host1'], "
        "ssl)\n"
        "m.start()\n"
        "for _ in range(100):\n"
        "    s = m.snapshot()\n"
        "    if s.synced and any(b.logical_port == 'ns_here' for b in s.bindings): break\n"
        "    time.sleep(0.1)\n"
        "print(' '.join(b.logical_port for b in s.bindings), s.synced)\n"
        "m.stop()\n"
    )
    out = run([sys.executable, "-c", code], netns=lab.dpu.netns, env=lab.env).stdout.split()
    assert out[-1] == "True"
    assert sorted(out[:-1]) == ["ns_here"]  # not ns_there, not ns_plain; k8s-host1 absent
    wait_until("ns_here up", lambda: lab.lsp_up("ns_here"))
