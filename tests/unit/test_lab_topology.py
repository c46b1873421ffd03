"""The lab plan: names, addresses and environments derived from a spec."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from dpunet.lab.topology import LabPlan, LabSpec, Role

DOC_RANGES = [ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("198.18.0.0/15")]


def test_default_lab_has_the_seed_nodes() -> None:
    plan = LabPlan(LabSpec())
    assert [n.name for n in plan.nodes] == ["wire", "ext", "cp", "host1", "dpu1"]
    assert plan.node("host1").role is Role.DPU_HOST
    assert plan.node("dpu1").peer == "host1"
    assert [n.name for n in plan.ovs_nodes] == ["cp", "dpu1"]
    assert all(n.netns.startswith("dpulab-") for n in plan.nodes)


def test_addresses_are_unique_and_in_documentation_ranges() -> None:
    plan = LabPlan(LabSpec(name="x", hosts=8))
    ips = [n.underlay_ip for n in plan.nodes if n.underlay_ip is not None]
    assert len(ips) == len(set(ips)) == 2 + 2 * 8
    assert all(any(ip in net for net in DOC_RANGES) for ip in ips)


def test_node_env_points_tools_at_the_node() -> None:
    plan = LabPlan(LabSpec(name="t1"))
    dpu_env = plan.node_env(plan.node("dpu1"))
    assert dpu_env["OVS_RUNDIR"] == "/run/dpunet/lab/t1/dpu1/ovs"
    assert dpu_env["DPUNET_SYSFS_ROOT"] == "/run/dpunet/lab/t1/sys/dpu1"
    assert plan.node_env(plan.node("host1")) == {
        "DPUNET_SYSFS_ROOT": "/run/dpunet/lab/t1/sys/host1"
    }
    assert plan.node_env(plan.cp)["OVN_NB_DB"].startswith("unix:/run/dpunet/lab/t1/cp/ovn/")


def test_macs_differ_between_labs_and_pairs() -> None:
    a, b = LabPlan(LabSpec(name="a", hosts=2)), LabPlan(LabSpec(name="b", hosts=2))
    macs = {p.pf_mac(plan.lab_id) for plan in (a, b) for p in plan.pairs}
    assert len(macs) == 4


def test_unknown_node_names_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="host1"):
        LabPlan(LabSpec()).node("host9")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "Bad"},
        {"name": "toolongname"},
        {"name": "1lab"},
        {"hosts": 0},
        {"hosts": 9},
        {"vfs": 17},
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LabSpec.model_validate(kwargs)
