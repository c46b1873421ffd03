"""The lab's controller (started and fed its nodes by `dpunet lab up`) against the lab's
OVN: the topology of cp (full) and host1 (dpu-host served by dpu1), and port PUTs that
return once ovn-controller on the right chassis has bound the port (a throwaway OVS
port stands in for the plugged VF).

The port tests use two extra nodes no agent manages (the lab's host and node agents
release ports of sandboxes they do not know): `ctlvf`, a dpu-host served by dpu1, and
`ctlveth`, a full node on cp's chassis. Everything a test adds, it removes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from dpunet.lab import daemons, services
from dpunet.lab.runner import run
from dpunet.lab.topology import LabPlan

pytestmark = pytest.mark.lab

NS = "ctltest"
# a PF MAC no emulated NIC has: the lab's DPU agent finds no representor for it and
# leaves the port to the throwaway OVS port below
VF = {"pci": "0000:02:00.7", "pf_mac": "02:00:5e:00:99:01", "vf_num": 7}

Client = Callable[[str], httpx.Client]


def _sb(plan: LabPlan, *args: str) -> str:
    return daemons.sbctl(plan, *args)


@pytest.fixture(scope="module")
def lab(shared_lab: LabPlan) -> Iterator[tuple[LabPlan, Client]]:
    """The shared lab and clients of its controller (`client("host1")`, `client("admin")`)."""
    plan = shared_lab
    sock = services.controller_socket(plan)

    def client(subject: str) -> httpx.Client:
        token = services.token_path(plan, subject).read_text().strip()
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)),
            base_url="http://controller",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    test_nodes = {
        "ctlvf": {
            "role": "dpu-host",
            "chassis": "dpu1",
            "node_ip": "192.0.2.231/24",
            "next_hop": "192.0.2.1",
        },
        "ctlveth": {
            "role": "full",
            "chassis": "cp",
            "node_ip": "192.0.2.232/24",
            "next_hop": "192.0.2.1",
        },
    }
    with client("admin") as admin:
        for name, spec in test_nodes.items():
            assert admin.put(f"/v1/nodes/{name}", json=spec).status_code == 200
    try:
        yield plan, client
    finally:
        with client("admin") as admin:
            for name in test_nodes:
                assert admin.delete(f"/v1/nodes/{name}").status_code == 200
        show = daemons.nbctl(plan, "show")
        assert "ctlvf" not in show and "ctlveth" not in show and NS not in show


def test_registered_nodes_have_the_topology(lab: tuple[LabPlan, Client]) -> None:
    plan, client = lab
    show = daemons.nbctl(plan, "show")
    for name in (
        "ovn_cluster_router",
        "(join)",
        "(cp)",
        "(host1)",
        "rtos-cp",
        "rtos-host1",
        "stor-host1",
        "k8s-cp",
        "k8s-host1",
        "GR_cp",
        "GR_host1",
        "(ext_host1)",
        "ext_host1_physnet",
        "rtoe-GR_host1",
        f"{plan.gateway_ip(plan.node('host1'))}/24",
        f"{plan.gateway_ip(plan.cp)}/24",
    ):
        assert name in show, f"{name} missing:\n{show}"
    assert (
        daemons.nbctl(plan, "get", "Logical_Router", "GR_host1", "options:chassis").strip()
        == "dpu1"
    )
    # northd placed each gateway router on its chassis
    l3gw = _sb(
        plan, "--bare", "--columns=options", "find", "Port_Binding", "logical_port=rtoj-GR_host1"
    )
    assert "l3gateway-chassis=dpu1" in l3gw
    # the lab's DPU agent plugged host1's management VF on dpu1
    mgmt = json.loads(
        _sb(
            plan,
            "--format=json",
            "--columns=requested_chassis,chassis,options",
            "find",
            "Port_Binding",
            "logical_port=k8s-host1",
        )
    )["data"][0]
    dpu1 = _sb(plan, "--bare", "--columns=_uuid", "find", "Chassis", "name=dpu1").strip()
    assert mgmt[0] == mgmt[1] == ["uuid", dpu1]
    assert dict(mgmt[2][1])["dpunet-plug"] == "representor"
    assert daemons.nbctl(plan, "get", "Logical_Switch_Port", "k8s-host1", "up").strip() == "true"
    with client("host1") as host:
        node = host.get("/v1/nodes/host1").json()
        assert host.get("/v1/nodes/cp").status_code == 403
    assert node["subnet"].startswith("198.18.") and node["mgmt_ip"].endswith(".2/24")


def _ready_by(client: httpx.Client, source: str) -> float:
    """The controller's count of PUTs answered ready from `source` (sb or nb)."""
    text = client.get("/metrics").text
    line = f'dpunet_controller_port_ready_total{{source="{source}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def test_vf_port_is_answered_once_up_on_dpu1(lab: tuple[LabPlan, Client]) -> None:
    plan, client = lab
    lsp, uid = f"{NS}_probe-vf", "uid-probe-vf"
    body = {"node": "ctlvf", "uid": uid, "sandbox": "sb-probe", **VF}
    dpu1 = plan.node("dpu1")
    with client("admin") as host:
        # nothing plugs it yet: the deadline names what it waited for
        resp = host.put(f"/v1/ports/{NS}/probe-vf", json=body, params={"timeout": 2})
        assert resp.status_code == 504, resp.text
        assert f"port {lsp} to be up on chassis dpu1" in resp.json()["detail"]

        # the SB Port_Binding carries the plug options and requested_chassis = dpu1
        binding = json.loads(
            _sb(
                plan,
                "--format=json",
                "--columns=options,requested_chassis",
                "find",
                "Port_Binding",
                f"logical_port={lsp}",
            )
        )
        options = dict(binding["data"][0][0][1])
        assert options["dpunet-plug"] == "representor"
        assert options["dpunet-plug:pf-mac"] == VF["pf_mac"]
        assert options["dpunet-plug:vf-num"] == "7" and options["iface-id-ver"] == uid
        chassis = _sb(plan, "--bare", "--columns=_uuid", "find", "Chassis", "name=dpu1").strip()
        assert binding["data"][0][1] == ["uuid", chassis]

        sb_ready = _ready_by(host, "sb")
        result: dict[str, httpx.Response] = {}
        worker = threading.Thread(
            target=lambda: result.setdefault("r", host.put(f"/v1/ports/{NS}/probe-vf", json=body))
        )
        started = time.monotonic()
        worker.start()
        try:
            time.sleep(0.5)
            daemons.vsctl(
                plan,
                dpu1,
                "add-port",
                "br-int",
                "tctl0",
                "--",
                "set",
                "Interface",
                "tctl0",
                "type=internal",
                f"external_ids:iface-id={lsp}",
                f"external_ids:iface-id-ver={uid}",
            )
            worker.join(30)
            resp = result["r"]
            assert resp.status_code == 200, resp.text
            assert resp.json()["up"] is True
            assert time.monotonic() - started < 15
            # answered from SB's Port_Binding.up, before northd's pass to NB up
            assert _ready_by(host, "sb") == sb_ready + 1
            assert daemons.nbctl(plan, "get", "Logical_Switch_Port", lsp, "up").strip() == "true"
            bound = _sb(
                plan, "--bare", "--columns=chassis", "find", "Port_Binding", f"logical_port={lsp}"
            )
            assert bound.strip() == chassis
        finally:
            daemons.vsctl(plan, dpu1, "--if-exists", "del-port", "br-int", "tctl0")
        assert host.delete(f"/v1/ports/{NS}/probe-vf").json()["deleted"] is True


def test_full_node_port_is_answered_once_up_on_cp(lab: tuple[LabPlan, Client]) -> None:
    plan, client = lab
    lsp, uid = f"{NS}_probe-veth", "uid-probe-veth"
    cp = plan.cp
    daemons.vsctl(
        plan,
        cp,
        "add-port",
        "br-int",
        "tctl1",
        "--",
        "set",
        "Interface",
        "tctl1",
        "type=internal",
        f"external_ids:iface-id={lsp}",
        f"external_ids:iface-id-ver={uid}",
    )
    try:
        with client("admin") as node:
            resp = node.put(
                f"/v1/ports/{NS}/probe-veth", json={"node": "ctlveth", "uid": uid, "sandbox": "s"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["up"] is True
            options = daemons.nbctl(plan, "get", "Logical_Switch_Port", lsp, "options")
            assert "requested-chassis=cp" in options and "plug" not in options
            assert node.delete(f"/v1/ports/{NS}/probe-veth").json()["deleted"] is True
    finally:
        daemons.vsctl(plan, cp, "--if-exists", "del-port", "br-int", "tctl1")
    leftover = run(["ip", "link", "show", "tctl1"], netns=cp.netns, check=False)
    assert leftover.returncode != 0
