"""Address management: node subnets from the cluster CIDR, addresses inside a node subnet.

Pure bookkeeping, no I/O. The controller rebuilds these pools from OVN Northbound on
start (`reserve`), so NB stays the only durable record. Allocation is round-robin
(the next free address after the last one handed out) so a just-released address is
not reused at once, which keeps stale ARP entries and conntrack state from biting.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

ROUTER_OFFSET = 1  # .1: rtos-<node>, the pods' gateway
MGMT_OFFSET = 2  # .2: k8s-<node>, the management port
FIRST_POD_OFFSET = 3


class PoolExhausted(Exception):
    """No free subnet or address is left."""


class AddressInUse(Exception):
    """An address or subnet is already allocated."""


def mac_for_ip(ip: IPv4Address) -> str:
    """The OVN-Kubernetes MAC of an address: `0a:58:` + the four IPv4 bytes."""
    return "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)


def router_ip(subnet: IPv4Network) -> IPv4Address:
    """The gateway (`rtos-<node>`) address of a node subnet."""
    return subnet.network_address + ROUTER_OFFSET


def mgmt_ip(subnet: IPv4Network) -> IPv4Address:
    """The management port (`k8s-<node>`) address of a node subnet."""
    return subnet.network_address + MGMT_OFFSET


def _interface(ip: IPv4Address, subnet: IPv4Network) -> IPv4Interface:
    return IPv4Interface(f"{ip}/{subnet.prefixlen}")


def router_interface(subnet: IPv4Network) -> IPv4Interface:
    """`rtos-<node>` address in CIDR form."""
    return _interface(router_ip(subnet), subnet)


def mgmt_interface(subnet: IPv4Network) -> IPv4Interface:
    """`k8s-<node>` address in CIDR form."""
    return _interface(mgmt_ip(subnet), subnet)


class AddressPool:
    """Pod addresses of one node subnet: everything but network, .1, .2 and broadcast.

    `pending` addresses are handed out but not yet confirmed in NB; they count as used.
    """

    def __init__(self, subnet: IPv4Network) -> None:
        if subnet.num_addresses < 8:
            raise ValueError(f"subnet {subnet} is too small for pods (need at least a /29)")
        self.subnet = subnet
        self._first = int(subnet.network_address) + FIRST_POD_OFFSET
        self._last = int(subnet.broadcast_address) - 1
        self._used: set[int] = set()
        self._pending: set[int] = set()
        self._next = self._first
        self.version = 0  # bumped on every change; lets a rebuild detect concurrent work

    @property
    def capacity(self) -> int:
        """How many pod addresses the subnet holds."""
        return self._last - self._first + 1

    @property
    def free(self) -> int:
        """Addresses neither used nor pending."""
        return self.capacity - len(self._used) - len(self._pending)  # (never both)

    @property
    def used(self) -> frozenset[IPv4Address]:
        """Confirmed addresses."""
        return frozenset(IPv4Address(i) for i in self._used)

    @property
    def pending(self) -> frozenset[IPv4Address]:
        """Addresses handed out whose NB write has not been confirmed."""
        return frozenset(IPv4Address(i) for i in self._pending)

    def contains(self, ip: IPv4Address) -> bool:
        """True when `ip` is a pod address of this subnet (not network, .1, .2, broadcast)."""
        return self._first <= int(ip) <= self._last

    def is_taken(self, ip: IPv4Address) -> bool:
        """True when `ip` is used or pending."""
        return int(ip) in self._used or int(ip) in self._pending

    def allocate(self) -> IPv4Address:
        """Hand out the next free address (pending until `commit`); PoolExhausted if none."""
        span = self.capacity
        for step in range(span):
            candidate = self._first + (self._next - self._first + step) % span
            if candidate not in self._used and candidate not in self._pending:
                self._pending.add(candidate)
                self._next = self._first + (candidate - self._first + 1) % span
                self.version += 1
                return IPv4Address(candidate)
        raise PoolExhausted(f"no free address left in {self.subnet} ({span} in use)")

    def commit(self, ip: IPv4Address) -> None:
        """The NB write of a pending address succeeded: it is used now."""
        self._pending.discard(int(ip))
        self._used.add(int(ip))
        self.version += 1

    def reserve(self, ip: IPv4Address) -> None:
        """Mark an address found in NB as used; AddressInUse when it already is."""
        if not self.contains(ip):
            raise ValueError(f"{ip} is not a pod address of {self.subnet}")
        if self.is_taken(ip):
            raise AddressInUse(f"{ip} is already allocated in {self.subnet}")
        self._used.add(int(ip))
        self.version += 1

    def release(self, ip: IPv4Address) -> None:
        """Return an address (used or pending) to the pool; unknown addresses are ignored."""
        self._used.discard(int(ip))
        self._pending.discard(int(ip))
        self.version += 1

    def resync(self, in_nb: Iterable[IPv4Address]) -> tuple[set[IPv4Address], set[IPv4Address]]:
        """Make the used set equal to what NB holds (pending ones are kept).

        Returns (added, dropped): addresses NB had that the pool did not, and addresses
        the pool held that NB does not.
        """
        nb = {int(ip) for ip in in_nb if self.contains(ip)}
        added = nb - self._used
        dropped = self._used - nb
        self._used = nb
        self._pending -= nb
        if added or dropped:
            self.version += 1
        return {IPv4Address(i) for i in added}, {IPv4Address(i) for i in dropped}


class SubnetPool:
    """Node subnets of one prefix length carved from a CIDR (cluster subnets).

    Subnets found in NB that are not of this shape (the cluster CIDR or node prefix was
    changed) can still be reserved: new allocations never overlap them.
    """

    def __init__(self, cidr: IPv4Network, prefix: int) -> None:
        if not cidr.prefixlen <= prefix <= 29:
            raise ValueError(f"node prefix /{prefix} must be between /{cidr.prefixlen} and /29")
        self.cidr = cidr
        self.prefix = prefix
        self._taken: set[IPv4Network] = set()

    @property
    def capacity(self) -> int:
        """How many node subnets fit."""
        return 1 << (self.prefix - self.cidr.prefixlen)

    @property
    def free(self) -> int:
        """Subnets of this pool still free."""
        return sum(1 for s in self.cidr.subnets(new_prefix=self.prefix) if not self._overlaps(s))

    def owns(self, subnet: IPv4Network) -> bool:
        """True when `subnet` is one of this pool's subnets."""
        return subnet.prefixlen == self.prefix and subnet.subnet_of(self.cidr)

    def _overlaps(self, subnet: IPv4Network) -> bool:
        return any(subnet.overlaps(t) for t in self._taken)

    def allocate(self) -> IPv4Network:
        """The lowest free subnet; PoolExhausted when all are taken."""
        for subnet in self.cidr.subnets(new_prefix=self.prefix):
            if not self._overlaps(subnet):
                self._taken.add(subnet)
                return subnet
        raise PoolExhausted(f"no free /{self.prefix} left in cluster CIDR {self.cidr}")

    def reserve(self, subnet: IPv4Network) -> None:
        """Mark a subnet found in NB as taken; AddressInUse when it overlaps a taken one."""
        if self._overlaps(subnet):
            raise AddressInUse(f"subnet {subnet} overlaps another node's subnet")
        self._taken.add(subnet)

    def release(self, subnet: IPv4Network) -> None:
        """Return a subnet; unknown subnets are ignored."""
        self._taken.discard(subnet)


class HostPool:
    """Single addresses from a subnet, skipping the network, broadcast and the first `skip`
    hosts (e.g. the join subnet: .1 is the cluster router)."""

    def __init__(self, subnet: IPv4Network, skip: int = 0) -> None:
        self.subnet = subnet
        self._first = int(subnet.network_address) + 1 + skip
        self._last = int(subnet.broadcast_address) - 1
        if self._first > self._last:
            raise ValueError(f"subnet {subnet} has no host address left")
        self._taken: set[int] = set()

    def allocate(self) -> IPv4Address:
        """The lowest free address; PoolExhausted when none is left."""
        for i in range(self._first, self._last + 1):
            if i not in self._taken:
                self._taken.add(i)
                return IPv4Address(i)
        raise PoolExhausted(f"no free address left in {self.subnet}")

    def reserve(self, ip: IPv4Address) -> None:
        """Mark an address found in NB as taken; AddressInUse when it already is."""
        if not self._first <= int(ip) <= self._last:
            raise ValueError(f"{ip} is not an allocatable address of {self.subnet}")
        if int(ip) in self._taken:
            raise AddressInUse(f"{ip} is already allocated")
        self._taken.add(int(ip))

    def release(self, ip: IPv4Address) -> None:
        """Return an address; unknown ones are ignored."""
        self._taken.discard(int(ip))
