"""Fixtures several unit test modules share."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator

import pytest


@contextlib.contextmanager
def _netns_of_a_child() -> Iterator[str]:
    """The path of a network namespace of its own (a child in `unshare --net`; without root
    in a user namespace of its own too, which a chroot, such as CI's, would refuse)."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    child = subprocess.Popen(["unshare", *user, "--net", "sleep", "60"])
    path = f"/proc/{child.pid}/ns/net"
    own = os.stat("/proc/self/ns/net").st_ino
    try:
        for _ in range(500):  # until the child has unshared
            if os.stat(path).st_ino != own:
                break
            time.sleep(0.01)
        yield path
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def other_netns() -> Iterator[str]:
    """A network namespace of its own (see `_netns_of_a_child`)."""
    with _netns_of_a_child() as path:
        yield path


@pytest.fixture
def second_netns() -> Iterator[str]:
    """Another one, for tests that need two (a pod and its gateway)."""
    with _netns_of_a_child() as path:
        yield path
