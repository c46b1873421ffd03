"""Device claims that run concurrently: no node-wide lock around an ADD's claim.

The sandbox records on disk say which devices are held; a claim reads them (a scan),
picks a device, looks at it (sysfs, netlink) and writes its record. Two claims may do
this at once, so a device also counts as taken while another claim of this daemon:

- has reserved it (picked it, its record not written yet), or
- wrote its record after this claim's scan began (the scan may have missed the file).

Each check-and-reserve (`Claim.take`) is one short critical section over these in-memory
sets; the scan, the look at the device and the record's write happen outside it. Nothing
here needs to survive a crash: a reservation without a record left nothing behind (the
device was only looked at), and a written record is in every later scan.

A claim counts the time it was blocked by other claims (`Claim.waited`: a critical section
another claim held, or whatever an attacher adds through `Claim.wait`, e.g. a discovery
another claim runs), so the daemon can show it next to the claim's own work.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager


class DeviceClaims:
    """The daemon's claims in flight (see the module docstring); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reserved: set[str] = set()
        self._written: dict[str, int] = {}  # device key -> epoch its record was written at
        self._epoch = 0
        self._scans: dict[int, int] = {}  # claim in flight -> epoch when its scan began
        self._ids = itertools.count()

    @contextmanager
    def claiming(self) -> Iterator[Claim]:
        """One claim: fill `Claim.held` from a scan begun inside the block, `take` a
        device, write its record and call `Claim.written`; what it took and did not
        write is given back when the block ends."""
        waited = time.monotonic()
        with self._lock:
            waited = time.monotonic() - waited
            ident = next(self._ids)
            self._scans[ident] = self._epoch
        claim = Claim(self, self._scans[ident])
        claim.waited = waited
        try:
            yield claim
        finally:
            with self._lock:
                self._reserved -= claim.taken
                del self._scans[ident]
                oldest = min(self._scans.values(), default=self._epoch)
                # a record written before every scan in flight began is in all of them
                for key in [k for k, epoch in self._written.items() if epoch <= oldest]:
                    del self._written[key]

    def tracked(self) -> int:
        """Devices remembered (reserved or written recently): bounded by the claims in
        flight."""
        with self._lock:
            return len(self._reserved) + len(self._written)

    @contextmanager
    def _locked(self, claim: Claim) -> Iterator[None]:
        """The critical section, the time `claim` was blocked entering it counted."""
        if not self._lock.acquire(blocking=False):
            with claim.wait():
                self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def _taken(self, key: str, claim: Claim) -> bool:
        return (
            key in claim.held or key in self._reserved or self._written.get(key, -1) > claim.began
        )


class Claim:
    """One claim in flight: what its scan found held, and what it has taken."""

    def __init__(self, claims: DeviceClaims, began: int) -> None:
        self._claims = claims
        self.began = began
        self.held: Collection[str] = frozenset()  # device keys the records name
        self.taken: set[str] = set()
        self.waited = 0.0  # seconds blocked by other claims

    @contextmanager
    def wait(self) -> Iterator[None]:
        """Count the block's time as blocked by other claims (`waited`)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.waited += time.monotonic() - started

    def __contains__(self, key: object) -> bool:
        """`key` is held or taken by some claim (this one included)."""
        if not isinstance(key, str):
            return False
        with self._claims._locked(self):
            return key in self.taken or self._claims._taken(key, self)

    def take(self, key: str) -> bool:
        """Reserve device `key` for this claim unless it is held or taken (atomically)."""
        with self._claims._locked(self):
            if key in self.taken or self._claims._taken(key, self):
                return False
            self._claims._reserved.add(key)
            self.taken.add(key)
            return True

    def give_back(self, key: str) -> None:
        """Undo `take(key)` (the device turned out unusable)."""
        with self._claims._locked(self):
            if key in self.taken:
                self.taken.discard(key)
                self._claims._reserved.discard(key)

    def written(self, key: str) -> None:
        """The record naming device `key` is on disk (it holds the device from now on)."""
        claims = self._claims
        with claims._locked(self):
            claims._epoch += 1
            claims._written[key] = claims._epoch
            claims._reserved.discard(key)
            self.taken.discard(key)
