"""`DeviceClaims`: concurrent claims never get the same device, even when one's scan of the
records missed another's record, and what it remembers stays bounded."""

from __future__ import annotations

import random
import threading
import time

import pytest

from dpunet.cni.claims import DeviceClaims

DEVICES = [f"0000:02:00.{n}" for n in range(2, 8)]


def test_a_device_reserved_by_another_claim_is_taken() -> None:
    claims = DeviceClaims()
    with claims.claiming() as a, claims.claiming() as b:
        assert a.take("x") and "x" in a and "x" in b
        assert not b.take("x")
        a.give_back("x")
        assert b.take("x")
    assert claims.tracked() == 0


def test_a_record_written_after_a_scan_began_counts_as_taken() -> None:
    """Claim `late` scanned the records before `early` wrote its record for x: its scan
    does not show x, yet x is taken for it."""
    claims = DeviceClaims()
    with claims.claiming() as late:
        late.held = frozenset()  # its scan: no record names x
        with claims.claiming() as early:
            early.held = frozenset()
            assert early.take("x")
            early.written("x")
        assert not late.take("x") and "x" in late
        with claims.claiming() as after:  # began after the write: its scan shows the record
            after.held = frozenset({"x"})
            assert not after.take("x")
        assert late.take("y")
    assert claims.tracked() == 0  # no scan in flight: every record is on disk for the next


def test_what_a_claim_took_and_did_not_write_is_given_back() -> None:
    claims = DeviceClaims()
    with pytest.raises(OSError), claims.claiming() as claim:
        assert claim.take("x") and claim.take("y")
        raise OSError("the record could not be written")
    with claims.claiming() as claim:
        assert claim.take("x") and claim.take("y")


def test_a_record_removed_meanwhile_is_still_held_for_an_older_scan() -> None:
    """A DEL between a scan and the pick: the stale scan keeps the device taken (a spare
    refusal, never a double claim)."""
    claims = DeviceClaims()
    with claims.claiming() as claim:
        claim.held = frozenset({"x"})  # the record was there when it scanned
        assert not claim.take("x")


@pytest.mark.parametrize("seed", range(5))
def test_threads_claiming_at_once_never_share_a_device(seed: int) -> None:
    """Many claims in threads, each with a scan that sees the records written before it
    began (and perhaps some written while it ran), pick, look, write or give back."""
    rng = random.Random(seed)
    claims = DeviceClaims()
    records: dict[str, str] = {}  # device -> owner: the "disk"
    disk = threading.Lock()
    errors: list[str] = []

    def worker(name: str) -> None:
        with claims.claiming() as claim:
            with disk:
                claim.held = frozenset(records)  # the scan
            time.sleep(rng.random() / 500)  # other claims write records meanwhile
            for device in rng.sample(DEVICES, len(DEVICES)):
                if not claim.take(device):
                    continue
                if rng.random() < 0.2:  # unusable after a look: given back
                    claim.give_back(device)
                    continue
                with disk:
                    if device in records:
                        errors.append(f"{name} got {device} of {records[device]}")
                    records[device] = name
                claim.written(device)
                break
        if rng.random() < 0.5:  # some pods go again (DEL): their record is removed
            with disk:
                for device, owner in list(records.items()):
                    if owner == name:
                        del records[device]

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert claims.tracked() == 0


def test_a_claim_counts_the_time_another_claim_kept_it_out() -> None:
    """`waited` is the time a claim was blocked by others: the critical section another
    claim held, and what `Claim.wait` adds (e.g. a discovery another claim runs)."""
    claims = DeviceClaims()
    with claims.claiming() as alone:
        assert alone.take("x")
    assert alone.waited < 0.01
    with claims.claiming() as blocked:
        started = threading.Event()

        def take() -> None:
            started.set()
            assert blocked.take("y")

        claims._lock.acquire()  # another claim inside its critical section
        thread = threading.Thread(target=take)
        thread.start()
        started.wait(5)
        time.sleep(0.05)
        claims._lock.release()
        thread.join(5)
        assert blocked.waited >= 0.05
        before = blocked.waited
        with blocked.wait():
            time.sleep(0.02)
        assert blocked.waited >= before + 0.02
