"""Property: whatever options one SB Port_Binding carries, planning never crashes and
the good bindings next to it (and the management port) are still planned."""

from __future__ import annotations

from pathlib import Path

from hw_sysfs_tree import DPU_HOST_PF_MACS, bluefield2_dpu
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpunet.dpu.plug import (
    MgmtSpec,
    PlugRequest,
    Reason,
    Refusal,
    parse_request,
    resolve,
    wanted,
)
from dpunet.dpu.sb import PortBindingRow, SbSnapshot
from dpunet.hw.representors import list_representors

NAMES = frozenset({"dpu1"})
KEYS = [
    "dpunet-plug",
    "dpunet-plug:pf-mac",
    "dpunet-plug:vf-num",
    "dpunet-plug-mtu-request",
    "requested-chassis",
    "iface-id-ver",
]
option_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["representor", "dpu1", "dpu1,dpu2", ",", "²", "٣", "-1", " 7 ", "9" * 5000]),
    st.sampled_from(sorted(DPU_HOST_PF_MACS.values())),
    st.integers().map(str),
)
bad_bindings = st.builds(
    lambda options, mac: PortBindingRow("ns_bad", options=options, mac=tuple(mac)),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), option_values, max_size=7),
    st.lists(st.text(max_size=30), max_size=3),
)


def good(lport: str, vf: int) -> PortBindingRow:
    options = {
        "requested-chassis": "dpu1",
        "dpunet-plug": "representor",
        "dpunet-plug:pf-mac": DPU_HOST_PF_MACS[0],
        "dpunet-plug:vf-num": str(vf),
    }
    return PortBindingRow(lport, options=options, mac=("0a:58:c6:12:00:05 198.18.0.5",))


FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def test_one_bad_binding_never_blocks_the_others(tmp_path: Path) -> None:
    representors = list_representors(bluefield2_dpu(tmp_path, vfs_per_pf=3).sysfs)
    mgmt = MgmtSpec(pf_index=0, vf_index=0, name="pf0vf0", iface_id="k8s-host1")

    @FUZZ
    @given(bad=bad_bindings)
    def plan(bad: PortBindingRow) -> None:
        assert isinstance(parse_request(bad), PlugRequest | Refusal)
        sb = SbSnapshot(True, None, (good("ns_a", 1), bad, good("ns_b", 2)))
        requests, refusals = wanted(sb, NAMES)
        assert {"ns_a", "ns_b"} <= {r.logical_port for r in requests}
        assert {r.logical_port for r in refusals} <= {"ns_bad"}
        desired, refused = resolve(requests, representors, mgmt, {})
        planned = {d.iface_id for d in desired.values()}
        assert "k8s-host1" in planned
        conflicts = {r.logical_port for r in refused if r.reason is Reason.CONFLICT}
        for lport in ("ns_a", "ns_b"):  # planned, unless the bad one asks for its VF too
            assert lport in planned or {lport, "ns_bad"} <= conflicts

    plan()
