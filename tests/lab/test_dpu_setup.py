"""`dpunet dpu setup` against a real OVS (userspace datapath) in a throwaway DPU namespace.

Each test builds: netns `dpst-<id>-dpu` running ovsdb-server + ovs-vswitchd (own rundir),
with `p0` (192.0.2.10/24, default route via .1, a static route) whose veth peer sits in
netns `dpst-<id>-nb` (the underlay neighbour, 192.0.2.1/24), and `pf0hpf` whose peer also
sits in the neighbour netns. The command runs as a real process inside the DPU netns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dpunet.linux.netlink import kernel_has_ovs_datapath

pytestmark = pytest.mark.lab

DPU_IP = "192.0.2.10"
NB_IP = "192.0.2.1"
STATIC_NET = "203.0.113.0/24"


def run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return proc


@dataclass
class Dpu:
    """A DPU namespace with its own OVS and an underlay neighbour."""

    ns: str
    nb: str
    rundir: Path

    @property
    def env(self) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.ns,
            "env",
            f"OVS_RUNDIR={self.rundir}",
            f"OVS_LOGDIR={self.rundir}",
        ]

    def vsctl(self, *args: str) -> str:
        return run(*self.env, "ovs-vsctl", f"--db=unix:{self.rundir}/db.sock", *args).stdout

    def sh(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns, *cmd, check=check)

    def setup(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `dpu setup` inside the namespace (the way the lab and a user run it)."""
        cmd = [*self.env, sys.executable, "-m", "dpunet.cli.setup_cmds", "dpu", "setup", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def setup_json(self, *args: str) -> dict[str, Any]:
        proc = self.setup(*args, "-o", "json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        data: dict[str, Any] = json.loads(proc.stdout)
        return data

    def ext_ids(self) -> dict[str, str]:
        out = self.vsctl("--format=json", "--columns=external_ids", "list", "Open_vSwitch")
        return dict(json.loads(out)["data"][0][0][1])

    def ipv4(self, dev: str) -> list[str]:
        out = json.loads(self.sh("ip", "-j", "-4", "addr", "show", "dev", dev).stdout)
        return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link["addr_info"]]

    def routes(self) -> list[str]:
        out = self.sh("ip", "-4", "route", "show").stdout
        return sorted(line.strip() for line in out.splitlines())

    def ping(self, target: str, count: int = 3) -> subprocess.CompletedProcess[str]:
        return self.sh("ping", "-c", str(count), "-i", "0.2", "-W", "1", target, check=False)


def _start_ovs(ns: str, rundir: Path) -> None:
    env = ["ip", "netns", "exec", ns, "env", f"OVS_RUNDIR={rundir}", f"OVS_LOGDIR={rundir}"]
    db = rundir / "conf.db"
    run("ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema")
    run(
        *env,
        "ovsdb-server",
        str(db),
        f"--remote=punix:{rundir}/db.sock",
        f"--pidfile={rundir}/ovsdb-server.pid",
        "--detach",
        f"--log-file={rundir}/ovsdb-server.log",
    )
    run(*env, "ovs-vsctl", f"--db=unix:{rundir}/db.sock", "--no-wait", "init")
    run(
        *env,
        "ovs-vswitchd",
        f"unix:{rundir}/db.sock",
        f"--pidfile={rundir}/ovs-vswitchd.pid",
        "--detach",
        f"--log-file={rundir}/ovs-vswitchd.log",
    )


def _stop_pidfile(path: Path) -> None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dpu() -> Iterator[Dpu]:
    ident = uuid.uuid4().hex[:6]
    ns, nb = f"dpst-{ident}-dpu", f"dpst-{ident}-nb"
    rundir = Path(tempfile.mkdtemp(prefix=f"dpst-{ident}-"))
    made: list[str] = []
    try:
        for name in (ns, nb):
            run("ip", "netns", "add", name)
            made.append(name)
        run(
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "name",
            "p0",
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            nb,
        )
        run(
            "ip",
            "-n",
            ns,
            "link",
            "add",
            "name",
            "pf0hpf",
            "type",
            "veth",
            "peer",
            "name",
            "hostpf",
            "netns",
            nb,
        )
        for cmd in (
            ["ip", "-n", nb, "link", "set", "lo", "up"],
            ["ip", "-n", nb, "addr", "add", f"{NB_IP}/24", "dev", "up0"],
            ["ip", "-n", nb, "link", "set", "up0", "up"],
            # as the lab's underlay must: the userspace datapath forwards what it reads from
            # p0 as is, so the peer may not leave TCP checksums to offload
            ["ip", "netns", "exec", nb, "ethtool", "-K", "up0", "tx", "off"],
            ["ip", "-n", nb, "link", "set", "hostpf", "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", f"{DPU_IP}/24", "dev", "p0"],
            ["ip", "-n", ns, "link", "set", "p0", "up"],
            ["ip", "-n", ns, "route", "add", "default", "via", NB_IP],
            [
                "ip",
                "-n",
                ns,
                "route",
                "add",
                STATIC_NET,
                "via",
                NB_IP,
                "proto",
                "static",
                "metric",
                "50",
            ],
        ):
            run(*cmd)
        _start_ovs(ns, rundir)
        yield Dpu(ns, nb, rundir)
    finally:
        for daemon in ("ovs-vswitchd", "ovsdb-server"):
            _stop_pidfile(rundir / f"{daemon}.pid")
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(rundir, ignore_errors=True)


BASE_ARGS = (
    "--host-node",
    "dpu-host",
    "--uplink",
    "p0",
    "--gw-nexthop",
    NB_IP,
    "--hostname",
    "dpu1",
    "--ovn-remote",
    "tcp:192.0.2.100:6642",
)


def _bridge_layout(dpu: Dpu) -> dict[str, dict[str, str]]:
    """brp0's ports -> {interface type} as `ovs-vsctl show` would list them."""
    out = dpu.vsctl("--format=json", "--columns=name,type", "list", "Interface")
    rows = json.loads(out)["data"]
    ifaces = {name: typ for name, typ in rows}
    ports = dpu.vsctl("list-ports", "brp0").split()
    return {p: {"type": ifaces.get(p, "")} for p in [*ports, "brp0"]}


def test_setup_builds_the_seed_bridge_and_keeps_the_dpu_reachable(dpu: Dpu) -> None:
    dpu.vsctl(
        "set",
        "Open_vSwitch",
        ".",
        "external_ids:unrelated=keep-me",
        "other_config:unrelated=keep-me",
        "external_ids:ovn-bridge-mappings=other:br-other",
    )
    # the neighbour pings the DPU during the whole run: the move must not cut it off
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", dpu.nb, "ping", "-i", "0.02", "-W", "1", "-w", "30", DPU_IP],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(0.5)
        result = dpu.setup_json(*BASE_ARGS)
        time.sleep(0.5)
    finally:
        pinger.send_signal(signal.SIGINT)
        ping_out = pinger.communicate(timeout=10)[0]
    assert result["summary"] != "no change"
    assert all(s["outcome"] in ("changed", "no change") for s in result["steps"]), result["steps"]

    expected_dp = "system" if kernel_has_ovs_datapath() else "netdev"
    assert result["resolved"]["datapath_type"] == expected_dp
    # the seed's layout: Bridge brp0 { Port p0, Port pf0hpf, Port brp0 (internal) }
    assert _bridge_layout(dpu) == {
        "p0": {"type": ""},
        "pf0hpf": {"type": ""},
        "brp0": {"type": "internal"},
    }
    assert dpu.vsctl("list-br").split() == ["brp0"]
    assert dpu.vsctl("get", "Bridge", "brp0", "datapath_type").strip().strip('"') in (
        (expected_dp,) if expected_dp == "netdev" else ("", "system")
    )
    ids = dpu.ext_ids()
    assert ids == {
        "host-k8s-nodename": "dpu-host",
        "ovn-gw-interface": "p0",
        "ovn-gw-nexthop": NB_IP,
        "ovn-encap-ip": DPU_IP,
        "ovn-encap-type": "geneve",
        "ovn-remote": "tcp:192.0.2.100:6642",
        "system-id": "dpu1",
        "hostname": "dpu1",
        "ovn-bridge-mappings": "other:br-other,physnet:brp0",
        **({"ovn-bridge-datapath-type": "netdev"} if expected_dp == "netdev" else {}),
        "unrelated": "keep-me",
    }
    other = dpu.vsctl("get", "Open_vSwitch", ".", "other_config")
    assert 'hw-offload="true"' in other and "unrelated=keep-me" in other

    # the userspace datapath's tap: no checksum left for it to finish (OVS 3.5 makes it
    # with the offload on)
    if expected_dp == "netdev":
        brp0 = run("ip", "netns", "exec", dpu.ns, "ethtool", "-k", "brp0").stdout
        assert "tx-checksumming: off" in brp0, brp0

    # the address and both routes moved to brp0; p0 keeps none
    assert dpu.ipv4("brp0") == [f"{DPU_IP}/24"]
    assert dpu.ipv4("p0") == []
    routes = dpu.routes()
    assert f"default via {NB_IP} dev brp0" in routes, routes
    assert f"{STATIC_NET} via {NB_IP} dev brp0 proto static metric 50" in routes, routes
    assert not [r for r in routes if "dev p0" in r], routes

    # still reachable, both ways, without duplicate deliveries
    ping = dpu.ping(NB_IP)
    assert ping.returncode == 0, ping.stdout
    assert "DUP" not in ping.stdout
    received = int(ping_out.split(" received")[0].rsplit(", ", 1)[1])
    transmitted = int(ping_out.split(" packets transmitted")[0].rsplit("\n", 1)[1])
    assert transmitted > 20 and received >= transmitted - 5, ping_out[-300:]
    assert "DUP" not in ping_out, ping_out[-300:]
    # TCP both ways through brp0 (the userspace datapath's checksum pitfalls)
    for direction in ([], ["-R"]):
        server = subprocess.Popen(
            ["ip", "netns", "exec", dpu.ns, "iperf3", "-s", "-1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            iperf = ["iperf3", "-c", DPU_IP, "-t", "1", "--connect-timeout", "3000", *direction]
            client = run("ip", "netns", "exec", dpu.nb, *iperf, check=False, timeout=20)
        finally:
            server.kill()
            server.wait()
        assert client.returncode == 0 and "receiver" in client.stdout, client.stdout + client.stderr


def test_second_run_changes_nothing(dpu: Dpu) -> None:
    dpu.setup_json(*BASE_ARGS)
    before = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.vsctl("show"), dpu.routes())
    again = dpu.setup_json(*BASE_ARGS)
    assert again["summary"] == "no change"
    assert {s["outcome"] for s in again["steps"]} == {"no change"}, again["steps"]
    after = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.vsctl("show"), dpu.routes())
    assert after == before  # not even next_cfg moved
    table = dpu.setup(*BASE_ARGS)
    assert table.returncode == 0 and "no change" in table.stdout.splitlines()[-1]


def test_dry_run_prints_the_plan_and_touches_nothing(dpu: Dpu) -> None:
    before = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.routes(), dpu.ipv4("p0"))
    plan = dpu.setup_json(*BASE_ARGS, "--dry-run")
    assert plan["dry_run"] is True
    steps = {(s["kind"], s["target"]): s for s in plan["steps"]}
    assert steps[("bridge", "brp0")]["current"] == "absent"
    assert steps[("bridge", "brp0")]["outcome"] == "would change"
    assert steps[("external_ids", "ovn-encap-ip")]["desired"] == DPU_IP
    assert steps[("routes", "brp0")]["current"].startswith(f"default via {NB_IP} dev p0")
    after = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.routes(), dpu.ipv4("p0"))
    assert after == before
    assert dpu.vsctl("list-br").strip() == ""
    text = dpu.setup(*BASE_ARGS, "--dry-run")
    assert text.returncode == 0
    assert "would change" in text.stdout and "dry run:" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--host-node", "h", "--uplink", "p0", "--gw-nexthop", "192.0.2.300"), "--gw-nexthop"),
        (
            ("--host-node", "h", "--uplink", "p0", "--gw-nexthop", NB_IP, "--encap-ip", "x"),
            "--encap-ip",
        ),
        (("--host-node", "h", "--uplink", "nope0", "--gw-nexthop", NB_IP), "nope0"),
        (
            (
                "--host-node",
                "h",
                "--uplink",
                "p0",
                "--gw-nexthop",
                NB_IP,
                "--host-pf-rep",
                "pf9hpf",
            ),
            "pf9hpf",
        ),
        (
            (
                "--host-node",
                "h",
                "--uplink",
                "p0",
                "--gw-nexthop",
                NB_IP,
                "--ovs-db",
                "unix:/nonexistent/db.sock",
            ),
            "cannot reach the OVS database",
        ),
        (
            ("--host-node", "h", "--uplink", "p0", "--gw-nexthop", NB_IP, "--ovn-remote", "6642"),
            "--ovn-remote",
        ),
    ],
)
def test_bad_input_fails_cleanly_and_changes_nothing(
    dpu: Dpu, args: tuple[str, ...], message: str
) -> None:
    before = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.routes(), dpu.ipv4("p0"))
    proc = dpu.setup(*args)
    assert proc.returncode != 0
    assert "error:" in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    after = (dpu.vsctl("--format=json", "list", "Open_vSwitch"), dpu.routes(), dpu.ipv4("p0"))
    assert after == before


def test_refuses_an_uplink_that_belongs_to_another_bridge(dpu: Dpu) -> None:
    dpu.vsctl(
        "add-br",
        "br-other",
        "--",
        "set",
        "bridge",
        "br-other",
        "datapath_type=netdev",
        "--",
        "add-port",
        "br-other",
        "p0",
    )
    proc = dpu.setup(*BASE_ARGS)
    assert proc.returncode != 0 and "already a port of OVS bridge br-other" in proc.stderr
    assert dpu.vsctl("list-br").split() == ["br-other"]
