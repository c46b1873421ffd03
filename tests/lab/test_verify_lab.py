"""`dpunet verify offload|topology` and `dpunet topology` in a lab of their own: pods on
VFs, real OVS userspace datapath flows, a layout broken on purpose and repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from polling import wait_until

from dpunet.lab import daemons, services
from dpunet.lab.lab import down
from dpunet.lab.pods import add_pod, load_pods
from dpunet.lab.runner import pid_alive, read_pid
from dpunet.lab.runner import run as lab_run
from dpunet.lab.selftest import ping
from dpunet.lab.topology import LabPlan, LabSpec
from dpunet.openflow import gateway as gw
from dpunet.openflow.client import OpenFlowConnection

pytestmark = pytest.mark.lab

LAB = "vfyt"
PODS = ("vfya", "vfyb")


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"dpunet.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def lab() -> Iterator[LabPlan]:
    """A lab with two pods on host1's VFs; removed afterwards."""
    down(LAB)
    proc = run("main", "lab", "up", "--name", LAB)
    if proc.returncode != 0:
        down(LAB)
        pytest.fail(f"lab up failed:\n{proc.stdout}\n{proc.stderr}")
    plan = LabPlan(LabSpec(name=LAB))
    try:
        for name in PODS:
            add_pod(plan, name, "host1", "netns")
        yield plan
    finally:
        down(LAB)


def test_offload_on_the_userspace_datapath(lab: LabPlan) -> None:
    a, b = (p for p in load_pods(lab) if p.name in PODS)
    ok, detail = ping(a.netns, b.ip or "", count=3)
    assert ok, detail
    proc = run("verify_cmds", "offload", "--lab", lab.name, "--node", "dpu1", "-o", "json")
    assert proc.returncode == 1, proc.stderr  # nothing is offloaded on this datapath
    (report,) = json.loads(proc.stdout)
    assert report["datapath"] == "netdev" and not report["offload_possible"]
    assert "userspace (netdev) datapath" in report["notes"][0]
    pods = {p["pod"]: p for p in report["pods"]}
    for pod in (a, b):
        entry = pods[f"default/{pod.name}"]
        assert entry["representor"].startswith("pf0vf")
        assert entry["flows_ovs"] >= 1 and entry["packets_software"] >= 1
        assert entry["flows_hardware"] == 0
    between = [
        f for f in report["flows"] if set(f["pods"]) == {f"default/{a.name}", f"default/{b.name}"}
    ]
    assert between and all("userspace (netdev) datapath" in f["reasons"][0] for f in between)
    table = run("verify_cmds", "offload", "--lab", lab.name)
    assert "nothing can be offloaded" in table.stdout and f"default/{a.name}" in table.stdout


def test_topology_reports_deviations_and_recovers(lab: LabPlan) -> None:
    proc = run("verify_cmds", "topology", "--lab", lab.name, "-o", "json")
    assert proc.returncode == 0, proc.stdout
    checks = {f["check"] for f in json.loads(proc.stdout)["findings"]}
    assert {f"representor of default_{p}" for p in PODS} <= checks
    assert "geneve tunnel to cp (192.0.2.10)" in checks
    dpu = lab.node("dpu1")
    daemons.vsctl(lab, dpu, "set", "Open_vSwitch", ".", "other_config:hw-offload=false")
    daemons.vsctl(lab, dpu, "add-port", "br-int", "nosuchdev")
    try:
        broken = run("verify_cmds", "topology", "--lab", lab.name, "--node", "dpu1", "-o", "json")
        assert broken.returncode == 1
        bad = {f["check"]: f["fix"] for f in json.loads(broken.stdout)["findings"] if not f["ok"]}
        assert set(bad) == {"other_config:hw-offload=true", "interface nosuchdev works"}
        assert "other_config:hw-offload=true" in bad["other_config:hw-offload=true"]
        assert "del-port nosuchdev" in bad["interface nosuchdev works"]
        table = run("verify_cmds", "topology", "--lab", lab.name)
        assert "2 deviation(s)" in table.stdout
    finally:
        daemons.vsctl(lab, dpu, "--if-exists", "del-port", "br-int", "nosuchdev")
        daemons.vsctl(lab, dpu, "set", "Open_vSwitch", ".", "other_config:hw-offload=true")
    assert run("verify_cmds", "topology", "--lab", lab.name).returncode == 0


GATEWAY_CHECK = "shared gateway flows on brp0"


def gateway_finding(lab: LabPlan, *args: str) -> tuple[int, dict[str, object]]:
    """(exit code, the shared gateway finding) of `verify topology` on dpu1."""
    proc = run("verify_cmds", "topology", "--lab", lab.name, "--node", "dpu1", *args, "-o", "json")
    findings = json.loads(proc.stdout)["findings"]
    return proc.returncode, next(f for f in findings if f["check"] == GATEWAY_CHECK)


def stop_agent(lab: LabPlan, node: str, name: str) -> None:
    daemon = next(d for d in services.node_services(lab, lab.node(node)) if d.name == name)
    pid = read_pid(daemon.pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_until(f"{name} stopped", lambda: not pid_alive(pid))


def restart_dpu_agent(lab: LabPlan) -> None:
    stop_agent(lab, "dpu1", "dpunet-dpu")
    services.restart(lab, "dpu1", "dpunet-dpu")


def test_topology_checks_the_flows_with_the_agents_gateway_settings(
    lab: LabPlan, tmp_path: Path
) -> None:
    """The shared gateway's flows are compared with the set the agent wants with its own
    zone and NodePort range: those of --agent-config, else of the lab's dpunet-dpu config."""
    code, finding = gateway_finding(lab)
    assert code == 0 and finding["ok"], finding
    assert "zone 64000, NodePorts 30000-32767" in str(finding["found"])
    other = tmp_path / "dpu.yaml"
    other.write_text(yaml.safe_dump({"gateway": {"zone": 64001, "node_port_range": "31000-31999"}}))
    code, finding = gateway_finding(lab, "--agent-config", str(other))
    assert code == 1 and not finding["ok"], finding  # the agent runs with the defaults
    assert "zone 64001, NodePorts 31000-31999" in str(finding["found"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: {zone: 0}\n")
    refused = run("verify_cmds", "topology", "--lab", lab.name, "--agent-config", str(bad))
    assert refused.returncode != 0 and "gateway.zone" in refused.stdout + refused.stderr
    # the agent itself with those settings: the lab's config is what verify reads
    config = services.config_path(lab, lab.node("dpu1"), "dpunet-dpu")
    original = config.read_text()
    try:
        config.write_text(original + other.read_text())
        restart_dpu_agent(lab)
        wait_until("dpunet-dpu's flows with zone 64001", lambda: gateway_finding(lab)[1]["ok"], 40)
        assert "zone 64001, NodePorts 31000-31999" in str(gateway_finding(lab)[1]["found"])
    finally:
        config.write_text(original)
        restart_dpu_agent(lab)
    wait_until("the default flows back", lambda: gateway_finding(lab)[0] == 0, 40)


BRETH0_CHECK = "shared gateway flows on breth0"


def cp_findings(lab: LabPlan) -> tuple[int, dict[str, dict[str, object]]]:
    """(exit code, findings by check) of `verify topology` on the full node cp."""
    proc = run("verify_cmds", "topology", "--lab", lab.name, "--node", "cp", "-o", "json")
    return proc.returncode, {f["check"]: f for f in json.loads(proc.stdout)["findings"]}


def test_topology_checks_breth0_on_the_full_node(lab: LabPlan) -> None:
    """cp's breth0 holds dpunet-node's flows (the same builder, LOCAL as the host); one
    deleted by hand while dpunet-node is stopped is a deviation until it runs again."""
    code, found = cp_findings(lab)
    assert code == 0, found
    assert set(found) == {"bridge breth0 exists", BRETH0_CHECK}
    assert "GR and host share 192.0.2.10" in str(found[BRETH0_CHECK]["found"])
    assert "zone 64000" in str(found[BRETH0_CHECK]["found"])
    stop_agent(lab, "cp", "dpunet-node")
    try:
        with OpenFlowConnection(lab.ovs_dir(lab.cp) / "breth0.mgmt") as conn:
            victim = conn.flows(gw.COOKIE, gw.COOKIE_MASK)[0]
        argv = ["ovs-ofctl", "-O", "OpenFlow13", "del-flows", "breth0"]
        env = lab.node_env(lab.cp)
        lab_run([*argv, f"cookie={victim.cookie:#x}/-1"], netns=lab.cp.netns, env=env)
        code, found = cp_findings(lab)
        assert code == 1, found
        finding = found[BRETH0_CHECK]
        assert not finding["ok"] and "1 missing, 0 stale" in str(finding["found"])
        assert "dpunet-node" in str(finding["fix"])
        table = run("verify_cmds", "topology", "--lab", lab.name)
        assert table.returncode == 1 and "1 deviation(s)" in table.stdout
    finally:
        services.restart(lab, "cp", "dpunet-node")
    wait_until("dpunet-node repairs breth0", lambda: cp_findings(lab)[0] == 0, 40)


def test_topology_picture(lab: LabPlan, tmp_path: Path) -> None:
    svg = tmp_path / "lab.svg"
    proc = run("topology_cmds", "--lab", lab.name, "--output-file", str(svg))
    assert proc.returncode == 0, proc.stderr
    for pod in PODS:
        assert f"pod default/{pod}" in proc.stdout
    assert "br-int" in proc.stdout and "ovn-cp-0" in proc.stdout
    text = svg.read_text()
    assert "<svg" in text and "default/vfya" in text and "pf0hpf" in text
    data = json.loads(run("topology_cmds", "--lab", lab.name, "-o", "json").stdout)
    (host,) = data["hosts"]
    assert {vf["pod"] for vf in host["vfs"] if vf["pod"]} == {f"default/{p}" for p in PODS}
    bad = run("topology_cmds", "--lab", lab.name, "--node", "nosuch")
    assert bad.returncode == 1 and "no dpu-host or DPU node" in bad.stderr
