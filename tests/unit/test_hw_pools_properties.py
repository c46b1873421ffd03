"""Property tests: the `#` range parser and the pool matcher."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dpunet.hw.pools import (
    DeviceSelector,
    ManagementVf,
    PoolConfig,
    PoolDevice,
    assign_pools,
    parse_function_ranges,
    parse_pf_selector_entry,
    parse_pool_config,
)

# --- ranges -------------------------------------------------------------------------------

spans = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 40)).map(lambda s: (s[0], s[0] + s[1])),
    min_size=1,
    max_size=6,
)


def format_spans(items: list[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in items)


@given(spans)
def test_ranges_select_exactly_the_listed_indices(items: list[tuple[int, int]]) -> None:
    text = format_spans(items)
    parsed = parse_function_ranges(text)
    expected = {i for a, b in items for i in range(a, b + 1)}
    assert {i for i in range(0, 345) if i in parsed} == expected
    assert str(parsed) == text


@given(st.text(alphabet="0123456789,- x#", max_size=20))
def test_range_parser_accepts_or_explains(text: str) -> None:
    try:
        parsed = parse_function_ranges(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert all(0 <= a <= b for a, b in parsed.spans)
        assert parse_function_ranges(str(parsed)) == parsed


@given(st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True), spans, st.integers(0, 400))
def test_entry_selects_vf_iff_in_its_ranges(
    name: str, items: list[tuple[int, int]], vf: int
) -> None:
    entry = parse_pf_selector_entry(f"{name}#{format_spans(items)}")
    assert entry.pf == name
    assert entry.selects(vf) == any(a <= vf <= b for a, b in items)


# --- matcher ------------------------------------------------------------------------------

PF_NAMES = ("enp2s0f0np0", "ens1f0")


@st.composite
def pool_devices(draw: st.DrawFn) -> list[PoolDevice]:
    count = draw(st.integers(0, 12))
    devices = []
    for n in range(count):
        is_vf = draw(st.booleans())
        pf = draw(st.sampled_from(PF_NAMES)) if is_vf else None
        netdev = draw(st.sampled_from([f"eth{n}", "eno1", None]))
        devices.append(
            PoolDevice(
                address=f"0000:{n + 1:02x}:00.0",
                vendor=draw(st.sampled_from(["15b3", "8086"])),
                device=draw(st.sampled_from(["101e", "101d", "1889"])),
                driver=draw(st.sampled_from(["mlx5_core", "vfio-pci", None])),
                netdev=netdev,
                netdevs=(netdev,) if netdev else (),
                link_type=draw(st.sampled_from(["ether", "infiniband", None])),
                is_rdma=draw(st.booleans()),
                pf_address="0000:02:00.0" if is_vf else None,
                pf_netdev=pf,
                vf_index=draw(st.integers(0, 7)) if is_vf else None,
                num_vfs=None if is_vf else draw(st.sampled_from([None, 0, 3])),
            )
        )
    return devices


def subset(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


pf_entries = st.lists(
    st.tuples(
        st.sampled_from(PF_NAMES).flatmap(lambda n: st.sampled_from([n, n.upper()])),
        st.one_of(
            st.none(),
            spans.map(lambda s: [(a % 8, b % 8) for a, b in s if a % 8 <= b % 8] or [(0, 0)]),
        ),
    ),
    min_size=1,
    max_size=2,
    unique_by=lambda e: e[0].casefold(),
).map(lambda es: [name if r is None else f"{name}#{format_spans(r)}" for name, r in es])

selector_dicts = st.fixed_dictionaries(
    {},
    optional={
        "vendors": subset(["15b3", "8086"]),
        "devices": subset(["101e", "101d", "1889"]),
        "drivers": subset(["mlx5_core", "vfio-pci"]),
        "pfNames": pf_entries,
        "linkTypes": subset(["ether", "infiniband"]),
        "isRdma": st.booleans(),
    },
)

configs = st.lists(st.lists(selector_dicts, min_size=1, max_size=3), max_size=4).map(
    lambda resources: parse_pool_config(
        {
            "resourceList": [
                {"resourceName": f"r{i}", "selectors": s} for i, s in enumerate(resources)
            ]
        }
    )
)


def eligible(device: PoolDevice, routed: set[str], mgmt: list[ManagementVf]) -> bool:
    return not (
        set(device.netdevs) & routed or device.num_vfs or any(m.is_device(device) for m in mgmt)
    )


@given(configs, pool_devices(), st.sets(st.sampled_from(["eno1", "eth0"])), st.booleans())
def test_each_device_lands_in_its_first_matching_resource(
    config: PoolConfig, devices: list[PoolDevice], routed: set[str], with_mgmt: bool
) -> None:
    mgmt = [ManagementVf("enp2s0f0np0", 0)] if with_mgmt else []
    assignment = assign_pools(config, devices, default_route_netdevs=routed, management_vfs=mgmt)
    placed = {d.address: pool.resource for pool in assignment.pools for d in pool.devices}
    excluded = {e.device.address for e in assignment.excluded}
    # A partition of the candidates.
    assert placed.keys().isdisjoint(excluded)
    assert set(placed) | excluded == {d.address for d in devices}
    assert sum(len(pool.devices) for pool in assignment.pools) == len(placed)
    for device in devices:
        matching = [
            r.full_name for r in config.resource_list if any(s.matches(device) for s in r.selectors)
        ]
        if eligible(device, routed, mgmt) and matching:
            assert placed[device.address] == matching[0]
        else:
            assert device.address in excluded


@given(configs, st.lists(selector_dicts, min_size=1, max_size=2), pool_devices())
def test_appending_a_resource_never_changes_earlier_pools(
    config: PoolConfig, extra: list[dict[str, Any]], devices: list[PoolDevice]
) -> None:
    before = assign_pools(config, devices)
    raw = [
        {"resourceName": r.resource_name, "selectors": r.selectors} for r in config.resource_list
    ]
    bigger = PoolConfig.model_validate(
        {"resourceList": [*raw, {"resourceName": "appended", "selectors": extra}]}
    )
    after = assign_pools(bigger, devices)
    assert after.pools[: len(before.pools)] == before.pools


@given(selector_dicts, pool_devices())
def test_selector_keys_are_anded(selector: dict[str, Any], devices: list[PoolDevice]) -> None:
    whole = DeviceSelector.model_validate(selector)
    singles = [DeviceSelector.model_validate({key: value}) for key, value in selector.items()]
    for device in devices:
        assert whole.matches(device) == all(single.matches(device) for single in singles)


@given(pf_entries, pool_devices())
def test_pfnames_match_case_insensitively_and_only_vfs(
    entries: list[str], devices: list[PoolDevice]
) -> None:
    selector = DeviceSelector.model_validate({"pfNames": entries})
    for device in devices:
        expected = False
        if device.vf_index is not None and device.pf_netdev is not None:
            for text in entries:
                name, _, ranges = text.partition("#")
                if name.casefold() == device.pf_netdev.casefold():
                    indices = parse_function_ranges(ranges) if ranges else None
                    expected = indices is None or device.vf_index in indices
        assert selector.matches(device) == expected
