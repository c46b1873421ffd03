"""The data path end to end in the lab: containers get VFs, OVN on the DPU switches them.

Runs against its own lab (`dp`): some tests kill daemons.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from commands import dpunet
from polling import wait_until

from dpunet.cni.wire import ErrorCode
from dpunet.lab import pods, services
from dpunet.lab.lab import Lab, down
from dpunet.lab.runner import LabError, read_pid, run
from dpunet.lab.selftest import ping, pod_checks
from dpunet.lab.topology import LabPlan, LabSpec

pytestmark = pytest.mark.lab

LAB = "dp"


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    down(LAB)
    dpunet("lab", "up", "--name", LAB)
    yield LabPlan(LabSpec(name=LAB))
    down(LAB)


@pytest.fixture
def clean(lab: LabPlan) -> Iterator[LabPlan]:
    """Each test starts and ends without pods, with every daemon running."""
    yield lab
    for pod in pods.load_pods(lab):
        pods.del_pod(lab, pod.name)
    for node, service in (
        ("host1", "dpunet-host"),
        ("dpu1", "dpunet-dpu"),
        ("cp", "dpunet-controller"),
        ("cp", "dpunet-node"),
    ):
        with contextlib.suppress(LabError):  # still running
            services.restart(lab, node, service)


def host_vfs(plan: LabPlan) -> dict[str, dict[str, Any]]:
    """VF PCI address -> what `lab status` shows of it."""
    nic = Lab(plan).status()["nics"][0]
    return {vf["pci"]: vf for vf in nic["vfs"]}


def dpunet_ports(plan: LabPlan) -> set[str]:
    """br-int ports on dpu1 that dpunet-dpu owns."""
    dpu = plan.node("dpu1")
    out = run(
        [
            "ovs-vsctl",
            "--bare",
            "--columns=name",
            "find",
            "Interface",
            "external_ids:dpunet-owned=true",
        ],
        netns=dpu.netns,
        env=plan.node_env(dpu),
    ).stdout
    return set(out.split())


def controller_ports(plan: LabPlan) -> list[dict[str, Any]]:
    with services.admin_client(plan) as client:
        return [p.model_dump() for p in client.list_ports(node="host1")]


def sandboxes(plan: LabPlan) -> set[str]:
    d = plan.node_dir(plan.node("host1")) / "state" / "sandboxes"
    return {p.stem for p in d.glob("*.json")}


def converged(plan: LabPlan, original: dict[str, dict[str, Any]]) -> bool:
    """Nothing leaked, nothing stale: VFs, records, ports, representors agree with the pods."""
    live = pods.load_pods(plan)
    held = {p.pci for p in live}
    vfs = host_vfs(plan)
    for pci, vf in original.items():
        if vf["netdev"] == "ovn-k8s-mp0" or pci in held:
            continue
        if (vfs[pci]["netdev"], vfs[pci]["mac"]) != (vf["netdev"], vf["mac"]):
            return False
    ports = controller_ports(plan)
    ips = [p["ips"][0] for p in ports]
    return (
        sandboxes(plan) == {p.container_id for p in live}
        and {p["sandbox"] for p in ports} == {p.container_id for p in live}
        and len(ips) == len(set(ips))
        and dpunet_ports(plan)
        == {"ovn-k8s-mp0"} | {f"pf0vf{int(p.pci[-1]) - 3}" for p in live if p.pci}
    )


def test_podman_containers_get_vfs_and_pass_the_matrix(clean: LabPlan) -> None:
    plan = clean
    web1 = pods.add_pod(plan, "web1", "host1", "podman")
    web2 = pods.add_pod(plan, "web2", "host1", "podman")
    assert {web1.pci, web2.pci} == {"0000:02:00.4", "0000:02:00.5"}  # VF0 is the mgmt port
    by_sandbox = {p["sandbox"]: p for p in controller_ports(plan)}
    for pod in (web1, web2):
        port = by_sandbox[pod.container_id]
        assert (pod.ip, pod.mac) == (port["ips"][0].split("/")[0], port["mac"])
        link = json.loads(
            pods.pod_exec(plan, pod.name, ["ip", "-j", "addr", "show", "eth0"]).stdout
        )[0]
        assert link["address"] == port["mac"] and link["mtu"] == 1400
        assert f"{pod.ip}/24" in {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]}
    results = pod_checks(plan)
    assert results and all(r.ok for r in results), [r for r in results if not r.ok]
    assert {"pod-pod (same node)", "node-pod (mgmt port)", "pod-ext (gateway SNAT)"} <= {
        r.check for r in results
    }


def test_del_returns_the_vf_with_its_name_and_mac(clean: LabPlan) -> None:
    plan = clean
    before = host_vfs(plan)
    pod = pods.add_pod(plan, "tmp", "host1", "podman")
    assert pod.pci is not None
    assert host_vfs(plan)[pod.pci]["netdev"] is None  # away in the container
    assert "pf0vf1" in dpunet_ports(plan)
    pods.del_pod(plan, "tmp")
    after = host_vfs(plan)[pod.pci]
    assert (after["netdev"], after["mac"]) == (before[pod.pci]["netdev"], before[pod.pci]["mac"])
    assert "pf0vf1" not in dpunet_ports(plan)
    assert controller_ports(plan) == [] and sandboxes(plan) == set()


def test_port_security_drops_a_changed_mac_or_ip(clean: LabPlan) -> None:
    plan = clean
    pod = pods.add_pod(plan, "spoof", "host1", "netns")
    gateway = "198.18.1.1"
    assert ping(pod.netns, gateway)[0]
    run(["ip", "link", "set", "eth0", "address", "0a:58:de:ad:be:ef"], netns=pod.netns)
    assert not ping(pod.netns, gateway)[0], "a spoofed source MAC must be dropped on the DPU"
    run(["ip", "link", "set", "eth0", "address", pod.mac or ""], netns=pod.netns)
    assert ping(pod.netns, gateway)[0]
    run(["ip", "addr", "add", "198.18.1.250/24", "dev", "eth0"], netns=pod.netns)
    spoofed = run(
        ["ping", "-c", "2", "-W", "1", "-I", "198.18.1.250", gateway], netns=pod.netns, check=False
    )
    assert "bytes from" not in spoofed.stdout, "a spoofed source IP must be dropped on the DPU"


def test_exhaustion_is_a_clear_error_and_leaks_nothing(clean: LabPlan) -> None:
    plan = clean
    before = host_vfs(plan)
    for name in ("ex1", "ex2", "ex3"):
        pods.add_pod(plan, name, "host1", "netns")
    with pytest.raises(LabError, match="no free VF"):
        pods.add_pod(plan, "ex4", "host1", "netns")
    assert len(controller_ports(plan)) == 3 and len(sandboxes(plan)) == 3
    assert not [ns for ns in os.listdir("/run/netns") if ns == f"{LAB}-pod-ex4"]
    pods.del_pod(plan, "ex2")
    pods.add_pod(plan, "ex4", "host1", "netns")
    assert converged(plan, before)


def test_netns_deleted_under_a_pod_then_del_recovers_the_vf(clean: LabPlan) -> None:
    plan = clean
    before = host_vfs(plan)
    pod = pods.add_pod(plan, "gone", "host1", "netns")
    run(["ip", "netns", "del", Path(pod.netns).name])  # the container crashed, no DEL
    pods.invoke_cni(plan, plan.node("host1"), "DEL", pod.container_id, pod.netns, pod.name)
    (pods.pods_dir(plan) / "gone.json").unlink()
    wait_until("the VF back under its own name", lambda: converged(plan, before))


def test_a_netns_path_that_cannot_be_entered(clean: LabPlan, tmp_path: Path) -> None:
    """How containerd's `cni-*` netns mounts look to a daemon that cannot see them: a path
    that exists but is an empty file. ADD is refused (code 4) before anything is claimed;
    a pod whose namespace mount vanishes (the kernel returns its VF) is cleaned up by DEL."""
    plan = clean
    host = plan.node("host1")
    before = host_vfs(plan)
    empty = tmp_path / "cni-unenterable"
    empty.touch()
    with pytest.raises(LabError, match=r"code 4\b.*not a network namespace"):
        pods.invoke_cni(plan, host, "ADD", "a" * 64, str(empty), "unenterable")
    assert converged(plan, before)  # the VF never left: back under its name, nothing held

    pod = pods.add_pod(plan, "hidden", "host1", "netns")
    assert pod.pci is not None
    run(["umount", pod.netns])  # the path stays as an empty file; the namespace dies
    wait_until("the VF back in the host", lambda: host_vfs(plan)[pod.pci]["netdev"] is not None)
    pods.invoke_cni(plan, host, "DEL", pod.container_id, pod.netns, pod.name)
    os.unlink(pod.netns)
    (pods.pods_dir(plan) / "hidden.json").unlink()
    assert converged(plan, before)


def test_del_with_a_stale_sandbox_id_does_nothing(clean: LabPlan) -> None:
    plan = clean
    pod = pods.add_pod(plan, "keep", "host1", "netns")
    pods.invoke_cni(plan, plan.node("host1"), "DEL", "0123456789abcdef", pod.netns, pod.name)
    assert ping(pod.netns, "198.18.1.1")[0]
    assert {p["sandbox"] for p in controller_ports(plan)} == {pod.container_id}


def _burst(plan: LabPlan, errors: list[str], node: str = "host1") -> None:
    """8 ADD/DELs on `node` (on host1: its three pod VFs) driven as a runtime drives them:
    a failed ADD is given up (its sandbox DELed), a failed DEL is retried until it works."""
    for i in range(8):
        try:
            pods.add_pod(plan, f"b{i}", node, "netns")
        except LabError as exc:
            errors.append(str(exc))
        if i % 2 == 1:
            for old in pods.load_pods(plan)[:1]:
                _del_until_done(plan, old.name, errors)


def _del_until_done(plan: LabPlan, name: str, errors: list[str]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            pods.del_pod(plan, name)
            return
        except LabError as exc:
            errors.append(str(exc))
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _unexpected_burst_errors(errors: list[str]) -> list[str]:
    """The burst errors that are not "try again later" (11) or "no free VF" (100)."""
    return [e for e in errors if "(code 11)" not in e and "(code 100)" not in e]


def _after_a_kill(
    plan: LabPlan, node: str, errors: list[str], converged_now: Callable[[], bool]
) -> None:
    """What must hold once a killed daemon is back: the burst failed only the way a
    runtime retries, the pods it left work, everything converges without them, and a
    new pod on `node` works."""
    assert not _unexpected_burst_errors(errors), errors
    results = pod_checks(plan)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    for pod in pods.load_pods(plan):
        pods.del_pod(plan, pod.name)
    wait_until("convergence after kill -9", converged_now, timeout=30)
    pods.add_pod(plan, "after", node, "netns")
    results = pod_checks(plan)
    assert all(r.ok for r in results), [r for r in results if not r.ok]


@pytest.mark.parametrize(
    ("node", "service"),
    [("host1", "dpunet-host"), ("dpu1", "dpunet-dpu"), ("cp", "dpunet-controller")],
)
def test_kill9_during_a_burst_converges(clean: LabPlan, node: str, service: str) -> None:
    plan = clean
    before = host_vfs(plan)
    errors: list[str] = []
    burst = threading.Thread(target=_burst, args=(plan, errors))
    burst.start()
    time.sleep(1.0)
    pid = read_pid(plan.node_dir(plan.node(node)) / f"{service}.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    services.restart(plan, node, service)  # returns once the daemon serves again
    burst.join(timeout=300)
    assert not burst.is_alive()
    _after_a_kill(plan, "host1", errors, lambda: converged(plan, before))


def cp_converged(plan: LabPlan) -> bool:
    """On cp: records, controller ports and dpunet's br-int ports match the live pods."""
    cp = plan.cp
    live = {p.container_id for p in pods.load_pods(plan)}
    records = {p.stem for p in (plan.node_dir(cp) / "state" / "sandboxes").glob("*.json")}
    with services.admin_client(plan) as client:
        ports = [p.model_dump() for p in client.list_ports(node="cp")]
    find = ["ovs-vsctl", "--bare", "--columns=name", "find", "Interface"]
    owned = run(
        [*find, "external_ids:dpunet-owned=true"], netns=cp.netns, env=plan.node_env(cp)
    ).stdout.split()
    veths = run(["ip", "-o", "link", "show"], netns=cp.netns).stdout
    return (
        records == live
        and {p["sandbox"] for p in ports} == live
        and len([n for n in owned if n.startswith("dpv")]) == len(live)
        and veths.count(": dpt") == 0  # no pod end left behind in cp
    )


def test_kill9_of_the_full_node_agent_during_a_burst_converges(clean: LabPlan) -> None:
    plan = clean
    errors: list[str] = []
    burst = threading.Thread(target=_burst, args=(plan, errors, "cp"))
    burst.start()
    time.sleep(1.0)
    pid = read_pid(plan.node_dir(plan.cp) / "dpunet-node.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    services.restart(plan, "cp", "dpunet-node")
    burst.join(timeout=300)
    assert not burst.is_alive()
    _after_a_kill(plan, "cp", errors, lambda: cp_converged(plan))


def _cni(
    plan: LabPlan, command: str, env_extra: dict[str, str], config: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Run the installed shim as a runtime would; (exit code, parsed stdout)."""
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_PATH": str(services.shim_dir(plan)),
        **env_extra,
    }
    proc = subprocess.run(
        [str(services.shim_dir(plan) / "dpunet-cni")],
        input=json.dumps(config), env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def test_cni_verbs_against_the_real_host_agent(clean: LabPlan) -> None:
    plan = clean
    host = plan.node("host1")
    conf = pods.plugin_config(plan, host)
    pod = pods.add_pod(plan, "verbs", "host1", "netns")
    attachment = {
        "CNI_CONTAINERID": pod.container_id, "CNI_NETNS": pod.netns, "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=verbs",
    }  # fmt: skip
    add_result = json.loads(
        (plan.node_dir(host) / "state" / "sandboxes" / f"{pod.container_id}.json").read_text()
    )["port"]
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": add_result["mac"], "sandbox": pod.netns}],
        "ips": [
            {"address": add_result["ips"][0], "gateway": add_result["gateways"][0], "interface": 0}
        ],
    }
    assert _cni(plan, "CHECK", attachment, {**conf, "prevResult": prev})[0] == 0
    assert _cni(plan, "STATUS", {}, {**conf, "cniVersion": "1.1.0"})[0] == 0
    run(["ip", "addr", "flush", "dev", "eth0"], netns=pod.netns)
    code, err = _cni(plan, "CHECK", attachment, {**conf, "prevResult": prev})
    assert code != 0 and err["code"] == ErrorCode.CHECK_FAILED and "lacks address" in err["details"]
    # GC with no valid attachments releases the pod's VF and port.
    gc_conf = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []}
    assert _cni(plan, "GC", {}, gc_conf)[0] == 0
    assert controller_ports(plan) == [] and sandboxes(plan) == set()
    (pods.pods_dir(plan) / "verbs.json").unlink()
    run(["ip", "netns", "del", Path(pod.netns).name])


def test_cni_with_the_host_agent_down(clean: LabPlan) -> None:
    plan = clean
    conf = pods.plugin_config(plan, plan.node("host1"))
    pod = pods.add_pod(plan, "down", "host1", "netns")
    pid = read_pid(plan.node_dir(plan.node("host1")) / "dpunet-host.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    base = {"CNI_NETNS": pod.netns, "CNI_IFNAME": "eth0"}
    code, err = _cni(plan, "ADD", {**base, "CNI_CONTAINERID": "feedface"}, conf)
    assert (code, err["code"]) == (1, 11)
    code, err = _cni(plan, "DEL", {**base, "CNI_CONTAINERID": pod.container_id}, conf)
    assert (code, err["code"]) == (1, 11)  # a record exists: the VF must still be returned
    assert (
        _cni(plan, "DEL", {**base, "CNI_CONTAINERID": "feedface"}, conf)[0] == 0
    )  # nothing to undo
    code, err = _cni(plan, "STATUS", {}, {**conf, "cniVersion": "1.1.0"})
    assert (code, err["code"]) == (1, 50)
    services.restart(plan, "host1", "dpunet-host")
    wait_until(
        "the host agent serving again",
        lambda: _cni(plan, "STATUS", {}, {**conf, "cniVersion": "1.1.0"})[0] == 0,
    )
