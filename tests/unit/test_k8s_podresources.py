"""Finding a pod's VF through kubelet's PodResources API, served by a fake kubelet."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hw_sysfs_tree import SEED_CONFIGMAP, seed_host
from pod_agent_fakes import holding

from dpunet.cni.binding.vf import VfAttacher
from dpunet.cni.models import AddRequest, parse_netconf
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.host.kubelet.podresources import (
    SOCKET,
    PodResourcesResolver,
    choose_primary_vf,
    matching_resources,
    pod_devices,
)
from dpunet.hw.pools import load_pool_config
from fakekubelet import FakeKubelet

RESOURCE = "mellanox.com/mlnx_sriov_cx6"
OTHER = "mellanox.com/other"
VF1, VF2, VF3 = "0000:02:00.4", "0000:02:00.5", "0000:02:00.6"


def add_request(pod: str | None = "web", **config: Any) -> AddRequest:
    args = {"K8S_POD_NAMESPACE": "prod", "K8S_POD_NAME": pod} if pod else {}
    netconf = {"cniVersion": "0.3.1", "name": "ovn-kubernetes", "type": "dpunet-cni", **config}
    return AddRequest(
        command="ADD",
        cni_version="0.3.1",
        config=parse_netconf(netconf),
        raw_config="{}",
        args=args,
        container_id="c1",
        ifname="eth0",
        netns="/run/netns/x",
    )


@pytest.fixture
def kubelet_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dpr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def resolve_with(
    kubelet_dir: Path, setup: Any, req: AddRequest, held: set[str] | None = None
) -> str | None:
    """Run `resolver(req, held)` in a thread while a fake kubelet serves."""

    async def scenario() -> str | None:
        kubelet = FakeKubelet(kubelet_dir)
        setup(kubelet)
        await kubelet.start()
        try:
            resolver = PodResourcesResolver(kubelet_dir / SOCKET, [RESOURCE, OTHER], timeout=2)
            return await asyncio.to_thread(resolver, req, held or set())
        finally:
            await kubelet.stop()

    return asyncio.run(scenario())


# --- the rule ----------------------------------------------------------------------------


def test_last_free_device_is_the_primary() -> None:
    assert choose_primary_vf([VF1, VF2, VF3], set()) == VF3
    assert choose_primary_vf([VF1, VF2, VF3], {VF3}) == VF2
    assert choose_primary_vf([VF1], {VF1}) is None


def test_pod_devices_in_kubelet_order_across_containers() -> None:
    kubelet = FakeKubelet(Path("/nonexistent"))
    kubelet.add_pod("prod", "web", {RESOURCE: [VF2]}, {RESOURCE: [VF1, VF2], OTHER: [VF3]})
    kubelet.add_pod("prod", "db", {RESOURCE: [VF3]})
    assert pod_devices(kubelet.pods, "prod", "web") == {RESOURCE: [VF2, VF1], OTHER: [VF3]}
    assert pod_devices(kubelet.pods, "dev", "web") == {}


def test_matching_resources() -> None:
    assert matching_resources(None, [RESOURCE, OTHER]) == [RESOURCE, OTHER]
    assert matching_resources("mlnx_sriov_cx6", [RESOURCE, OTHER]) == [RESOURCE]
    assert matching_resources(OTHER, [RESOURCE, OTHER]) == [OTHER]
    assert matching_resources("x", [RESOURCE]) == []


# --- against kubelet ---------------------------------------------------------------------


def test_single_vf_pod(kubelet_dir: Path) -> None:
    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {RESOURCE: [VF2]})
        kubelet.add_pod("prod", "other", {RESOURCE: [VF1]})

    assert resolve_with(kubelet_dir, setup, add_request()) == VF2


def test_multus_secondaries_keep_the_first_devices(kubelet_dir: Path) -> None:
    """Two secondary networks of the resource get VF1 and VF2 from multus (kubelet order,
    from index 0); the primary must be VF3."""

    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {RESOURCE: [VF1, VF2, VF3]})

    assert resolve_with(kubelet_dir, setup, add_request()) == VF3
    # VF3 already attached by another sandbox (e.g. a second dpunet network): the next one
    assert resolve_with(kubelet_dir, setup, add_request(), held={VF3}) == VF2


def test_resource_name_in_config_selects_the_pool(kubelet_dir: Path) -> None:
    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {RESOURCE: [VF1], OTHER: [VF3]})

    assert resolve_with(kubelet_dir, setup, add_request(resourceName="other")) == VF3
    assert resolve_with(kubelet_dir, setup, add_request()) == VF1  # first pool by config order


def test_pod_without_the_resource(kubelet_dir: Path) -> None:
    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {"example.com/gpu": ["g0"]})

    with pytest.raises(CniError) as caught:
        resolve_with(kubelet_dir, setup, add_request())
    assert caught.value.code == ErrorCode.NO_DEVICE
    assert "kubelet allocated no" in caught.value.msg and "prod/web" in caught.value.msg


def test_every_vf_taken(kubelet_dir: Path) -> None:
    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {RESOURCE: [VF1]})

    with pytest.raises(CniError) as caught:
        resolve_with(kubelet_dir, setup, add_request(), held={VF1})
    assert caught.value.code == ErrorCode.NO_DEVICE


def test_unknown_pool_in_config(kubelet_dir: Path) -> None:
    with pytest.raises(CniError) as caught:
        resolve_with(kubelet_dir, lambda k: None, add_request(resourceName="nope"))
    assert caught.value.code == ErrorCode.NO_DEVICE


def test_no_pod_name_means_no_answer(kubelet_dir: Path) -> None:
    assert resolve_with(kubelet_dir, lambda k: None, add_request(pod=None)) is None


def test_kubelet_unreachable_is_try_again(kubelet_dir: Path) -> None:
    resolver = PodResourcesResolver(kubelet_dir / SOCKET, [RESOURCE], timeout=0.5)
    with pytest.raises(CniError) as caught:
        resolver(add_request(), set())
    assert caught.value.code == ErrorCode.TRY_AGAIN_LATER


# --- the hook in VfAttacher.claim --------------------------------------------------------


class Described(VfAttacher):
    """The attacher with the netlink lookup of the chosen VF left out."""

    def _describe(self, pci: str, resource: str) -> dict[str, Any]:
        return {"pci": pci, "resource": resource}


def test_claim_asks_the_resolver(tmp_path: Path) -> None:
    tree = seed_host(tmp_path / "sys")
    (tmp_path / "cm.yaml").write_text(SEED_CONFIGMAP)
    pools = load_pool_config(tmp_path / "cm.yaml", "mellanox.com")
    asked: list[tuple[bool, bool]] = []

    def resolver(req: AddRequest, held: Any) -> str | None:
        asked.append((VF1 in held, VF2 in held))
        return req.config.vf_pci_address or (VF1 if req.pod_name else None)

    attacher = Described(tree.sysfs, pools, resolver=resolver)
    assert attacher.claim(add_request(), holding(VF2))["pci"] == VF1
    assert asked == [(False, True)]
    assert attacher.claim(add_request(deviceID=VF2), holding())["pci"] == VF2
    assert len(asked) == 2  # multus named the VF: kubelet's allocation is checked
    assert attacher.claim(add_request(pod=None), holding())["pci"] == VF1  # standalone: the pool
    with pytest.raises(CniError, match="already in use"):
        Described(tree.sysfs, pools, resolver=lambda r, h: VF2).claim(add_request(), holding(VF2))
    with pytest.raises(CniError, match="not one this node hands out"):
        stranger = Described(tree.sysfs, pools, resolver=lambda r, h: "0000:02:00.3")
        stranger.claim(add_request(), holding())
    asked.clear()
    with pytest.raises(CniError, match="already in use"):  # the claim is tried twice ...
        attacher.claim(add_request(), holding(VF1))
    assert len(asked) == 1  # ... kubelet is asked once


def test_a_device_id_must_be_one_kubelet_gave_the_pod(kubelet_dir: Path) -> None:
    """A config's deviceID is checked against kubelet's allocation: a NetworkAttachment-
    Definition naming another pod's VF gets no VF."""

    def setup(kubelet: FakeKubelet) -> None:
        kubelet.add_pod("prod", "web", {RESOURCE: [VF1, VF2]})
        kubelet.add_pod("prod", "other", {RESOURCE: [VF3]})

    assert resolve_with(kubelet_dir, setup, add_request(deviceID=VF1)) == VF1
    assert resolve_with(kubelet_dir, setup, add_request(pciBusID=VF2), held={VF1}) == VF2
    for other in (VF3, "0000:02:00.7"):
        with pytest.raises(CniError) as caught:
            resolve_with(kubelet_dir, setup, add_request(deviceID=other))
        assert caught.value.code == ErrorCode.NO_DEVICE
        assert f"VF {other} is not one kubelet allocated to pod prod/web" in caught.value.msg
        assert f"{VF1}, {VF2}" in caught.value.details
    # no Kubernetes pod named: nothing to check against
    assert resolve_with(kubelet_dir, setup, add_request(pod=None, deviceID=VF3)) == VF3


def test_claim_asks_the_resolver_about_a_device_id(tmp_path: Path) -> None:
    tree = seed_host(tmp_path / "sys")
    (tmp_path / "cm.yaml").write_text(SEED_CONFIGMAP)
    pools = load_pool_config(tmp_path / "cm.yaml", "mellanox.com")

    def resolver(req: AddRequest, held: Any) -> str | None:
        raise CniError(ErrorCode.NO_DEVICE, f"VF {req.config.vf_pci_address} is not the pod's")

    with pytest.raises(CniError, match="is not the pod's"):
        Described(tree.sysfs, pools, resolver=resolver).claim(add_request(deviceID=VF2), holding())


def test_a_claim_waiting_for_another_discovery_counts_it_as_its_wait(tmp_path: Path) -> None:
    """Only one discovery at a time: a claim that needs one while another runs waits for it
    (and uses its result), and that time is the claim's `waited`."""
    import threading
    import time

    from dpunet.cni.claims import DeviceClaims

    tree = seed_host(tmp_path / "sys")
    (tmp_path / "cm.yaml").write_text(SEED_CONFIGMAP)
    attacher = Described(tree.sysfs, load_pool_config(tmp_path / "cm.yaml", "mellanox.com"))
    attacher._discovery.acquire()  # another caller's discovery in progress
    claims = DeviceClaims()
    with claims.claiming() as claim:
        thread = threading.Thread(target=attacher.assignment, args=(True, claim))
        thread.start()
        time.sleep(0.05)
        attacher._discovery.release()
        thread.join(5)
        assert claim.waited >= 0.05
        assert attacher.assignment(False, claim).pools
