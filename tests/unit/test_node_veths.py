"""Pure parts of the full node's veth attacher: names, claims, the stale sweep."""

from __future__ import annotations

import pytest
from pod_agent_fakes import holding

from dpunet.cni.binding.veth import (
    HOST_PREFIX,
    POD_PREFIX,
    VethAttacher,
    lsp_name,
    stale,
    veth_names,
)
from dpunet.cni.models import AddRequest, parse_netconf
from dpunet.cni.sandboxes import SandboxRecord, VethDevice
from dpunet.cni.wire import CniError, ErrorCode
from dpunet.ovsdb.local import OvsPort

OWNED = {"dpunet-owned": "true"}


def add_request(container_id: str, ifname: str = "eth0") -> AddRequest:
    config = parse_netconf({"cniVersion": "1.0.0", "name": "dpunet", "type": "dpunet-cni"})
    return AddRequest(
        command="ADD",
        cni_version="1.0.0",
        config=config,
        raw_config="{}",
        container_id=container_id,
        ifname=ifname,
        netns="/run/netns/x",
    )


def test_veth_names_are_stable_short_and_distinct() -> None:
    host, pod = veth_names("0123456789abcdef" * 4)
    assert (host, pod) == veth_names("0123456789abcdef" * 4)
    assert host.startswith(HOST_PREFIX) and pod.startswith(POD_PREFIX)
    assert len(host) == len(pod) == 15
    assert host[3:] == pod[3:]
    assert veth_names("a")[0] != veth_names("b")[0]


def test_lsp_names_follow_the_ovn_kubernetes_convention() -> None:
    device = VethDevice(veth="dpv1", peer="dpt1")
    primary = SandboxRecord("c1", "/run/netns/x", "eth0", "prod", "web-0", "uid", device)
    assert lsp_name(primary) == "prod_web-0"
    secondary = SandboxRecord(
        "c1", "/run/netns/x", "net1", "prod", "web-0", "uid", device, network="sriov-a"
    )
    assert lsp_name(secondary) == "sriov.a_prod_web-0"


def test_claim_names_the_pair_per_attachment_and_refuses_a_clash() -> None:
    attacher = VethAttacher(ovs=None, bridge="br-int")  # type: ignore[arg-type]
    device = attacher.claim(add_request("c1"), holding())
    host, pod = veth_names("c1")
    assert device == VethDevice(veth=host, peer=pod)
    second = attacher.claim(add_request("c1", ifname="net1"), holding(host))
    assert second.veth not in (host, pod) and second == VethDevice(
        veth=veth_names("c1", "net1")[0], peer=veth_names("c1", "net1")[1]
    )
    with pytest.raises(CniError) as err:
        attacher.claim(add_request("c1"), holding(host))
    assert err.value.code == ErrorCode.NO_DEVICE


def test_stale_lists_only_owned_dpunet_veths_of_unknown_sandboxes() -> None:
    known, gone = veth_names("known"), veth_names("gone")
    ports = [
        OvsPort(known[0], "br-int", OWNED),
        OvsPort(gone[0], "br-int", OWNED),
        OvsPort("dpvforeign00000", "br-int", {"iface-id": "x"}),  # not ours
        OvsPort(veth_names("other-bridge")[0], "br-ex", OWNED),
        OvsPort("ovn-k8s-mp0", "br-int", OWNED),
        OvsPort("pf0vf1", "br-int", OWNED),
    ]
    links = [known[0], known[1], gone[0], gone[1], "eth0", "ovn-k8s-mp0", "veth1234"]
    stale_ports, stale_links = stale(ports, links, "br-int", set(known))
    assert stale_ports == [gone[0]]
    assert stale_links == [gone[0], gone[1]]
