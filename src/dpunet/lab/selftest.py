"""Checks that a lab's wiring works: the underlay, the DPU bridge and Geneve tunnels.

The Geneve check plugs a throwaway OVN port on cp and one on each DPU (a veth
whose far end sits in a probe namespace), waits until OVN reports both up, pings
across the tunnel and removes everything it made, whatever the outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dpunet.contract.lsp import REQUESTED_CHASSIS
from dpunet.lab import daemons, gwcheck, pods, svc
from dpunet.lab.checks import CheckResult, ping
from dpunet.lab.runner import LabError, ip, run, wait_for
from dpunet.lab.topology import EXT_ADDRESS, LabPlan, Node

SELFTEST_SWITCH = "dpunet-selftest"
SELFTEST_SUBNET = "198.18.255"  # inside the lab's cluster range, never used by node subnets
GENEVE_MTU = 1400


def underlay_checks(plan: LabPlan) -> list[CheckResult]:
    """Every node with an underlay address reaches the external router at the next hop."""
    results = []
    for node in plan.nodes:
        if node.underlay_ip is None or node is plan.ext:
            continue
        ok, detail = ping(node.netns, str(EXT_ADDRESS))
        via = " (via PF -> pf0hpf -> brp0)" if node.peer and node.name.startswith("host") else ""
        results.append(
            CheckResult(
                "underlay" + via, f"{node.name} {node.underlay_ip}", str(EXT_ADDRESS), ok, detail
            )
        )
    return results


@contextlib.contextmanager
def _probe_port(plan: LabPlan, node: Node, index: int) -> Iterator[str]:
    """A veth on `node`'s br-int bound to LSP `selftest-<node>`; yields the probe netns."""
    probe_ns = f"{plan.name}-probe-{node.name}"
    ovs_port = f"prb-{node.name}"
    lsp = f"selftest-{node.name}"
    mac = f"0a:58:c6:12:ff:{index:02x}"
    address = f"{SELFTEST_SUBNET}.{index}"
    try:
        ip("netns", "add", probe_ns)
        ip(
            "link", "add", "eth0", "netns", probe_ns, "mtu", str(GENEVE_MTU),
            "type", "veth", "peer", "name", ovs_port, "netns", node.netns,
        )  # fmt: skip
        for ns, dev in ((probe_ns, "eth0"), (node.netns, ovs_port)):
            run(["ethtool", "-K", dev, "tx", "off"], netns=ns)
            ip("link", "set", dev, "up", netns=ns)
        ip("link", "set", "eth0", "address", mac, netns=probe_ns)
        ip("addr", "add", f"{address}/24", "dev", "eth0", netns=probe_ns)
        daemons.nbctl(plan, "--may-exist", "ls-add", SELFTEST_SWITCH)
        daemons.nbctl(
            plan, "--may-exist", "lsp-add", SELFTEST_SWITCH, lsp,
            "--", "lsp-set-addresses", lsp, f"{mac} {address}",
            "--", "lsp-set-options", lsp, f"{REQUESTED_CHASSIS}={node.name}",
        )  # fmt: skip
        daemons.vsctl(
            plan, node, "add-port", "br-int", ovs_port,
            "--", "set", "Interface", ovs_port, f"external_ids:iface-id={lsp}",
        )  # fmt: skip
        wait_for(
            f"OVN port {lsp} up on {node.name}",
            lambda: daemons.nbctl(plan, "lsp-get-up", lsp).strip() == "up",
            timeout=20,
        )
        yield probe_ns
    finally:
        daemons.vsctl(plan, node, "--if-exists", "del-port", "br-int", ovs_port)
        daemons.nbctl(plan, "--if-exists", "lsp-del", lsp)
        ip("netns", "del", probe_ns, check=False)


def geneve_checks(plan: LabPlan) -> list[CheckResult]:
    """A throwaway OVN port on cp pings one on each DPU through a Geneve tunnel."""
    results = []
    try:
        with _probe_port(plan, plan.cp, 1) as cp_probe:
            for i, pair in enumerate(plan.pairs, start=2):
                target = f"{SELFTEST_SUBNET}.{i}"
                try:
                    with _probe_port(plan, pair.dpu, i):
                        ok, detail = ping(cp_probe, target)
                except LabError as exc:
                    ok, detail = False, str(exc)
                results.append(
                    CheckResult(
                        "geneve", "cp (OVN port)", f"{pair.dpu.name} (OVN port)", ok, detail
                    )
                )
    except LabError as exc:
        results.append(CheckResult("geneve", "cp (OVN port)", "-", False, str(exc)))
    finally:
        daemons.nbctl(plan, "--if-exists", "ls-del", SELFTEST_SWITCH)
    return results


def pod_checks(plan: LabPlan) -> list[CheckResult]:
    """The connectivity matrix of the lab's pods: pod <-> pod on the same node and across
    nodes, node -> pod through its management port, pod -> ext through the gateway.

    `ext` has no route to the cluster CIDR, so a reply to a pod proves the gateway
    SNATed the pod's traffic to its underlay address.
    """
    results = []
    all_pods = [p for p in pods.load_pods(plan) if p.ip]
    for src in all_pods:
        for dst in all_pods:
            if src.name == dst.name:
                continue
            where = "same node" if src.node == dst.node else "across nodes"
            ok, detail = ping(src.netns, dst.ip or "", count=2)
            results.append(
                CheckResult(
                    f"pod-pod ({where})",
                    f"{src.name}@{src.node}",
                    f"{dst.name} {dst.ip}",
                    ok,
                    detail,
                )
            )
    for pod in all_pods:
        node = plan.node(pod.node)
        ok, detail = ping(node.netns, pod.ip or "", count=2)
        results.append(
            CheckResult(
                "node-pod (mgmt port)",
                f"{node.name} ovn-k8s-mp0",
                f"{pod.name} {pod.ip}",
                ok,
                detail,
            )
        )
        ok, detail = ping(pod.netns, str(EXT_ADDRESS), count=2)
        results.append(
            CheckResult(
                "pod-ext (gateway SNAT)", f"{pod.name} {pod.ip}", f"ext {EXT_ADDRESS}", ok, detail
            )
        )
    return results


def service_checks(plan: LabPlan) -> list[CheckResult]:
    """The services' checks (svc.py), when the lab has services."""
    return svc.checks(plan)


def run_checks(plan: LabPlan) -> list[CheckResult]:
    """All lab checks: wiring, the pods' connectivity matrix, the shared gateway (labs
    with dpunet's daemons), then services."""
    gateway = [] if plan.spec.bare else gwcheck.gateway_checks(plan)
    wiring = underlay_checks(plan) + geneve_checks(plan)
    return wiring + pod_checks(plan) + gateway + service_checks(plan)
