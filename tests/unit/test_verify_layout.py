"""`verify topology`: the expected DPU/host layout, each deviation with its fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dpunet.openflow.protocol import Flow
from dpunet.verify.layout import (
    DpuLayout,
    Finding,
    HostLayout,
    RepresentorInfo,
    VfInfo,
    check_dpu,
    check_host,
    external_bridge,
)
from dpunet.verify.ovsview import BridgeView, IfaceView, OvsView
from dpunet.verify.sbview import RemoteChassis, SbPort, SbView, parse_sb

INSTALLED = {"ovn-installed": "true"}
PLUG = {"dpunet-plug": "representor", "requested-chassis": "dpu1"}


def good_ovs() -> dict[str, IfaceView]:
    return {
        "br-int": IfaceView("br-int", "br-int", "br-int", "internal", ofport=65534),
        "ovn-k8s-mp0": IfaceView(
            "ovn-k8s-mp0",
            "br-int",
            "ovn-k8s-mp0",
            "",
            {"iface-id": "k8s-host1", **INSTALLED},
            ofport=3,
        ),
        "pf0vf1": IfaceView(
            "pf0vf1",
            "br-int",
            "pf0vf1",
            "",
            {"iface-id": "default_a", "dpunet-owned": "true", **INSTALLED},
            ofport=4,
        ),
        "ovn-cp-0": IfaceView(
            "ovn-cp-0", "br-int", "ovn-cp-0", "geneve", {}, {"remote_ip": "192.0.2.10"}, 1
        ),
        "patch-br-int-to-ext": IfaceView(
            "patch-br-int-to-ext",
            "br-int",
            "patch-br-int-to-ext",
            "patch",
            {},
            {"peer": "patch-ext-to-br-int"},
            2,
        ),
        "patch-ext-to-br-int": IfaceView(
            "patch-ext-to-br-int",
            "brp0",
            "patch-ext-to-br-int",
            "patch",
            {},
            {"peer": "patch-br-int-to-ext"},
            3,
        ),
        "brp0": IfaceView("brp0", "brp0", "brp0", "internal", ofport=65534),
        "p0": IfaceView("p0", "brp0", "p0", "", ofport=1),
        "pf0hpf": IfaceView("pf0hpf", "brp0", "pf0hpf", "", ofport=2),
    }


def layout(
    ifaces: dict[str, IfaceView] | None = None,
    fail_mode: str | None = "secure",
    hw_offload: str = "true",
    sb: SbView | None = None,
) -> DpuLayout:
    ifaces = ifaces if ifaces is not None else good_ovs()
    bridges = {
        b: BridgeView(
            b,
            "system",
            fail_mode if b == "br-int" else None,
            tuple(sorted(i.port for i in ifaces.values() if i.bridge == b)),
        )
        for b in {i.bridge for i in ifaces.values()}
    }
    ids = {
        "system-id": "dpu1",
        "host-k8s-nodename": "host1",
        "ovn-bridge-mappings": "physnet:brp0",
        "ovn-gw-interface": "p0",
    }
    ovs = OvsView({"hw-offload": hw_offload}, ids, bridges, ifaces)
    sb = (
        sb
        if sb is not None
        else SbView(
            "dpu1",
            (SbPort("default_a", PLUG, True, True), SbPort("k8s-host1", PLUG, True, True)),
            (RemoteChassis("cp", "geneve", "192.0.2.10"),),
        )
    )
    reps = (
        RepresentorInfo("p0", "uplink"),
        RepresentorInfo("pf0hpf", "pf"),
        RepresentorInfo("pf0vf1", "vf", 1),
    )
    return DpuLayout("dpu1", ovs, sb, reps)


def deviations(findings: list[Finding]) -> dict[str, str]:
    return {f.check: f.fix for f in findings if not f.ok}


def test_expected_layout_has_no_deviation() -> None:
    findings = check_dpu(layout())
    assert deviations(findings) == {}
    checks = {f.check for f in findings}
    assert "geneve tunnel to cp (192.0.2.10)" in checks
    assert "representor of default_a" in checks
    assert "patch pair br-int <-> brp0" in checks


def test_each_deviation_names_its_fix() -> None:
    ifaces = good_ovs()
    del ifaces["p0"], ifaces["ovn-cp-0"], ifaces["patch-ext-to-br-int"]
    ifaces["pf0vf1"] = replace(
        ifaces["pf0vf1"], ofport=-1, error="could not open network device pf0vf1"
    )
    ifaces["pf0vf9"] = IfaceView(
        "pf0vf9",
        "br-int",
        "pf0vf9",
        "",
        {"iface-id": "default_gone", "dpunet-owned": "true"},
        ofport=9,
    )
    found = deviations(check_dpu(layout(ifaces, fail_mode="standalone", hw_offload="false")))
    assert (
        "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true"
        in found["other_config:hw-offload=true"]
    )
    assert "ovs-vsctl add-port brp0 p0" in found["brp0 has the uplink p0"]
    assert found["br-int fail_mode=secure"] == "ovs-vsctl set-fail-mode br-int secure"
    assert "ovn-encap-ip" in found["geneve tunnel to cp (192.0.2.10)"]
    assert "ovn-bridge-mappings" in found["patch pair br-int <-> brp0"]
    assert "ovn-controller installs the flows" in found["representor of default_a"]
    assert "ovs-vsctl del-port br-int pf0vf9" in found["no stale port (pf0vf9)"]
    assert "ovs-vsctl del-port pf0vf1" in found["interface pf0vf1 works"]


def test_missing_bridges_and_unreadable_sb() -> None:
    ifaces = {k: v for k, v in good_ovs().items() if v.bridge == "brp0"}
    found = deviations(check_dpu(layout(ifaces)))
    assert "ovn-controller creates br-int" in found["bridge br-int exists"]
    no_sb = check_dpu(replace(layout(), sb=None, sb_error="cannot read OVN Southbound"))
    assert deviations(no_sb)["pods' representors (OVN Southbound)"].startswith("give --sb-remote")
    assert (
        external_bridge(OvsView(external_ids={"ovn-bridge-mappings": "other:br-x,physnet:br-ex"}))
        == "br-ex"
    )
    assert external_bridge(OvsView()) == "brp0"


def test_missing_representor_and_mgmt_port() -> None:
    ifaces = good_ovs()
    del ifaces["pf0vf1"], ifaces["ovn-k8s-mp0"]
    found = deviations(check_dpu(layout(ifaces)))
    assert "dpunet-dpu plugs it" in found["representor of default_a"]
    assert "dpunet-dpu plugs it" in found["management port (k8s-host1) on br-int"]


def host(**changes: object) -> HostLayout:
    base = HostLayout(
        node="host1",
        pf="enp2s0f0np0",
        pf_present=True,
        num_vfs=3,
        total_vfs=16,
        vfs=(
            VfInfo(0, "0000:02:00.3", "ovn-k8s-mp0", "mlx5_core"),
            VfInfo(1, "0000:02:00.4", None, "mlx5_core", "default/a"),
            VfInfo(2, "0000:02:00.5", "enp2s0f0v2", "mlx5_core"),
        ),
        mgmt_present=True,
        mgmt_up=True,
        mgmt_addresses=("198.18.1.2/24",),
        dpu_vf_representors=(0, 1, 2),
    )
    return replace(base, **changes)


def test_host_as_expected() -> None:
    assert deviations(check_host(host())) == {}


def test_host_deviations() -> None:
    leaked = (*host().vfs[:2], VfInfo(2, "0000:02:00.5", None, "mlx5_core"))
    found = deviations(
        check_host(host(vfs=leaked, mgmt_addresses=(), mgmt_up=False, dpu_vf_representors=(0, 1)))
    )
    assert "leaked VF" in found["VF2 (0000:02:00.5) in the host or held by a pod"]
    assert "switchdev" in found["every VF has a representor on the DPU"]
    assert "is dpunet-host running" in found["management port ovn-k8s-mp0 present and up"]
    assert "node subnet's .2" in found["management port ovn-k8s-mp0 addressed"]
    assert (
        "dpunet host setup" in deviations(check_host(host(num_vfs=0, vfs=())))["SR-IOV VFs enabled"]
    )
    absent = check_host(host(pf_present=False))
    assert len(absent) == 1 and not absent[0].ok


def test_parse_sb_transact_answer() -> None:
    results = [
        {"rows": [{"name": "dpu1"}, {"name": "cp"}]},
        {
            "rows": [
                {"chassis_name": "dpu1", "type": "geneve", "ip": "192.0.2.201"},
                {"chassis_name": "cp", "type": "geneve", "ip": "192.0.2.10"},
                {"chassis_name": "gone", "type": "geneve", "ip": "192.0.2.99"},
            ]
        },
        {
            "rows": [
                {
                    "logical_port": "default_a",
                    "options": [
                        "map",
                        [["dpunet-plug", "representor"], ["requested-chassis", "dpu1"]],
                    ],
                    "chassis": ["uuid", "8a0b"],
                    "up": True,
                },
                {
                    "logical_port": "default_b",
                    "options": ["map", [["requested-chassis", "dpu1"]]],
                    "chassis": ["set", []],
                    "up": ["set", []],
                },
            ]
        },
    ]
    view = parse_sb("dpu1", results)
    assert view.remote_chassis == (RemoteChassis("cp", "geneve", "192.0.2.10"),)
    a, b = view.ports
    assert a.representor and a.bound and a.up is True
    assert not b.representor and not b.bound and b.up is None


def test_shared_gateway_flows_checked_against_the_wanted_set() -> None:
    from ipaddress import IPv4Address

    from dpunet.openflow import gateway as gw

    base = layout()
    assert base.sb is not None
    sb = replace(base.sb, gateway_ports={"rtoe-GR_host1": ("02:d5:00:01:00:01 192.0.2.101/24",)})
    ports = gw.GatewayPorts(uplink=1, host=2, gateway=3)
    wanted = gw.pipeline(gw.GatewaySpec(IPv4Address("192.0.2.101"), ports))
    check = "shared gateway flows on brp0"
    good = check_dpu(replace(base, sb=sb, gateway_flows=tuple(wanted)))
    assert check in {f.check for f in good} and deviations(good) == {}
    stale = gw.Flow(0, 1, gw.Match(), cookie=gw.COOKIE | 7)
    bad = check_dpu(replace(base, sb=sb, gateway_flows=(*wanted[1:], stale)))
    [finding] = [f for f in bad if f.check == check]
    assert not finding.ok and "1 missing, 1 stale" in finding.found and "dpunet-dpu" in finding.fix
    unread = check_dpu(replace(base, sb=sb, gateway_flows_error="brp0.mgmt: refused"))
    assert check in deviations(unread)
    unregistered = check_dpu(replace(base, gateway_flows=tuple(wanted)))
    assert "register" in deviations(unregistered)[check]


def test_parse_sb_reads_gateway_ports() -> None:
    rows = [{"rows": []}, {"rows": []}, {"rows": []}]
    gateway = {
        "rows": [{"logical_port": "rtoe-GR_host1", "mac": "0a:58:c0:00:02:65 192.0.2.101/24"}]
    }
    view = parse_sb("dpu1", [*rows, gateway])
    assert view.gateway_ports == {"rtoe-GR_host1": ("0a:58:c0:00:02:65 192.0.2.101/24",)}


def test_shared_gateway_flows_are_checked_with_the_agents_settings(tmp_path: Path) -> None:
    """The flows dpunet-dpu programs with a zone and NodePort range of its config are
    as expected with those settings (read from its config file), deviations with the
    defaults; with the flows turned off nothing is expected."""
    from ipaddress import IPv4Address

    from dpunet.openflow import gateway as gw
    from dpunet.verify.targets import local_dpu

    config = tmp_path / "dpu.yaml"
    config.write_text("controller_url: https://ctl:9477\ngateway:\n  zone: 65001\n"
                      "  node_port_range: 31000-31999\n")  # fmt: skip
    settings = gw.agent_settings(config)
    assert (settings.zone, settings.node_ports) == (65001, (31000, 31999))
    assert local_dpu("dpu1", config).gateway == settings
    base = layout()
    assert base.sb is not None
    sb = replace(base.sb, gateway_ports={"rtoe-GR_host1": ("02:d5:00:01:00:01 192.0.2.101/24",)})
    ports = gw.GatewayPorts(uplink=1, host=2, gateway=3)
    spec = gw.GatewaySpec(IPv4Address("192.0.2.101"), ports, 65001, (31000, 31999))
    flows = tuple(gw.pipeline(spec))
    check = "shared gateway flows on brp0"
    programmed = replace(base, sb=sb, gateway_flows=flows)
    assert check in deviations(check_dpu(programmed))  # the defaults: zone 64000
    good = check_dpu(replace(programmed, gateway=settings))
    [finding] = [f for f in good if f.check == check]
    assert finding.ok and "zone 65001, NodePorts 31000-31999" in finding.found
    off = settings.model_copy(update={"enabled": False})
    assert check not in {f.check for f in check_dpu(replace(programmed, gateway=off))}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("gateway: {zone: 0}", "gateway.zone"),
        ("gateway: {node_port_range: 5-1}", "gateway.node_port_range"),
        ("gateway: {zone: 1, colour: red}", "gateway.colour"),
    ],
)
def test_unusable_agent_configs_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    from dpunet.openflow import gateway as gw

    config = tmp_path / "dpu.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=problem):
        gw.agent_settings(config)
    # an unusable file: tests/unit/test_settings.py (dpunet.settings.read_config_file)
    with pytest.raises(ValueError, match=r"cannot read config file .*none\.yaml"):
        gw.agent_settings(tmp_path / "none.yaml")
    no_section = tmp_path / "node.yaml"
    no_section.write_text("node: cp\n")
    assert gw.agent_settings(no_section) == gw.GatewaySettings()


def full_node(flows: tuple[Flow, ...] | None, sb: SbView | None) -> DpuLayout:
    """cp as a full node: breth0 with its LOCAL port, the uplink eth0 and the GR's patch."""
    ifaces = {
        "breth0": IfaceView("breth0", "breth0", "breth0", "internal", ofport=65534),
        "eth0": IfaceView("eth0", "breth0", "eth0", "", ofport=1),
        "patch-ext": IfaceView("patch-ext", "breth0", "patch-ext", "patch", ofport=2),
    }
    bridges = {"breth0": BridgeView("breth0", "system", None, tuple(sorted(ifaces)))}
    ids = {"system-id": "cp", "ovn-bridge-mappings": "physnet:breth0"}
    ovs = OvsView({}, ids, bridges, ifaces)
    return DpuLayout("cp", ovs, sb, gateway_flows=flows, full_node=True)


def test_full_node_checks_breth0_and_its_flows() -> None:
    """A full node: only its external bridge and dpunet-node's flows with LOCAL as the
    host (no hw-offload, br-int, representors or pf0hpf expected); a missing flow is a
    deviation naming dpunet-node; an unreadable Southbound is one too."""
    from ipaddress import IPv4Address

    from dpunet.openflow import gateway as gw
    from dpunet.openflow.protocol import OFPP_LOCAL

    join = {"rtoj-GR_cp": ("0a:58:c6:13:ff:02 198.19.255.2/24",)}  # also l3gateway, first
    external = {"rtoe-GR_cp": ("0a:00:00:00:00:0a 192.0.2.10/24",)}
    sb = SbView("cp", (), (), gateway_ports={**join, **external})
    ports = gw.GatewayPorts(uplink=1, host=OFPP_LOCAL, gateway=2)
    wanted = tuple(gw.pipeline(gw.GatewaySpec(IPv4Address("192.0.2.10"), ports)))
    check = "shared gateway flows on breth0"
    good = check_dpu(full_node(wanted, sb))
    assert {f.check for f in good} == {"bridge breth0 exists", check}
    assert deviations(good) == {}
    assert "GR and host share 192.0.2.10" in next(f.found for f in good if f.check == check)
    bad = check_dpu(full_node(wanted[1:], sb))
    assert set(deviations(bad)) == {check} and "dpunet-node" in deviations(bad)[check]
    as_dpu = check_dpu(replace(full_node(wanted, sb), full_node=False))
    assert "other_config:hw-offload=true" in deviations(as_dpu)
    unread = replace(full_node(wanted, None), sb_error="ovnsb_db.sock: refused")
    assert deviations(check_dpu(unread)) == {
        check: "give --sb-remote, or check external_ids:ovn-remote"
    }
    renamed = check_dpu(replace(full_node(wanted, sb), node="cp.example.org"))
    assert deviations(renamed) == {}  # the chassis' only rtoe-GR_ port
    two = replace(sb, gateway_ports={**external, "rtoe-GR_x": ("0a:00:00:00:00:0b 192.0.2.11/24",)})
    assert "register" in deviations(check_dpu(replace(full_node(wanted, two), node="y")))[check]
    absent = check_dpu(replace(full_node(wanted, sb), ovs=OvsView({}, {}, {}, {})))
    assert set(deviations(absent)) == {"bridge breth0 exists"}


def test_a_full_node_is_told_by_its_agent_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where node.yaml is mounted and dpu.yaml is not, this machine is a full node."""
    from dpunet.verify import targets

    dpu, node = tmp_path / "dpu.yaml", tmp_path / "node.yaml"
    monkeypatch.setattr(targets, "DPU_CONFIG", dpu)
    monkeypatch.setattr(targets, "NODE_CONFIG", node)
    monkeypatch.setattr(targets, "AGENT_CONFIGS", (dpu, node))
    assert not targets.local_dpu("x").full_node
    node.write_text("gateway: {zone: 64002}\n")
    target = targets.local_dpu("cp")
    assert target.full_node and target.gateway.zone == 64002
    dpu.write_text("{}\n")
    assert not targets.local_dpu("dpu1").full_node
