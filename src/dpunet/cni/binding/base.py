"""The interface every binding implements: the device-specific half of a node daemon.

`PodAgent` (`dpunet.cni.pods`) runs the CNI verbs and keeps the records; a binding only
claims a device for an attachment and moves it in and out of the pod. Its methods work on
the attachment's `SandboxRecord` (its typed `device`, netns, interface and pod) and block:
the agent runs them in a thread. Failures to move or configure are `LinuxError`; a claim
that finds no device raises `CniError` (`ErrorCode.NO_DEVICE`). Claims of several ADDs run
at once (`cni/claims.py`): a binding reserves its candidate with `Claim.take` before it
looks at it, and gives it back if it turns out unusable.
"""

from __future__ import annotations

from typing import Protocol

from dpunet.cni.claims import Claim
from dpunet.cni.models import AddRequest
from dpunet.cni.sandboxes import Device, SandboxRecord
from dpunet.linux.netlink import InterfaceConfig


class Attacher(Protocol):
    """Claim, prepare, stage, plug, unplug: one kind of pod interface."""

    kind: str  # "vf" or "veth", for logs and metrics

    def claim(self, req: AddRequest, claim: Claim) -> Device:
        """Pick a device for `req` that `claim.take` reserves (a key no record holds and no
        other claim has taken); CniError when there is none."""
        ...

    def prepare(self, record: SandboxRecord) -> None:
        """Before the port request (the record is saved): what must exist for OVN to report
        the port up; a full node plugs its veth's host end into br-int here."""
        ...

    def stage(self, record: SandboxRecord) -> None:
        """While the port request is in flight: what `plug` can do without the port's
        answer (a VF moves into the pod's namespace under a temporary name)."""
        ...

    def plug(self, record: SandboxRecord, cfg: InterfaceConfig) -> None:
        """After `stage`: put the device into the pod's namespace as `cfg` describes."""
        ...

    def unplug(self, record: SandboxRecord) -> None:
        """Return the device from wherever it is (idempotent); LinuxError if impossible."""
        ...
