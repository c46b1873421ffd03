"""IPAM: node subnets, pod addresses, MACs (pure logic, plus property tests)."""

from __future__ import annotations

import asyncio
import random
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpunet.controller.ipam import (
    AddressInUse,
    AddressPool,
    HostPool,
    PoolExhausted,
    SubnetPool,
    mac_for_ip,
    mgmt_interface,
    router_interface,
)

NET = IPv4Network("10.233.64.0/24")


def test_mac_is_0a58_plus_the_address_bytes() -> None:
    assert mac_for_ip(IPv4Address("10.233.64.5")) == "0a:58:0a:e9:40:05"
    assert mac_for_ip(IPv4Address("198.18.1.254")) == "0a:58:c6:12:01:fe"


def test_router_and_management_addresses() -> None:
    assert str(router_interface(NET)) == "10.233.64.1/24"
    assert str(mgmt_interface(NET)) == "10.233.64.2/24"


def test_pool_hands_out_pod_addresses_only() -> None:
    pool = AddressPool(IPv4Network("10.0.0.0/29"))
    got = [pool.allocate() for _ in range(pool.capacity)]
    assert [str(a) for a in got] == ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(PoolExhausted, match=r"no free address left in 10\.0\.0\.0/29"):
        pool.allocate()
    pool.release(got[1])
    assert pool.allocate() == got[1]


def test_pool_is_round_robin_and_does_not_reuse_a_just_released_address() -> None:
    pool = AddressPool(NET)
    first = pool.allocate()
    pool.commit(first)
    pool.release(first)
    assert pool.allocate() != first


def test_pending_and_committed_both_count_as_taken() -> None:
    pool = AddressPool(NET)
    a = pool.allocate()
    assert pool.is_taken(a) and a in pool.pending and pool.free == pool.capacity - 1
    pool.commit(a)
    assert a in pool.used and not pool.pending
    with pytest.raises(AddressInUse):
        pool.reserve(a)
    with pytest.raises(ValueError, match="not a pod address"):
        pool.reserve(IPv4Address("10.233.64.2"))


def test_resync_makes_used_equal_nb_and_keeps_pending() -> None:
    pool = AddressPool(NET)
    kept, dropped = pool.allocate(), pool.allocate()
    pool.commit(kept)
    pool.commit(dropped)
    pending = pool.allocate()
    found = IPv4Address("10.233.64.200")
    added, removed = pool.resync([kept, found])
    assert added == {found} and removed == {dropped}
    assert pool.used == {kept, found} and pool.pending == {pending}


def test_too_small_subnet_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        AddressPool(IPv4Network("10.0.0.0/30"))


def test_subnet_pool_carves_node_subnets_and_avoids_foreign_ones() -> None:
    pool = SubnetPool(IPv4Network("10.233.64.0/18"), 24)
    assert pool.capacity == 64
    assert str(pool.allocate()) == "10.233.64.0/24"
    pool.reserve(IPv4Network("10.233.65.0/25"))  # from an older node prefix
    assert not pool.owns(IPv4Network("10.233.65.0/25"))
    assert str(pool.allocate()) == "10.233.66.0/24"
    with pytest.raises(AddressInUse):
        pool.reserve(IPv4Network("10.233.66.0/24"))
    for _ in range(pool.free):
        pool.allocate()
    with pytest.raises(PoolExhausted, match="no free /24 left"):
        pool.allocate()


def test_host_pool_skips_reserved_hosts() -> None:
    pool = HostPool(IPv4Network("100.64.0.0/29"), skip=1)
    assert [str(pool.allocate()) for _ in range(5)] == [f"100.64.0.{i}" for i in range(2, 7)]
    with pytest.raises(PoolExhausted):
        pool.allocate()
    with pytest.raises(ValueError):
        pool.reserve(IPv4Address("100.64.0.1"))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), st.just(0)),
        st.tuples(st.just("commit"), st.integers(0, 300)),
        st.tuples(st.just("release"), st.integers(0, 300)),
        st.tuples(st.just("resync"), st.integers(0, 300)),
    ),
    max_size=400,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, prefix=st.integers(24, 29))
def test_property_no_address_is_ever_held_twice(ops: list[tuple[str, int]], prefix: int) -> None:
    """Whatever the interleaving of allocate/commit/release/resync, every address held
    (handed out and not released) is unique, inside the pod range, and the counts add up."""
    subnet = IPv4Network(f"10.1.0.0/{prefix}")
    pool = AddressPool(subnet)
    held: list[IPv4Address] = []
    for op, n in ops:
        if op == "allocate":
            try:
                ip = pool.allocate()
            except PoolExhausted:
                assert pool.free == 0
                continue
            assert ip not in held
            held.append(ip)
        elif held and op == "commit":
            pool.commit(held[n % len(held)])
        elif held and op == "release":
            pool.release(held.pop(n % len(held)))
        elif op == "resync":
            # NB holds exactly the committed addresses; pending ones survive a resync
            pool.resync(set(held) - pool.pending)
        assert len(set(held)) == len(held)
        assert pool.used | pool.pending == set(held)
        assert pool.free == pool.capacity - len(held)
        for ip in held:
            assert pool.contains(ip) and int(ip) - int(subnet.network_address) >= 3
            assert ip != subnet.broadcast_address


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 64), prefix=st.integers(20, 26))
def test_property_subnets_never_overlap(n: int, prefix: int) -> None:
    pool = SubnetPool(IPv4Network("10.0.0.0/16"), prefix)
    got = []
    for _ in range(min(n, pool.capacity)):
        got.append(pool.allocate())
    for i, a in enumerate(got):
        assert a.subnet_of(pool.cidr)
        assert not any(a.overlaps(b) for b in got[i + 1 :])


def test_200_concurrent_allocations_with_slow_writes_never_collide() -> None:
    """The controller's pattern: allocate on the loop, await a slow NB write, then commit
    or release; 200 concurrent requests, a fifth of the writes failing."""
    pool = AddressPool(NET)
    rng = random.Random(7)
    results: list[IPv4Address] = []

    async def request(i: int) -> None:
        ip = pool.allocate()
        await asyncio.sleep(rng.random() / 100)
        if i % 5 == 0:
            pool.release(ip)  # the write failed
            ip = pool.allocate()  # the client retried
            await asyncio.sleep(rng.random() / 100)
        pool.commit(ip)
        results.append(ip)

    async def main() -> None:
        await asyncio.gather(*(request(i) for i in range(200)))

    asyncio.run(main())
    assert len(results) == 200 and len(set(results)) == 200
    assert pool.used == set(results) and not pool.pending
    assert len({mac_for_ip(ip) for ip in results}) == 200
