"""The LSP schema of `dpunet.contract.lsp`: what the controller writes reads back the same
through the parsers the DPU agent and verify use; anything else is refused per record."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpunet.contract import lsp
from dpunet.contract.lsp import PlugMode, PodIds, VfPlug

DNS_LABEL = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
TOKEN = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,30}\Z")
MAC = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b)
)
PLUGS = st.builds(
    VfPlug, pf_mac=MAC, vf_num=st.integers(0, 4095), mtu=st.none() | st.integers(68, 65535)
)


@st.composite
def pod_ids(draw: st.DrawFn) -> PodIds:
    vf = draw(st.none() | st.tuples(MAC, st.integers(0, 4095)))
    return PodIds(
        namespace=draw(DNS_LABEL),
        pod=draw(DNS_LABEL),
        uid=draw(TOKEN),
        sandbox=draw(TOKEN),
        ifname=draw(st.from_regex(r"\A[a-z][a-z0-9]{0,14}\Z")),
        network=draw(st.none() | TOKEN),
        pci=None if vf is None else "0000:02:00.2",
        pf_mac=None if vf is None else vf[0],
        vf_num=None if vf is None else vf[1],
        labels=tuple(sorted(draw(st.dictionaries(TOKEN, TOKEN, max_size=3)).items())),
    )


@given(pod_ids())
def test_pod_external_ids_round_trip(ids: PodIds) -> None:
    assert PodIds.parse(ids.external_ids()) == ids


@given(PLUGS, TOKEN, st.none() | TOKEN)
def test_agent_plug_options_round_trip(plug: VfPlug, chassis: str, ver: str | None) -> None:
    options = lsp.lsp_options(chassis, plug, PlugMode.AGENT, iface_id_ver=ver)
    assert lsp.agent_plugs(options) and lsp.representor_wanted(options)
    assert lsp.parse_vf_plug(options) == plug
    assert lsp.requested_chassis(options) == chassis
    assert options.get(lsp.IFACE_ID_VER) == ver


@given(PLUGS, TOKEN)
def test_ovn_plug_options_are_for_ovn_controller_only(plug: VfPlug, chassis: str) -> None:
    options = lsp.lsp_options(chassis, plug, PlugMode.OVN)
    assert lsp.representor_wanted(options) and not lsp.agent_plugs(options)
    assert options[lsp.OVN_PLUG_PF_MAC] == plug.pf_mac
    assert options[lsp.OVN_PLUG_VF_NUM] == str(plug.vf_num)


def test_a_port_without_a_vf_asks_for_no_representor() -> None:
    options = lsp.lsp_options("dpu1", iface_id_ver="u1")
    assert options == {lsp.REQUESTED_CHASSIS: "dpu1", lsp.IFACE_ID_VER: "u1"}
    assert not lsp.representor_wanted(options)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({lsp.PLUG_PF_MAC: "nope", lsp.PLUG_VF_NUM: "1"}, "is not a MAC"),
        ({lsp.PLUG_PF_MAC: "02:00:00:00:00:01", lsp.PLUG_VF_NUM: "-1"}, "is not a VF index"),
        ({lsp.PLUG_PF_MAC: "02:00:00:00:00:01", lsp.PLUG_VF_NUM: "²"}, "is not a VF index"),
        ({lsp.PLUG_PF_MAC: "02:00:00:00:00:01"}, "is not a VF index"),
        (
            {lsp.PLUG_PF_MAC: "02:00:00:00:00:01", lsp.PLUG_VF_NUM: "1", lsp.PLUG_MTU: "67"},
            "is not an MTU",
        ),
    ],
)
def test_bad_plug_options_are_refused_with_the_key(options: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        lsp.parse_vf_plug(options)


@pytest.mark.parametrize(
    "external_ids",
    [
        {lsp.NAMESPACE: "ns", lsp.POD: "p", lsp.UID: "u"},  # no sandbox
        {lsp.NAMESPACE: "ns", lsp.POD: "p", lsp.UID: "u", lsp.SANDBOX: "s", lsp.VF_NUM: "x"},
        {lsp.NAMESPACE: "ns", lsp.POD: "p", lsp.UID: "u", lsp.SANDBOX: "s", lsp.NETWORK: "a b"},
        {lsp.NAMESPACE: "ns", lsp.POD: "p", lsp.UID: "u", lsp.SANDBOX: "s", lsp.NETWORK: "a\n"},
    ],
)
def test_pod_ids_that_were_not_written_by_the_controller_are_refused(
    external_ids: dict[str, str],
) -> None:
    with pytest.raises((KeyError, ValueError)):
        PodIds.parse(external_ids)


def test_secondary_port_names_follow_ovn_kubernetes() -> None:
    assert lsp.pod_lsp_name("default", "web-0") == "default_web-0"
    assert lsp.pod_lsp_name("default", "web-0", "sriov-net-a") == "sriov.net.a_default_web-0"
    ids = PodIds("default", "web-0", "u", "s", "net1", network="sriov-net-a")
    assert ids.lsp_name == "sriov.net.a_default_web-0"
