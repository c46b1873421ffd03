"""`dpunet-node` (full mode) in a dedicated lab `ndag` against real OVS/OVN and the lab's
controller.

The daemon runs as a real process inside cp with a per-test CNI socket and state
directory; the test plays the container runtime: it creates network namespaces
("pods") and runs the CNI shim as a runtime would. Checked: the management port,
pod addressing from the controller, pod <-> gateway / management port / node / pod
traffic through OVN, DEL cleanup, kill -9 between ADD and DEL and during an ADD,
netns removal without DEL, hand-removed state, healing of the management port, the
report of breth0's MAC (cp's gateway MAC follows it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_until

from dpunet.cni.wire import ErrorCode
from dpunet.contract.client import ClientError
from dpunet.lab import daemons, services
from dpunet.lab.lab import down, exec_argv
from dpunet.lab.runner import in_netns, pid_alive, read_pid, run, terminate
from dpunet.lab.topology import CP_BRIDGE, LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "ndag"
HTTP = "127.0.0.1:9479"
MGMT = "ovn-k8s-mp0"


class Lab:
    """The dedicated lab, seen from cp."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.cp = plan.cp

    def vsctl(self, *args: str) -> str:
        return daemons.vsctl(self.plan, self.cp, *args)

    def owned_ports(self) -> dict[str, dict[str, str]]:
        """br-int ports carrying dpunet's marker -> their interface external_ids."""
        names = set(self.vsctl("list-ports", "br-int").split())
        rows = json.loads(
            self.vsctl("--format=json", "--columns=name,external_ids", "list", "Interface")
        )["data"]
        found = {name: dict(ids[1]) for name, ids in rows if name in names}
        return {n: ids for n, ids in found.items() if ids.get("dpunet-owned") == "true"}

    def pod_ports(self) -> dict[str, dict[str, str]]:
        return {n: ids for n, ids in self.owned_ports().items() if n != MGMT}

    def links(self, netns: str | None = None) -> dict[str, dict[str, Any]]:
        out = run(["ip", "-j", "-d", "link", "show"], netns=netns or self.cp.netns).stdout
        return {link["ifname"]: link for link in json.loads(out)}

    def veths(self) -> set[str]:
        return {n for n in self.links() if n.startswith(("dpv", "dpt"))}

    def controller_ports(self) -> list[dict[str, Any]]:
        with services.admin_client(self.plan) as client:
            return [p.model_dump() for p in client.list_ports("cp")]

    def controller_port(self, namespace: str, name: str) -> dict[str, Any] | None:
        with services.admin_client(self.plan) as client:
            try:
                return client.get_port(namespace, name).model_dump()
            except ClientError as exc:
                if exc.status == 404:
                    return None
                raise

    def ping(self, netns: str, ip: str, tries: int = 10) -> bool:
        for _ in range(tries):
            if run(["ping", "-c1", "-W1", ip], netns=netns, check=False).returncode == 0:
                return True
        return False

    def tcp(self, server_netns: str, ip: str, client_netnses: list[str]) -> None:
        """An HTTP GET (TCP through the userspace datapath) from each client to `ip`."""
        server = subprocess.Popen(
            in_netns(server_netns, [sys.executable, "-m", "http.server", "8080", "--bind", ip]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/usr/share/doc",
        )  # fmt: skip
        fetch = (
            "import sys, time, urllib.request\n"
            "deadline = time.monotonic() + 30\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        sys.exit(0 if urllib.request.urlopen('http://{ip}:8080/', timeout=3)"
            ".read() else 1)\n"
            "    except OSError:\n"
            "        time.sleep(0.2)\n"
            "sys.exit(1)\n"
        )
        try:
            for netns in client_netnses:
                proc = run([sys.executable, "-c", fetch], netns=netns, check=False, timeout=60)
                assert proc.returncode == 0, f"TCP {netns} -> {ip}: {proc.stderr}"
        finally:
            server.terminate()
            server.wait(5)

    def http(self, path: str) -> int:
        """Status of GET `path` on the daemon (0 when nothing listens)."""
        code = (
            "import urllib.request, urllib.error\n"
            "try:\n"
            f"    print(urllib.request.urlopen('http://{HTTP}{path}', timeout=5).status)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
            "except OSError:\n"
            "    print(0)\n"
        )
        return int(run([sys.executable, "-c", code], netns=self.cp.netns).stdout)


class NodeAgent:
    """`dpunet-node` as a process inside cp, with its own socket and state directory."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="ndag-", dir="/tmp"))
        self.socket = self.dir / "cni.sock"
        self.state = self.dir / "state"
        self.log_path = self.dir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = exec_argv(
            self.lab.plan,
            "cp",
            [
                sys.executable, "-m", "dpunet.cli.node_agent_cmds",
                "--node", "cp",
                "--controller-url", f"unix:{services.controller_socket(self.lab.plan)}",
                "--token-file", str(services.token_path(self.lab.plan, "cp")),
                "--state-dir", str(self.state),
                "--cni-socket", str(self.socket),
                "--metrics-address", HTTP,
                "--reconcile-interval", "1",
            ],
        )  # fmt: skip
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until("the node agent to be ready", lambda: self.lab.http("/readyz") == 200)

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

    def records(self) -> list[str]:
        d = self.state / "sandboxes"
        return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []

    def log(self) -> str:
        return self.log_path.read_text()

    def cni(
        self, command: str, container: str, netns: str | None, pod: str, **config: Any
    ) -> tuple[int, dict[str, Any] | None]:
        """Run the CNI shim as a runtime would: (exit code, parsed stdout or None)."""
        return self.cni_start(command, container, netns, pod, **config).wait_result()

    def cni_start(
        self, command: str, container: str, netns: str | None, pod: str, **config: Any
    ) -> ShimRun:
        body = {
            "cniVersion": "1.0.0",
            "name": "dpunet",
            "type": "dpunet-cni",
            "socket": str(self.socket),
            "stateDir": str(self.state),
            **config,
        }
        env = {
            "PATH": os.environ["PATH"],
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": "eth0",
            "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_UID=uid-{pod}",
            "CNI_PATH": "/usr/lib/cni",
        }
        if netns:
            env["CNI_NETNS"] = f"/run/netns/{netns}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dpunet.cni.shim"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(body).encode())
        proc.stdin.close()
        return ShimRun(proc)


class ShimRun:
    """A running shim invocation."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def wait_result(self) -> tuple[int, dict[str, Any] | None]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(90)
        return code, json.loads(out) if out.strip() else None


class Pods:
    """Bare network namespaces as pods (removed at the end of the test)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new(self, name: str) -> str:
        netns = f"{LAB}-{name}"
        run(["ip", "netns", "add", netns])
        run(["ip", "link", "set", "lo", "up"], netns=netns)
        self.names.append(netns)
        return netns

    def remove(self, netns: str) -> None:
        run(["ip", "netns", "del", netns], check=False)

    def close(self) -> None:
        for netns in self.names:
            self.remove(netns)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    down(LAB)
    proc = subprocess.run(
        [sys.executable, "-m", "dpunet.cli.main", "lab", "up", "--name", LAB],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"dpunet lab up failed:\n{proc.stdout}\n{proc.stderr}")
    plan = LabPlan(LabSpec(name=LAB))
    # this test runs its own dpunet-node: one the lab may have started must not compete
    for service in services.node_services(plan, plan.cp):
        if service.name == "dpunet-node" and pid_alive(pid := read_pid(service.pidfile)):
            assert pid is not None
            terminate([pid])
    try:
        yield Lab(plan)
    finally:
        down(LAB)


@pytest.fixture
def pods() -> Iterator[Pods]:
    p = Pods()
    yield p
    p.close()


@pytest.fixture
def agent(lab: Lab, pods: Pods) -> Iterator[NodeAgent]:
    """A running node agent; afterwards every pod of the test is released again."""
    a = NodeAgent(lab)
    a.start()
    try:
        yield a
        if a.proc is not None and a.proc.poll() is not None:
            a.start()
        pods.close()
        wait_until("pod resources released", lambda: not a.records() and not lab.pod_ports())
        wait_until("controller ports released", lambda: not lab.controller_ports())
        assert not lab.veths()
    finally:
        a.stop()
        print(a.log())
        shutil.rmtree(a.dir, ignore_errors=True)


def add_pod(agent: NodeAgent, pods: Pods, name: str) -> tuple[str, str, dict[str, Any]]:
    """A pod with a successful ADD: (netns, container id, CNI result)."""
    netns = pods.new(name)
    container = f"{name}-{os.urandom(6).hex()}"
    code, result = agent.cni("ADD", container, netns, name)
    assert code == 0, result
    assert result is not None
    return netns, container, result


def test_management_port_and_pod_traffic(lab: Lab, agent: NodeAgent, pods: Pods) -> None:
    # the management port: an OVS internal port bound to k8s-cp, with .2 and the routes
    mp = lab.owned_ports()[MGMT]
    assert mp["iface-id"] == "k8s-cp" and mp.get("ovn-installed") == "true"
    assert lab.vsctl("get", "Interface", MGMT, "type").strip() == "internal"
    with services.admin_client(lab.plan) as client:
        node = client.get_node("cp").model_dump()
    link = lab.links()[MGMT]
    assert link["address"] == node["mgmt_mac"] and link["mtu"] == node["mtu"]
    addrs = run(["ip", "-4", "-o", "addr", "show", "dev", MGMT], netns=lab.cp.netns).stdout
    assert node["mgmt_ip"] in addrs
    routes = run(["ip", "-4", "route", "show", "dev", MGMT], netns=lab.cp.netns).stdout
    gateway = node["gateway_ip"]
    for cidr in (node["cluster_cidr"], node["service_cidr"]):
        assert f"{cidr} via {gateway}" in routes
    # a tap of the userspace datapath: no checksum left for OVS to finish
    features = run(["ethtool", "-k", MGMT], netns=lab.cp.netns).stdout
    assert "tx-checksumming: off" in features, features

    ns_a, cid_a, result = add_pod(agent, pods, "a")
    port = lab.controller_port("default", "a")
    assert port is not None and port["sandbox"] == cid_a and port["up"] is True
    assert result["interfaces"][0]["mac"] == port["mac"]
    assert result["ips"][0]["address"] == port["ips"][0]
    eth0 = lab.links(ns_a)["eth0"]
    assert eth0["address"] == port["mac"] and eth0["mtu"] == port["mtu"] == 1400
    pod_addrs = run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], netns=ns_a).stdout
    assert port["ips"][0] in pod_addrs
    assert f"default via {gateway}" in run(["ip", "route"], netns=ns_a).stdout

    # the host end: in br-int as the pod's LSP, tx checksum offload off on both ends
    [(host_end, ids)] = lab.pod_ports().items()
    assert ids["iface-id"] == "default_a" and ids["iface-id-ver"] == "uid-a"
    assert host_end.startswith("dpv") and len(host_end) == 15
    for netns, dev in ((lab.cp.netns, host_end), (ns_a, "eth0")):
        features = run(["ethtool", "-k", dev], netns=netns).stdout
        assert "tx-checksumming: off" in features, (dev, features)

    pod_ip_a = port["ips"][0].split("/")[0]
    assert lab.ping(ns_a, gateway), "pod -> its gateway (OVN router port)"
    assert lab.ping(ns_a, node["mgmt_ip"].split("/")[0]), "pod -> management port"
    assert lab.ping(lab.cp.netns, pod_ip_a), "node -> pod through ovn-k8s-mp0"

    ns_b, cid_b, result_b = add_pod(agent, pods, "b")
    pod_ip_b = result_b["ips"][0]["address"].split("/")[0]
    assert pod_ip_b != pod_ip_a
    assert lab.ping(ns_a, pod_ip_b) and lab.ping(ns_b, pod_ip_a), "pod <-> pod on cp"
    lab.tcp(ns_b, pod_ip_b, [ns_a, lab.cp.netns])

    # CHECK with the ADD's result passes
    code, out = agent.cni("CHECK", cid_a, ns_a, "a", prevResult=result)
    assert code == 0, out

    # DEL removes the veth, the OVS port and the controller's port
    for cid, netns, name in ((cid_a, ns_a, "a"), (cid_b, ns_b, "b")):
        code, out = agent.cni("DEL", cid, netns, name)
        assert code == 0, out
        assert lab.controller_port("default", name) is None
        assert "eth0" not in lab.links(netns)
    assert not lab.pod_ports() and not lab.veths() and not agent.records()
    # DEL again: nothing left to do, still a success
    assert agent.cni("DEL", cid_a, ns_a, "a")[0] == 0


def test_the_gateway_mac_follows_breth0(lab: Lab, agent: NodeAgent) -> None:
    """The agent reports breth0's MAC (the lab registered cp with it: nothing changes); a new
    MAC on breth0 becomes cp's gateway MAC, and the old one again after."""

    def gateway_mac() -> str:
        with services.admin_client(lab.plan) as client:
            return client.get_node("cp").gateway_mac

    original = services.link_mac(lab.cp.netns, CP_BRIDGE)
    wait_until("the first report", lambda: "gateway-mac-reported" in agent.log())
    assert gateway_mac() == original
    new = "02:00:00:0c:0c:01"
    lab.vsctl("set", "Bridge", CP_BRIDGE, f'other_config:hwaddr="{new}"')
    try:
        wait_until("cp's gateway MAC follows breth0", lambda: gateway_mac() == new)
    finally:
        lab.vsctl("set", "Bridge", CP_BRIDGE, f'other_config:hwaddr="{original}"')
    wait_until("... and comes back", lambda: gateway_mac() == original)
    # nothing refused, but for a report that met the controller's periodic reload from NB
    # (503, "try again": the agent reports again at its next pass)
    refused = [line for line in agent.log().splitlines() if "gateway-mac-refused" in line]
    assert all("(HTTP 503)" in line for line in refused), refused


def test_kill9_between_add_and_del(lab: Lab, agent: NodeAgent, pods: Pods) -> None:
    ns_a, cid_a, result = add_pod(agent, pods, "a")
    gateway = result["ips"][0]["gateway"]
    agent.kill9()
    agent.start()
    time.sleep(1.5)  # a reconcile pass: the attached pod stays as it is
    assert lab.ping(ns_a, gateway)
    assert agent.records() == [cid_a] and len(lab.pod_ports()) == 1
    code, out = agent.cni("DEL", cid_a, ns_a, "a")
    assert code == 0, out
    assert not lab.pod_ports() and not lab.veths() and not lab.controller_ports()


def test_kill9_during_add_then_restart_releases_everything(
    lab: Lab, agent: NodeAgent, pods: Pods
) -> None:
    netns = pods.new("k")
    # the controller answers only once OVN reports the port up: with ovn-northd frozen
    # the ADD waits with its veth in br-int, and the daemon dies there
    northd = next(d for d in daemons.node_daemons(lab.plan, lab.cp) if d.name == "ovn-northd")
    northd_pid = read_pid(northd.pidfile)
    assert northd_pid is not None
    os.kill(northd_pid, signal.SIGSTOP)
    try:
        shim = agent.cni_start("ADD", "k-0001", netns, "k")
        wait_until("the veth in br-int", lab.pod_ports, timeout=10)
        time.sleep(0.3)
        agent.kill9()
    finally:
        os.kill(northd_pid, signal.SIGCONT)
    code, out = shim.wait_result()
    assert code != 0 and out is not None and out["code"] == ErrorCode.TRY_AGAIN_LATER, out
    agent.start()
    wait_until("the interrupted ADD undone", lambda: not agent.records() and not lab.pod_ports())
    assert not lab.veths()
    wait_until("its port released", lambda: not lab.controller_ports())
    assert "eth0" not in lab.links(netns)
    assert agent.cni("DEL", "k-0001", netns, "k")[0] == 0
    # the runtime retries the ADD: it works
    code, out = agent.cni("ADD", "k-0002", netns, "k")
    assert code == 0, out


def test_netns_deleted_without_del_is_released(lab: Lab, agent: NodeAgent, pods: Pods) -> None:
    ns_a, cid_a, _ = add_pod(agent, pods, "a")
    _, _, result_b = add_pod(agent, pods, "b")
    pods.remove(ns_a)
    wait_until("a's sandbox released", lambda: cid_a not in agent.records(), timeout=10)
    assert lab.controller_port("default", "a") is None
    assert [ids["iface-id"] for ids in lab.pod_ports().values()] == ["default_b"]
    assert len([n for n in lab.veths() if n.startswith("dpv")]) == 1
    assert "sandbox-gone" in agent.log()
    # the other pod is untouched
    assert lab.ping(lab.cp.netns, result_b["ips"][0]["address"].split("/")[0])


def test_lost_record_and_broken_management_port_heal(
    lab: Lab, agent: NodeAgent, pods: Pods
) -> None:
    _, cid_a, _ = add_pod(agent, pods, "a")
    # a record removed by hand while the daemon is down: veth, OVS port and the
    # controller's port are swept once it runs again
    agent.stop()
    (agent.state / "sandboxes" / f"{cid_a}.json").unlink()
    agent.start()
    wait_until("the stale veth swept", lambda: not lab.pod_ports() and not lab.veths())
    wait_until("the orphan port released", lambda: not lab.controller_ports())
    assert "stale-veth-removed" in agent.log() and "orphan-port-released" in agent.log()

    # the management port removed from OVS, then its address removed: both heal
    lab.vsctl("del-port", "br-int", MGMT)
    wait_until("the management port back", lambda: MGMT in lab.owned_ports())
    with services.admin_client(lab.plan) as client:
        node = client.get_node("cp").model_dump()
    run(["ip", "addr", "flush", "dev", MGMT], netns=lab.cp.netns, check=False)
    wait_until(
        "the management address back",
        lambda: (
            node["mgmt_ip"]
            in run(["ip", "-4", "-o", "addr", "show", "dev", MGMT], netns=lab.cp.netns).stdout
        ),
    )
    assert lab.ping(lab.cp.netns, node["gateway_ip"])
    # a new tap (OVS 3.5 makes it with checksum offload on): the offload is off
    features = run(["ethtool", "-k", MGMT], netns=lab.cp.netns).stdout
    assert "tx-checksumming: off" in features, features
