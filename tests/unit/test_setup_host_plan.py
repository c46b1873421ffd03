"""`host setup` plan computation and VF wait on sysfs fixture trees (no root, no netlink)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hw_sysfs_tree import SEED_PF, SEED_PF_ADDRESS, ari_address, seed_host
from pydantic import ValidationError

from dpunet.hw.host import find_pf, list_vfs
from dpunet.linux.ethtool import Feature
from dpunet.linux.netlink import Link
from dpunet.setup.host import HostSetupConfig, HostState, plan_host, wait_for_vfs
from dpunet.setup.plan import Outcome, SetupError

PF_LINK_DOWN = Link(SEED_PF, 3, "10:70:fd:09:81:aa", None, False)
PF_LINK_UP = Link(SEED_PF, 3, "10:70:fd:09:81:aa", None, True)
OFFLOAD_OFF = Feature(enabled=False, changeable=True)
OFFLOAD_ON = Feature(enabled=True, changeable=True)
OFFLOAD_FIXED = Feature(enabled=False, changeable=False)


def state(
    root: Path,
    num_vfs: int,
    link: Link | None = PF_LINK_DOWN,
    feature: Feature | None = OFFLOAD_OFF,
) -> HostState:
    tree = seed_host(root, num_vfs=num_vfs)
    pf = find_pf(tree.sysfs, SEED_PF)
    assert pf is not None
    return HostState(True, pf, link, feature, tuple(list_vfs(tree.sysfs, pf)))


def cfg(num_vfs: int = 3, **more: object) -> HostSetupConfig:
    return HostSetupConfig.model_validate({"pf": SEED_PF, "num_vfs": num_vfs, **more})


def outcomes(plan: object) -> dict[str, tuple[str, str, Outcome]]:
    return {s.kind: (s.current, s.desired, s.outcome) for s in plan.steps}  # type: ignore[attr-defined]


def test_seed_host_from_zero_vfs(tmp_path: Path) -> None:
    plan = plan_host(cfg(3), state(tmp_path, 0))
    assert outcomes(plan) == {
        "sriov_numvfs": ("0", "3", Outcome.PENDING),
        "link_up": ("down", "up", Outcome.PENDING),
        "feature": ("off", "on", Outcome.PENDING),
    }
    assert plan.find("sriov_numvfs").what == "sriov_numvfs (max 16)"  # type: ignore[union-attr]
    assert not plan.warnings


def test_configured_host_needs_nothing(tmp_path: Path) -> None:
    plan = plan_host(cfg(3), state(tmp_path, 3, PF_LINK_UP, OFFLOAD_ON))
    assert {o for *_, o in outcomes(plan).values()} == {Outcome.NO_CHANGE}
    assert not plan.changes_anything


def test_fixed_off_offload_is_a_warning_not_a_change(tmp_path: Path) -> None:
    for feature in (OFFLOAD_FIXED, None):
        plan = plan_host(cfg(3), state(tmp_path / str(feature is None), 3, PF_LINK_UP, feature))
        step = plan.find("feature")
        assert step is not None and step.outcome is Outcome.WARNING
        assert step.detail == "not supported by this device"
        assert not plan.changes_anything
        assert any("not supported" in w for w in plan.warnings)


def test_changing_a_nonzero_count_goes_through_zero_and_warns(tmp_path: Path) -> None:
    plan = plan_host(cfg(5), state(tmp_path, 3, PF_LINK_UP, OFFLOAD_ON))
    step = plan.find("sriov_numvfs")
    assert step is not None and (step.current, step.desired) == ("3", "5")
    assert "through 0" in step.detail
    assert any("removes the 3 existing VFs" in w for w in plan.warnings)
    to_zero = plan_host(cfg(0), state(tmp_path / "z", 3, PF_LINK_UP, OFFLOAD_ON)).find(
        "sriov_numvfs"
    )
    assert to_zero is not None and to_zero.detail == ""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_vfs": 17}, r"supports at most 16 VFs \(sriov_totalvfs\); 17 requested"),
        ({"num_vfs": 2, "mgmt_vf": 2}, r"--mgmt-vf 2 is not one of VFs 0\.\.1"),
    ],
)
def test_requests_it_refuses(tmp_path: Path, config: dict[str, int], message: str) -> None:
    with pytest.raises(SetupError, match=message):
        plan_host(cfg(**config), state(tmp_path, 3))


def test_missing_or_unsuitable_pf(tmp_path: Path) -> None:
    base = state(tmp_path, 0)
    with pytest.raises(SetupError, match="no netdev"):
        plan_host(cfg(), HostState(False, None, None, None, ()))
    with pytest.raises(SetupError, match="not an SR-IOV physical function"):
        plan_host(cfg(), HostState(True, None, None, None, ()))
    with pytest.raises(SetupError, match="not in this network namespace"):
        plan_host(cfg(), HostState(True, base.pf, None, None, ()))


@pytest.mark.parametrize(
    "values", [{"num_vfs": -1}, {"mgmt_vf": -1}, {"pf": "a/b"}, {"timeout": 0}]
)
def test_bad_input_is_rejected(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        HostSetupConfig.model_validate({"pf": SEED_PF, "num_vfs": 3, **values})


def test_wait_for_vfs_returns_once_every_vf_has_its_netdev(tmp_path: Path) -> None:
    tree = seed_host(tmp_path, num_vfs=3)
    vfs = wait_for_vfs(tree.sysfs, SEED_PF, 3, timeout=1)
    assert [(v.index, v.netdev) for v in vfs] == [(i, f"enp2s0f0v{i}") for i in range(3)]


def test_wait_for_vfs_times_out_naming_the_missing_ones(tmp_path: Path) -> None:
    tree = seed_host(tmp_path, num_vfs=2)
    # a third VF bound to mlx5_core whose netdev never shows up
    tree.vf(SEED_PF_ADDRESS, 2, ari_address(SEED_PF_ADDRESS, 3, 1, 2))
    with pytest.raises(
        SetupError, match=r"not ready after 0s: no netdev for VF 2 \(0000:02:00\.5\)"
    ):
        wait_for_vfs(tree.sysfs, SEED_PF, 3, timeout=0.3)
    with pytest.raises(SetupError, match="3 of 4 VFs exist"):
        wait_for_vfs(tree.sysfs, SEED_PF, 4, timeout=0.2)


def test_wait_for_vfs_does_not_wait_for_userspace_drivers(tmp_path: Path) -> None:
    tree = seed_host(tmp_path, num_vfs=2)
    tree.vf(SEED_PF_ADDRESS, 2, ari_address(SEED_PF_ADDRESS, 3, 1, 2), driver="vfio-pci")
    assert len(wait_for_vfs(tree.sysfs, SEED_PF, 3, timeout=0.2)) == 3
