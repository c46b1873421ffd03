"""A VF whose pod's namespace died without a DEL: the kernel returns it to the host only once
it has torn that namespace down, so DEL waits for it (`returned_netdev`) rather than
failing while it is on its way."""

from __future__ import annotations

import threading
from pathlib import Path

from hw_sysfs_tree import SEED_PF_ADDRESS, SEED_VF_OFFSET, ari_address, seed_host

from dpunet.cni.binding.vf import returned_netdev
from dpunet.hw.host import function_netdev

VF1 = ari_address(SEED_PF_ADDRESS, SEED_VF_OFFSET, 1, 1)


def test_a_vf_the_kernel_returns_while_del_waits_is_found(tmp_path: Path) -> None:
    tree = seed_host(tmp_path / "sys")
    tree.move_to_other_netns("enp2s0f0v1")  # into the pod, whose namespace then dies
    assert function_netdev(tree.sysfs, VF1) is None
    back = threading.Timer(0.1, lambda: tree.netdev("dev5", pci=VF1))  # as the kernel names it
    back.start()
    try:
        assert returned_netdev(tree.sysfs, VF1, wait=10) == "dev5"
    finally:
        back.cancel()


def test_a_vf_that_does_not_come_back_is_none_after_the_wait(tmp_path: Path) -> None:
    tree = seed_host(tmp_path / "sys")
    tree.move_to_other_netns("enp2s0f0v1")
    assert returned_netdev(tree.sysfs, VF1, wait=0.1) is None
    assert returned_netdev(tree.sysfs, ari_address(SEED_PF_ADDRESS, SEED_VF_OFFSET, 1, 2)) == (
        "enp2s0f0v2"
    )  # one in the host: no wait
