"""Kubernetes mode end to end in the lab (`k8sl`, a `--bare` lab: OVS/OVN, the emulated NIC,
no dpunet daemons), with kmock as the API server and the fake kubelet over real gRPC.

The scripted cluster is the seed's: Node objects `cp` (control plane), `host1`
(`k8s.ovn.org/dpu-host=`, its management VF and node address as annotations; no chassis and no
gateway MAC: its DPU registers both; nor has the full node cp a gateway MAC: its dpunet-node
reports breth0's, which the controller writes as `dpunet.io/gateway-mac`, and only then
creates GR_cp, so that no router ever answers for cp's IP with another MAC: a monitor of
NB's router ports from before the controller started sees rtoe-GR_cp only with breth0's
MAC, and dpu1's ovn-controller, whose SB connection goes to cp's IP, never loses it) and
`dpu1` (`k8s.ovn.org/dpu=`). dpunet runs as the rendered
manifests run it: the controller in Kubernetes mode against kmock and the lab's OVN NB and
SB; `dpunet-dpu` on dpu1, registering itself as host1's chassis (the controller checks SB
and writes the Node's `k8s.ovn.org/node-chassis-id`) and renewing its DPU lease, with its
own token (the controller's `dpu_token_file`);
`dpunet-host` on host1 with the device plugin (the seed's `sriovdp-config`, VF1 and VF2)
registered with the fake kubelet, and a ServiceAccount token that TokenReview binds to
host1 through its agent pod (Kubernetes 1.25, the seed's version, has no node claim);
`dpunet-node` on cp with a node-bound token. Pods are created in kmock with the seed's
resource request, admitted by the fake kubelet (GetPreferredAllocation, Allocate, then
PodResources) and attached by executing the plugin the NAD's `type` names (the seed's
`ovn-k8s-cni-overlay`, the shim's second name) as multus delegates to it: the rendered
NetworkAttachmentDefinition's config (the seed's, unchanged) plus the allocated `deviceID`, the
`K8S_POD_*` CNI_ARGS, and the lab's `socket`/`stateDir` (the lab keeps them under its run
directory, the DaemonSet at the defaults). Checked: what kmock recorded, OVN NB, the
connectivity matrix, NetworkPolicy and Namespace objects changing what reaches a VF pod,
release when a pod is deleted without any CNI DEL, DPU registrations refused (a wrong
chassis, tunnel endpoint or node), DPU health (the DPU agent stopped: CNI STATUS 50 and
Unhealthy VFs; started: both recover), and least privilege: the RBAC rules the rendered
manifests grant are exactly those the controller's requests to kmock needed.

Controller runs in the test's namespace (kmock listens on its loopback) and serves the
agents on a unix socket. Tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_harness import ControllerProc, wait_until
from dpu_health import NOTICED_WITHIN, cni_status, stop_daemon
from kube_harness import CONTROLLER_TOKEN, SEED_RESOURCE, KubeMock, granted
from seed import SEED_NAD_CONFIG, SEED_POOLS

from dpunet.cni.wire import ErrorCode
from dpunet.contract.api import DpuRegistration
from dpunet.contract.client import ClientError, ControllerClient
from dpunet.contract.lsp import gateway_external_port
from dpunet.deploy.manifests import DeployValues, network_attachment_definition, render
from dpunet.host.kubelet.deviceplugin import env_name
from dpunet.lab import daemons, services
from dpunet.lab.daemons import Daemon
from dpunet.lab.lab import down
from dpunet.lab.runner import ip, run
from dpunet.lab.selftest import ping
from dpunet.lab.topology import (
    CP_BRIDGE,
    EXT_ADDRESS,
    LAB_CLUSTER_CIDR,
    LAB_JOIN_SUBNET,
    LAB_SERVICE_CIDR,
    POD_MTU,
    SB_PORT,
    LabPlan,
    LabSpec,
    Node,
)
from fakekubelet import FakeKubelet

pytestmark = pytest.mark.lab

LAB = "k8sl"
NS = "dpunet"
AUD = ["dpunet"]
POD_NS = "ovn-kubernetes"  # the seed's ovs-offload-pod1
HOST_SA = f"system:serviceaccount:{NS}:dpunet-host"
NODE_SA = f"system:serviceaccount:{NS}:dpunet-node"
HOST_AGENT_POD = ("dpunet-host-7xk2p", "uid-dpunet-host-7xk2p")
GHOST_TOKEN = secrets.token_urlsafe(24)  # a DPU token of a chassis SB does not have
DPU_COMMAND = ["dpu", "run", "--log-level", "info"]
DPUNET = [sys.executable, "-m", "dpunet.cli.main"]
CHASSIS_ANNOTATION = "k8s.ovn.org/node-chassis-id"
GATEWAY_MAC_ANNOTATION = "dpunet.io/gateway-mac"


@dataclass
class K8sPod:
    """A pod of the scripted cluster and what its attachment gave it."""

    namespace: str
    name: str
    uid: str
    node: str
    sandbox: str
    netns: str
    pci: str | None = None
    ip: str | None = None
    mac: str | None = None
    gateway: str | None = None

    @property
    def lsp(self) -> str:
        return f"{self.namespace}_{self.name}"


@dataclass
class Cluster:
    """The lab, the API server, kubelet and the controller of the scripted cluster."""

    plan: LabPlan
    kube: KubeMock
    kubelet: FakeKubelet
    ctl: ControllerProc
    host_token: str
    node_token: str
    dpu_settings: dict[str, Any]
    pods: dict[str, K8sPod]
    router_ports: Path  # what an NB monitor of Logical_Router_Port saw (JSON lines)
    sb_log_mark: int  # dpu1's ovn-controller log size before the controller started

    def kubelet_call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run a FakeKubelet coroutine method on its loop (kmock's)."""
        return self.kube.call(method(*args))

    def devices(self) -> dict[str, str]:
        return self.kubelet.devices(SEED_RESOURCE)


# ------------------------------------------------------------------------------ fixtures
def _seed_nodes(kube: KubeMock, plan: LabPlan) -> None:
    pair = plan.pairs[0]
    kube.node(
        plan.cp.name,
        str(plan.cp.underlay_ip),
        {"node-role.kubernetes.io/control-plane": ""},
        **{"k8s.ovn.org/node-primary-ifaddr": _ifaddr(plan, plan.cp)},
    )
    kube.node(
        pair.host.name,
        str(pair.host.underlay_ip),
        {"k8s.ovn.org/dpu-host": ""},
        **{
            "k8s.ovn.org/node-primary-ifaddr": _ifaddr(plan, pair.host),
            "dpunet.io/mgmt-port": json.dumps({"pf_mac": pair.pf_mac(plan.lab_id), "vf_num": 0}),
        },
    )
    kube.node(pair.dpu.name, str(pair.dpu.underlay_ip), {"k8s.ovn.org/dpu": ""})


def _ifaddr(plan: LabPlan, node: Node) -> str:
    """The node's address in OVN-Kubernetes' annotation format (its gateway router shares
    it)."""
    return json.dumps({"ipv4": f"{plan.gateway_ip(node)}/{plan.underlay_prefix}"})


def _monitor_router_ports(plan: LabPlan, out: Path) -> subprocess.Popen[bytes]:
    """`ovsdb-client monitor` of NB's Logical_Router_Port names and MACs into `out`, from
    now on (started before the controller, so it sees every router port it writes)."""
    nb = f"unix:{plan.ovn_dir(plan.cp)}/ovnnb_db.sock"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            ["ovsdb-client", "--format=json", "monitor", nb, "OVN_Northbound",
             "Logical_Router_Port", "name,mac"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        proc.wait(1.0)  # connected long before the controller, which takes seconds to start
    except subprocess.TimeoutExpired:
        return proc
    raise AssertionError(f"ovsdb-client monitor ended: {out.read_text()}")


def _seen_macs(c: Cluster, port: str) -> list[str]:
    """Every MAC the NB monitor saw `port` with (inserted or changed), in order."""
    seen = []
    for line in c.router_ports.read_text().splitlines():
        if not line.startswith("{"):
            continue  # not an update (a message of ovsdb-client's)
        update = json.loads(line)
        head = update["headings"]
        for row in update["data"]:
            cells = dict(zip(head, row, strict=True))
            if cells.get("action") in ("initial", "insert", "new") and cells["name"] == port:
                seen.append(cells["mac"])
    return seen


def _ovn_controller_log(plan: LabPlan) -> Path:
    return plan.ovn_dir(plan.node("dpu1")) / "ovn-controller.log"


def _start_agent(
    plan: LabPlan, node: Node, name: str, command: list[str], settings: dict[str, Any]
) -> None:
    """A dpunet daemon in `node`'s namespace with this config; waits until it is ready."""
    d = plan.node_dir(node)
    d.mkdir(parents=True, exist_ok=True)
    config = d / f"{name}.yaml"
    config.write_text(yaml.safe_dump(settings))
    daemon = Daemon(node.name, name, d / f"{name}.pid", d / f"{name}.log")
    args = [*command, "--config", str(config)] if settings else command
    services.spawn(plan, node, daemon, args)
    services.wait_ready(plan, node, daemon)


def _private_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def _agent_settings(plan: LabPlan, node: Node, ctl: ControllerProc, token: str) -> dict[str, Any]:
    d = plan.node_dir(node)
    return {
        "node": node.name,
        "controller_url": f"unix:{ctl.socket}",
        "token_file": str(_private_file(d / "sa-token", token + "\n")),
        "state_dir": str(d / "state"),
        "cni_socket": str(d / "cni.sock"),
        "reconcile_interval": 1.0,
        "metrics_address": None,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    down(LAB)
    proc = subprocess.run(
        [*DPUNET, "lab", "up", "--name", LAB, "--bare"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = LabPlan(LabSpec(name=LAB, bare=True))
    kube = KubeMock()
    ctl: ControllerProc | None = None
    kubelet: FakeKubelet | None = None
    router_ports = tmp_path_factory.mktemp("k8sl-nb") / "router-ports.jsonl"
    monitor = _monitor_router_ports(plan, router_ports)
    sb_log_mark = _ovn_controller_log(plan).stat().st_size
    try:
        _seed_nodes(kube, plan)
        host_token, node_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        agent_pod, agent_uid = HOST_AGENT_POD
        kube.pod(NS, agent_pod, agent_uid, "host1", vfs=0)
        kube.user(
            host_token,
            HOST_SA,
            AUD,
            **{
                "authentication.kubernetes.io/pod-name": agent_pod,
                "authentication.kubernetes.io/pod-uid": agent_uid,
            },
        )
        kube.user(node_token, NODE_SA, AUD, **{"authentication.kubernetes.io/node-name": "cp"})
        kube.user("tok-admin", "kubernetes-admin", AUD)
        # the DPU's own token: no Kubernetes credentials, a line of the dpu_token_file
        dpu_token = secrets.token_urlsafe(24)
        dpu_tokens = _private_file(
            tmp_path_factory.mktemp("k8sl-dpu") / "dpu-tokens",
            f"{dpu_token} dpu:dpu1\n{GHOST_TOKEN} dpu:ghost\n",  # ghost: no such chassis
        )

        async def new_kubelet() -> FakeKubelet:
            fake = FakeKubelet(plan.run_dir / "kubelet")
            await fake.start()
            return fake

        kubelet = kube.call(new_kubelet())
        ctl = ControllerProc(
            [f"unix:{plan.ovn_dir(plan.cp)}/ovnnb_db.sock"],
            sb_remotes=[f"unix:{plan.ovn_dir(plan.cp)}/ovnsb_db.sock"],
            mode="kubernetes",
            kubeconfig=str(kube.kubeconfig(tmp_path_factory.mktemp("k8sl") / "kubeconfig")),
            k8s_namespace=NS,
            k8s_admin_users=["kubernetes-admin"],
            k8s_next_hop=str(EXT_ADDRESS),
            dpu_token_file=str(dpu_tokens),
            dpu_lease_duration=services.DPU_LEASE_DURATION,
            cluster_cidr=LAB_CLUSTER_CIDR,
            service_cidr=LAB_SERVICE_CIDR,
            join_subnet=LAB_JOIN_SUBNET,
            node_prefix=24,
            mtu=POD_MTU,
            wait_for_up=True,
            reconcile_interval=2,
        ).start()
        services.write_cni_config(plan, plan.cp)  # installs the dpunet-cni launcher
        pair = plan.pairs[0]
        wait_until("cp registered from its Node", lambda: "k8s-cp" in lsps(plan))
        assert "k8s-host1" not in lsps(plan)  # no chassis yet: its DPU has not registered
        dpu_settings = {
            "controller_url": f"unix:{ctl.socket}",
            "token_file": str(_private_file(plan.node_dir(pair.dpu) / "token", dpu_token)),
            "lease_interval": services.DPU_LEASE_INTERVAL,
            "sb_ssl": services.ssl_files(plan, pair.dpu.name),  # SB is TLS only in the lab
        }
        _start_agent(plan, pair.dpu, "dpunet-dpu", DPU_COMMAND, dpu_settings)
        wait_until("host1 registered once its DPU did", lambda: "k8s-host1" in lsps(plan))
        host_settings = _agent_settings(plan, pair.host, ctl, host_token)
        pools = plan.node_dir(pair.host) / "sriovdp-config.json"
        pools.write_text(json.dumps(SEED_POOLS))
        _start_agent(
            plan,
            pair.host,
            "dpunet-host",
            ["host", "run"],
            {
                **host_settings,
                "sysfs_root": str(plan.sysfs_root(pair.host)),
                "pool_config": str(pools),
                "device_plugin": True,
                "kubelet_dir": str(plan.run_dir / "kubelet"),
                "device_info_dir": str(plan.run_dir / "devinfo"),
                "plugin_registration": "kubelet",
                "port_timeout": 20,
            },
        )
        _start_agent(
            plan,
            plan.cp,
            "dpunet-node",
            ["node", "run"],
            _agent_settings(plan, plan.cp, ctl, node_token),
        )
        yield Cluster(
            plan, kube, kubelet, ctl, host_token, node_token, dpu_settings, {}, router_ports,
            sb_log_mark,
        )  # fmt: skip
    finally:
        monitor.terminate()
        monitor.wait(10)
        if kubelet is not None:
            kube.call(kubelet.stop())
        if ctl is not None:
            ctl.close()
        kube.close()
        down(LAB)


# ------------------------------------------------------------------------------- helpers
def lsps(plan: LabPlan) -> set[str]:
    return set(
        daemons.nbctl(plan, "--bare", "--columns=name", "list", "Logical_Switch_Port").split()
    )


def switches(plan: LabPlan) -> set[str]:
    return set(daemons.nbctl(plan, "--bare", "--columns=name", "list", "Logical_Switch").split())


def cni_config(plan: LabPlan, node: Node, device_id: str | None) -> dict[str, Any]:
    """What multus hands the delegate: the rendered NAD's config (the seed's, unchanged),
    plus `deviceID` for a pod that got a VF, plus the lab's socket and state dir."""
    nad = network_attachment_definition(DeployValues())
    assert nad["spec"]["config"] == SEED_NAD_CONFIG
    config: dict[str, Any] = json.loads(nad["spec"]["config"])
    if device_id is not None:
        config["deviceID"] = device_id
    d = plan.node_dir(node)
    return {**config, "socket": str(d / "cni.sock"), "stateDir": str(d / "state")}


def multus_delegate(
    plan: LabPlan, pod: K8sPod, command: str, config: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Execute the plugin the config's `type` names from CNI_PATH, the way multus does (the
    seed's `ovn-k8s-cni-overlay`: the shim's second name); (exit code, parsed output)."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod.sandbox,
        "CNI_NETNS": pod.netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(services.shim_dir(plan)),
        "CNI_ARGS": (
            f"IgnoreUnknown=true;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={pod.sandbox};K8S_POD_UID={pod.uid}"
        ),
    }
    proc = subprocess.run(
        [str(services.shim_dir(plan) / config["type"])],
        input=json.dumps(config), env=env, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def create_pod(c: Cluster, name: str, node: str, vfs: int) -> K8sPod:
    """The pod in kmock (scheduled on `node`) and its sandbox namespace, as the runtime
    creates it before CNI ADD."""
    uid = f"uid-{name}-{secrets.token_hex(4)}"
    annotations = {"v1.multus-cni.io/default-network": "default"} if vfs else {}
    c.kube.pod(POD_NS, name, uid, node, vfs, **annotations)
    netns = f"{LAB}-pod-{name}"
    ip("netns", "add", netns)
    ip("link", "set", "lo", "up", netns=netns)
    pod = K8sPod(POD_NS, name, uid, node, secrets.token_hex(32), f"/run/netns/{netns}")
    c.pods[name] = pod
    return pod


def attach(c: Cluster, pod: K8sPod, device_id: str | None) -> dict[str, Any]:
    code, result = multus_delegate(
        c.plan, pod, "ADD", cni_config(c.plan, c.plan.node(pod.node), device_id)
    )
    assert code == 0, result
    pod.ip = result["ips"][0]["address"].split("/")[0]
    pod.gateway = result["ips"][0]["gateway"]
    pod.mac = result["interfaces"][0]["mac"]
    return result


def netns_name(pod: K8sPod) -> str:
    return Path(pod.netns).name


def host_vf_netdevs(plan: LabPlan) -> set[str]:
    out = ip("-o", "link", "show", netns=plan.node("host1").netns).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def sandbox_record(plan: LabPlan, pod: K8sPod) -> dict[str, Any]:
    d = plan.node_dir(plan.node(pod.node)) / "state" / "sandboxes"
    return dict(json.loads((d / f"{pod.sandbox}.json").read_text()))


def sandboxes(plan: LabPlan) -> set[str]:
    d = plan.node_dir(plan.node("host1")) / "state" / "sandboxes"
    return {p.stem for p in d.glob("*.json")}


# --------------------------------------------------------------------------------- tests
def test_cluster_from_node_objects(cluster: Cluster) -> None:
    c = cluster
    assert {"cp", "host1"} <= switches(c.plan) and "dpu1" not in switches(c.plan)
    assert daemons.nbctl(c.plan, "lsp-get-up", "k8s-host1").strip() == "up"  # DPU plugged it
    mp0 = ip("-4", "-o", "addr", "show", "dev", "ovn-k8s-mp0", netns=c.plan.node("host1").netns)
    assert "inet " in mp0.stdout
    # the device plugin advertises the seed's pool (VF1, VF2; VF0 is ovn-k8s-mp0)
    c.kubelet_call(
        c.kubelet.wait_for,
        lambda: c.devices() == {"0000:02:00.4": "Healthy", "0000:02:00.5": "Healthy"},
        60,
    )
    registrations = [r for r in c.kubelet.registrations if r.resource_name == SEED_RESOURCE]
    assert registrations and {r.endpoint for r in registrations} == {
        "dpunet-mellanox.com-mlnx_sriov_cx6.sock"
    }
    reviews = c.kube.requests("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert c.host_token in {r.data["spec"]["token"] for r in reviews}
    assert c.kube.requests("GET", f"/api/v1/namespaces/{NS}/pods/{HOST_AGENT_POD[0]}")
    # host1's chassis: registered by its DPU, written onto the Node by the controller
    host1 = c.kube.get("/api/v1/nodes/host1")
    assert host1 is not None and host1["metadata"]["annotations"][CHASSIS_ANNOTATION] == "dpu1"
    # ... with its host PF's MAC, the gateway router's (no l3-gateway-config on host1)
    pf_mac = c.plan.pairs[0].pf_mac(c.plan.lab_id)
    assert "k8s.ovn.org/l3-gateway-config" not in host1["metadata"]["annotations"]
    [patch] = chassis_patches(c, "host1")
    assert patch.data["metadata"] == {
        "uid": "uid-node-host1",
        "annotations": {CHASSIS_ANNOTATION: "dpu1", GATEWAY_MAC_ANNOTATION: pf_mac},
    }  # fmt: skip
    wait_until("GR_host1 has the host PF's MAC", lambda: gr_mac(c, "host1") == pf_mac)
    # cp, a full node: its dpunet-node reports breth0's MAC, the controller annotates cp
    breth0 = services.link_mac(c.plan.cp.netns, CP_BRIDGE)

    def cp_mac() -> str | None:
        cp = c.kube.get("/api/v1/nodes/cp")
        return cp and cp["metadata"]["annotations"].get(GATEWAY_MAC_ANNOTATION)

    wait_until("cp annotated with breth0's MAC", lambda: cp_mac() == breth0)
    wait_until("GR_cp with breth0's MAC", lambda: gr_mac(c, "cp") == breth0)
    # ... and GR_cp only then: never with another MAC (issue 13: it would answer for cp's IP)
    assert _seen_macs(c, gateway_external_port("cp")) == [breth0]
    assert _seen_macs(c, gateway_external_port("host1")) == [pf_mac]
    # so dpu1, whose SB connection goes to cp's IP, never lost it
    dpu1 = c.plan.node("dpu1")
    status = run(
        ["ovn-appctl", "-t", "ovn-controller", "connection-status"],
        netns=dpu1.netns, env=c.plan.node_env(dpu1),
    ).stdout.strip()  # fmt: skip
    assert status == "connected", status
    with _ovn_controller_log(c.plan).open() as log:
        log.seek(c.sb_log_mark)
        sb = f":{SB_PORT}"
        lost = [
            line
            for line in log
            if sb in line and any(w in line for w in ("disconnect", "dropped", "timed out"))
        ]
    assert lost == [], lost


def gr_mac(c: Cluster, node: str) -> str:
    """The MAC of `node`'s gateway router port on the underlay (rtoe-GR_<node>)."""
    port = gateway_external_port(node)
    return daemons.nbctl(c.plan, "--bare", "--columns=mac", "find", "Logical_Router_Port",
                         f"name={port}").strip()  # fmt: skip


def chassis_patches(c: Cluster, node: str) -> list[Any]:
    """The controller's patches of `node`'s chassis annotation."""
    return [
        r
        for r in c.kube.requests("PATCH", f"/api/v1/nodes/{node}")
        if r.headers.get("Authorization") == f"Bearer {CONTROLLER_TOKEN}"
        and CHASSIS_ANNOTATION in r.data.get("metadata", {}).get("annotations", {})
    ]


def dpu_encap_ip(c: Cluster) -> str:
    dpu = c.plan.node("dpu1")
    return run(
        ["ovs-vsctl", "get", "Open_vSwitch", ".", "external_ids:ovn-encap-ip"],
        netns=dpu.netns, env=c.plan.node_env(dpu),
    ).stdout.strip().strip('"')  # fmt: skip


def test_dpu_registrations_are_checked_against_sb(cluster: Cluster) -> None:
    """A registration with a wrong chassis, tunnel endpoint or node is refused with its
    reason and writes nothing; the right one again (an agent restart) writes nothing."""
    c = cluster
    c.kube.node("host9", "192.0.2.209", {"k8s.ovn.org/dpu-host": ""})  # no DPU of its own
    dpu_token = Path(c.dpu_settings["token_file"]).read_text().strip()
    encap_ip = dpu_encap_ip(c)
    patches_before = len(c.kube.requests("PATCH", "/api/v1/nodes"))
    url = f"unix:{c.ctl.socket}"

    def refusal(token: str, node: str, chassis: str, ip: str) -> tuple[int, str]:
        with ControllerClient(url, token, timeout=30) as client, pytest.raises(ClientError) as e:
            client.register_dpu(node, DpuRegistration(chassis=chassis, encap_ip=IPv4Address(ip)))
        return e.value.status, e.value.detail

    status, detail = refusal(dpu_token, "host1", "dpu1", "192.0.2.250")
    assert status == 409 and f"has tunnel endpoint(s) {encap_ip}" in detail, detail
    status, detail = refusal(dpu_token, "host1", "dpu2", encap_ip)
    assert status == 403 and "dpu:dpu1 may not register chassis dpu2" in detail, detail
    status, detail = refusal(GHOST_TOKEN, "host1", "ghost", encap_ip)
    assert status == 409 and "chassis ghost is not in OVN Southbound" in detail, detail
    wait_until(
        "host9 seen", lambda: "no Node" not in refusal(dpu_token, "host9", "dpu1", encap_ip)[1]
    )
    status, detail = refusal(dpu_token, "host9", "dpu1", encap_ip)  # dpu1's token, not host9's DPU
    assert status == 409 and "chassis dpu1 already serves node host1" in detail, detail
    status, detail = refusal(dpu_token, "cp", "dpu1", encap_ip)
    assert status == 400 and "not a dpu-host node" in detail, detail
    status, detail = refusal(dpu_token, "nosuch", "dpu1", encap_ip)
    assert status == 404, detail

    assert len(c.kube.requests("PATCH", "/api/v1/nodes")) == patches_before  # nothing written
    host9 = c.kube.get("/api/v1/nodes/host9")
    assert host9 is not None and CHASSIS_ANNOTATION not in host9["metadata"]["annotations"]
    with ControllerClient(url, dpu_token, timeout=30) as client:
        binding = client.register_dpu(
            "host1",
            DpuRegistration(chassis="dpu1", encap_ip=IPv4Address(encap_ip)),
        )
    assert (binding.node, binding.chassis, binding.changed) == ("host1", "dpu1", False)
    assert len(c.kube.requests("PATCH", "/api/v1/nodes")) == patches_before
    c.kube.delete("/api/v1/nodes/host9")


def test_pods_get_vfs_through_device_plugin_and_multus(cluster: Cluster) -> None:
    c = cluster
    for name in ("ovs-offload-pod1", "ovs-offload-pod2"):
        pod = create_pod(c, name, "host1", vfs=1)
        answer = c.kubelet_call(c.kubelet.admit_pod, POD_NS, name, SEED_RESOURCE)
        pci = answer.envs[env_name(SEED_RESOURCE)]
        info = json.loads(answer.envs[env_name(SEED_RESOURCE) + "_INFO"])
        assert info[pci]["generic"]["deviceID"] == pci
        assert (
            c.plan.run_dir / "devinfo" / f"{SEED_RESOURCE.replace('/', '-')}-{pci}-device.json"
        ).exists()
        result = attach(c, pod, pci)
        pod.pci = pci
        assert result["cniVersion"] == "0.3.1"  # the NAD's version (no pciID in it)
        assert sandbox_record(c.plan, pod)["device"]["pci"] == pci  # the VF multus named
        assert ip("link", "show", "eth0", netns=netns_name(pod)).returncode == 0
    pod1, pod2 = c.pods["ovs-offload-pod1"], c.pods["ovs-offload-pod2"]
    assert {pod1.pci, pod2.pci} == {"0000:02:00.4", "0000:02:00.5"}  # kubelet's two VFs
    web = create_pod(c, "web", "cp", vfs=0)  # a pod of the full node, across the Geneve tunnel
    attach(c, web, None)

    assert {pod1.lsp, pod2.lsp, web.lsp} <= lsps(c.plan)
    for pod in (pod1, pod2, web):
        assert daemons.nbctl(c.plan, "lsp-get-up", pod.lsp).strip() == "up"
        kpod = c.kube.get(f"/api/v1/namespaces/{POD_NS}/pods/{pod.name}")
        assert kpod is not None
        networks = json.loads(kpod["metadata"]["annotations"]["k8s.ovn.org/pod-networks"])
        default = networks["default"]
        assert default["mac_address"] == pod.mac
        assert default["ip_addresses"][0].split("/")[0] == pod.ip
        assert default["gateway_ips"] == [pod.gateway]
        patches = c.kube.requests("PATCH", f"/api/v1/namespaces/{POD_NS}/pods/{pod.name}")
        assert patches and patches[-1].data["metadata"]["uid"] == pod.uid
    reviews = c.kube.requests("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert all(r.data["spec"]["audiences"] == AUD for r in reviews)
    assert {c.host_token, c.node_token} <= {r.data["spec"]["token"] for r in reviews}
    # only the controller talks to the API server (the test scripts it without a token)
    callers = {r.headers.get("Authorization") for r in c.kube.requests()}
    assert callers == {None, f"Bearer {CONTROLLER_TOKEN}"}
    # the VF's representor on the DPU carries the pod's LSP
    dpu = c.plan.node("dpu1")
    iface = run(
        ["ovs-vsctl", "--bare", "--columns=name", "find", "Interface",
         f"external_ids:iface-id={pod1.lsp}"],
        netns=dpu.netns, env=c.plan.node_env(dpu),
    ).stdout.strip()  # fmt: skip
    assert iface == f"pf0vf{int(str(pod1.pci)[-1]) - 3}"


def test_connectivity_matrix(cluster: Cluster) -> None:
    c = cluster
    pod1, pod2, web = (c.pods[n] for n in ("ovs-offload-pod1", "ovs-offload-pod2", "web"))
    checks = {
        "pod1 -> gateway": ping(netns_name(pod1), str(pod1.gateway)),
        "pod1 -> pod2 (same node)": ping(netns_name(pod1), str(pod2.ip)),
        "pod1 -> web (across nodes)": ping(netns_name(pod1), str(web.ip)),
        "web -> pod2 (across nodes)": ping(netns_name(web), str(pod2.ip)),
        "host1 ovn-k8s-mp0 -> pod1": ping(c.plan.node("host1").netns, str(pod1.ip)),
        "host1 ovn-k8s-mp0 -> pod2": ping(c.plan.node("host1").netns, str(pod2.ip)),
        "cp ovn-k8s-mp0 -> web": ping(c.plan.cp.netns, str(web.ip)),
        "pod1 -> ext (gateway SNAT)": ping(netns_name(pod1), str(EXT_ADDRESS)),
        "pod2 -> ext (gateway SNAT)": ping(netns_name(pod2), str(EXT_ADDRESS)),
    }
    failed = {k: detail for k, (ok, detail) in checks.items() if not ok}
    assert not failed, failed
    # the pods' SNAT address is host1's IP: ext knows it by the host's MAC, no other
    host1_ip = str(c.plan.gateway_ip(c.plan.node("host1")))
    neigh = ip("-4", "neigh", "show", host1_ip, netns=c.plan.ext.netns).stdout
    assert c.plan.pairs[0].pf_mac(c.plan.lab_id) in neigh.lower(), neigh


def test_network_policies_from_the_api_on_the_data_path(cluster: Cluster) -> None:
    """NetworkPolicy and Namespace objects change what reaches pod1 (a VF pod, its ACLs in
    dpu1's OVS): a policy created, updated, a namespace relabelled, the policy deleted."""
    c = cluster
    pod1, pod2, web = (c.pods[n] for n in ("ovs-offload-pod1", "ovs-offload-pod2", "web"))
    for pod, app in ((pod1, "db"), (pod2, "cli"), (web, "web")):
        c.kube.patch(f"/api/v1/namespaces/{POD_NS}/pods/{pod.name}",
                     {"metadata": {"labels": {"app": app}}})  # fmt: skip
    c.kube.namespace(POD_NS)
    policy = f"/apis/networking.k8s.io/v1/namespaces/{POD_NS}/networkpolicies"

    def reach(pod2_in: bool, web_in: bool) -> None:
        want = {
            "pod2 -> pod1": (netns_name(pod2), pod2_in),
            "web -> pod1 (across nodes)": (netns_name(web), web_in),
            "host1 ovn-k8s-mp0 -> pod1": (c.plan.node("host1").netns, True),  # kubelet probes
        }

        def holds() -> dict[str, bool]:
            seen = {k: ping(ns, str(pod1.ip), count=1)[0] for k, (ns, _) in want.items()}
            return {} if seen != {k: ok for k, (_, ok) in want.items()} else seen

        wait_until(f"pod2 -> pod1 {pod2_in}, web -> pod1 {web_in}", holds, timeout=40)

    def peers(peer: dict[str, Any]) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [peer]}]}

    def selecting(kind: str, labels: dict[str, str]) -> dict[str, Any]:
        return peers({kind: {"matchLabels": labels}})

    c.kube.post(
        policy,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "db-in", "namespace": POD_NS},
            "spec": selecting("podSelector", {"app": "cli"}),
        },
    )
    reach(pod2_in=True, web_in=False)
    c.kube.patch(f"{policy}/db-in", {"spec": selecting("podSelector", {"app": "web"})})
    reach(pod2_in=False, web_in=True)
    c.kube.patch(f"{policy}/db-in", {"spec": selecting("namespaceSelector", {"team": "blue"})})
    reach(pod2_in=False, web_in=False)
    c.kube.patch(f"/api/v1/namespaces/{POD_NS}", {"metadata": {"labels": {"team": "blue"}}})
    reach(pod2_in=True, web_in=True)
    c.kube.patch(f"/api/v1/namespaces/{POD_NS}", {"metadata": {"labels": {"team": "red"}}})
    reach(pod2_in=False, web_in=False)
    c.kube.delete(f"{policy}/db-in")
    reach(pod2_in=True, web_in=True)
    acls = daemons.nbctl(c.plan, "--bare", "--columns=external_ids", "list", "ACL")
    assert "dpunet" not in acls  # every policy ACL gone with the last policy


def test_pod_deleted_without_cni_del_is_released(cluster: Cluster) -> None:
    c = cluster
    pod1 = c.pods["ovs-offload-pod1"]
    netdevs = host_vf_netdevs(c.plan)
    c.kube.delete(f"/api/v1/namespaces/{POD_NS}/pods/{pod1.name}")  # no CNI DEL ever comes
    wait_until("the deleted pod's port released in NB", lambda: pod1.lsp not in lsps(c.plan))
    with c.ctl.client("tok-admin") as admin:
        ports = admin.get("/v1/ports", params={"node": "host1"}).json()["items"]
    assert pod1.name not in {p["name"] for p in ports}
    # the sandbox goes away without a DEL (kubelet crashed); the agent returns the VF
    ip("netns", "del", netns_name(pod1))
    c.kubelet.remove_pod(POD_NS, pod1.name)
    wait_until("the sandbox record released", lambda: pod1.sandbox not in sandboxes(c.plan))
    vf = f"enp2s0f0v{int(str(pod1.pci)[-1]) - 3}"
    assert vf not in netdevs
    wait_until(f"{vf} back on host1", lambda: vf in host_vf_netdevs(c.plan))
    c.kubelet_call(c.kubelet.wait_for, lambda: c.devices()[str(pod1.pci)] == "Healthy", 30)


def test_pod_deleted_after_cni_del(cluster: Cluster) -> None:
    """The ordinary order: kubelet runs CNI DEL, removes the sandbox, then the pod goes."""
    c = cluster
    pod2 = c.pods["ovs-offload-pod2"]
    code, _ = multus_delegate(
        c.plan, pod2, "DEL", cni_config(c.plan, c.plan.node("host1"), pod2.pci)
    )
    assert code == 0
    assert pod2.lsp not in lsps(c.plan) and pod2.sandbox not in sandboxes(c.plan)
    ip("netns", "del", netns_name(pod2))
    c.kubelet.remove_pod(POD_NS, pod2.name)
    c.kube.delete(f"/api/v1/namespaces/{POD_NS}/pods/{pod2.name}")
    vf = f"enp2s0f0v{int(str(pod2.pci)[-1]) - 3}"
    wait_until(f"{vf} back on host1", lambda: vf in host_vf_netdevs(c.plan))


def test_dpu_not_ready_becomes_a_pod_event(cluster: Cluster) -> None:
    """kubelet re-registers a deleted Node without annotations while host1's DPU agent is
    down: host1 has no DPU chassis any more, so the port of a pod kubelet already gave a VF
    is refused and the host agent reports DPUNotReady, which the controller writes as an
    Event on the pod (a second failure counts it twice). The DPU agent started again
    registers, the controller writes the chassis annotation, the node comes back and the
    retried ADD attaches the pod."""
    c = cluster
    pod = create_pod(c, "ovs-offload-pod3", "host1", vfs=1)
    answer = c.kubelet_call(c.kubelet.admit_pod, POD_NS, pod.name, SEED_RESOURCE)
    pod.pci = answer.envs[env_name(SEED_RESOURCE)]
    host1 = c.kube.get("/api/v1/nodes/host1")
    assert host1 is not None
    annotations = host1["metadata"]["annotations"]
    assert annotations.pop(CHASSIS_ANNOTATION) == "dpu1"  # the operator's are the others
    dpu = c.plan.node("dpu1")
    stop_daemon(c.plan.node_dir(dpu) / "dpunet-dpu.pid")  # else it registers host1 at once
    c.kube.delete("/api/v1/nodes/host1")
    wait_until("host1 deregistered", lambda: "host1" not in switches(c.plan))
    c.kube.node("host1", str(c.plan.node("host1").underlay_ip), {"k8s.ovn.org/dpu-host": ""})
    c.kubelet_call(
        c.kubelet.wait_for, lambda: set(c.devices().values()) == {"Unhealthy"}, 30
    )  # the device plugin: DPU not ready

    config = cni_config(c.plan, c.plan.node("host1"), pod.pci)
    code, error = multus_delegate(c.plan, pod, "ADD", config)
    assert (code, error["code"]) == (1, 101), error
    assert "not registered" in error["details"]

    def reasons() -> list[dict[str, Any]]:
        return [
            e
            for e in c.kube.events(POD_NS)
            if e["involvedObject"]["name"] == pod.name and e["reason"] == "DPUNotReady"
        ]

    wait_until("a DPUNotReady event on the pod", lambda: bool(reasons()))
    [event] = reasons()
    assert event["involvedObject"]["uid"] == pod.uid and event["type"] == "Warning"
    assert "its DPU has not registered its chassis" in event["message"]
    assert "not registered" in event["message"]
    assert pod.sandbox not in sandboxes(c.plan)  # the failed ADD left nothing behind
    code, _ = multus_delegate(c.plan, pod, "DEL", config)  # the runtime's DEL after a failure
    assert code == 0
    code, error = multus_delegate(c.plan, pod, "ADD", config)  # kubelet retries
    assert (code, error["code"]) == (1, 101), error
    assert multus_delegate(c.plan, pod, "DEL", config)[0] == 0
    wait_until("the event counted twice", lambda: reasons()[0].get("count") == 2)

    c.kube.patch("/api/v1/nodes/host1", {"metadata": {"annotations": annotations}})
    patched = len(chassis_patches(c, "host1"))
    _start_agent(c.plan, dpu, "dpunet-dpu", DPU_COMMAND, c.dpu_settings)
    wait_until("the DPU registered host1 again", lambda: len(chassis_patches(c, "host1")) > patched)
    wait_until(
        "host1's management port up again",
        lambda: (
            "k8s-host1" in lsps(c.plan)
            and daemons.nbctl(c.plan, "lsp-get-up", "k8s-host1").strip() == "up"
        ),
        timeout=60,
    )
    c.kubelet_call(c.kubelet.wait_for, lambda: set(c.devices().values()) == {"Healthy"}, 60)
    # the runtime creates sandboxes once CNI STATUS says the network is ready: here, once
    # the restarted DPU agent has renewed its lease (its registration came first)
    wait_until("CNI STATUS ok", lambda: cni_status(c.plan)[0] == 0, NOTICED_WITHIN)
    pod.sandbox = secrets.token_hex(32)  # kubelet retries with a new sandbox
    attach(c, pod, pod.pci)
    for target in (str(c.pods["web"].ip), str(EXT_ADDRESS), str(pod.gateway)):
        ok, detail = ping(netns_name(pod), target)
        assert ok, f"{target}: {detail}"


def test_a_stopped_dpu_agent_makes_the_node_not_ready(cluster: Cluster) -> None:
    """The DPU agent renews its lease with its own token (no Kubernetes credentials, not
    reviewed by the API server). Stopped, the host agent's CNI STATUS answers 50 and the
    device plugin reports the VFs Unhealthy; started again, both recover."""
    c = cluster

    def lease() -> dict[str, Any] | None:
        with c.ctl.client("tok-admin") as admin:
            found: dict[str, Any] | None = admin.get("/v1/nodes/host1").json()["dpu_lease"]
        return found

    # held once the agent renewed (an earlier test's chassis change restarts the lease)
    wait_until("the DPU lease held", lambda: (lease() or {}).get("state") == "held", 30)
    dpu_token = Path(c.dpu_settings["token_file"]).read_text().strip()
    reviews = c.kube.requests("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert dpu_token not in {r.data["spec"]["token"] for r in reviews}
    assert cni_status(c.plan)[0] == 0

    dpu = c.plan.node("dpu1")
    stop_daemon(c.plan.node_dir(dpu) / "dpunet-dpu.pid")
    _, answer = wait_until(
        "CNI STATUS code 50", lambda: (r := cni_status(c.plan))[0] != 0 and r, NOTICED_WITHIN
    )
    assert answer["code"] == ErrorCode.NOT_AVAILABLE, answer
    assert answer["msg"].startswith("the DPU dpu1 of node host1 is down"), answer
    c.kubelet_call(
        c.kubelet.wait_for, lambda: set(c.devices().values()) == {"Unhealthy"}, NOTICED_WITHIN
    )

    _start_agent(c.plan, dpu, "dpunet-dpu", DPU_COMMAND, c.dpu_settings)
    wait_until("CNI STATUS ok", lambda: cni_status(c.plan)[0] == 0, NOTICED_WITHIN)
    c.kubelet_call(
        c.kubelet.wait_for, lambda: set(c.devices().values()) == {"Healthy"}, NOTICED_WITHIN
    )


def test_rbac_grants_exactly_what_the_controller_used(cluster: Cluster) -> None:
    """Least privilege: the rules the rendered ClusterRole and Role grant are exactly the
    (API group, resource, verb) triples the controller's requests to kmock needed over
    this module's tests (both directions: nothing missing, nothing extra)."""
    used = cluster.kube.permissions()
    rules = granted(render(DeployValues()))
    assert used - rules == set(), f"used but not granted: {sorted(used - rules)}"
    assert rules - used == set(), f"granted but never used: {sorted(rules - used)}"
