"""The plan model shared by `dpu setup` and `host setup`.

A plan is computed from the current state without touching anything: an ordered list of
steps, each with what it is about, the current and the desired value, and whether it has
to act. Applying a plan runs only the steps that have to act and marks them done; a
second run then finds every step already satisfied ("no change").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator

_IFNAME_RE = re.compile(r"^[^/\s:]{1,15}$")


class SetupError(Exception):
    """Bad input or a state the command cannot work from; nothing (more) was changed."""


def _check_ifname(value: str) -> str:
    if not _IFNAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a valid interface name")
    return value


IfName = Annotated[str, AfterValidator(_check_ifname)]
"""A Linux interface name (1-15 characters, no `/`, `:` or whitespace), for pydantic models."""


class Outcome(StrEnum):
    """Where a step stands."""

    NO_CHANGE = "no change"
    PENDING = "to change"
    CHANGED = "changed"
    WARNING = "warning"


@dataclass
class Step:
    """One setting: `what` it is, its `current` and `desired` value, and its outcome.

    `kind` and `target` identify the operation for the code that applies the plan
    (e.g. kind `external_ids`, target `ovn-encap-ip`).
    """

    kind: str
    target: str
    what: str
    current: str
    desired: str
    outcome: Outcome
    detail: str = ""

    @property
    def pending(self) -> bool:
        """The step still has to act."""
        return self.outcome is Outcome.PENDING

    def as_dict(self) -> dict[str, str]:
        """A JSON-ready view."""
        return {
            "kind": self.kind,
            "target": self.target,
            "what": self.what,
            "current": self.current,
            "desired": self.desired,
            "outcome": str(self.outcome),
            "detail": self.detail,
        }


def step(kind: str, target: str, what: str, current: str, desired: str, detail: str = "") -> Step:
    """A step that is pending exactly when `current` differs from `desired`."""
    outcome = Outcome.PENDING if current != desired else Outcome.NO_CHANGE
    return Step(kind, target, what, current, desired, outcome, detail)


@dataclass
class Plan:
    """The ordered steps of one command, plus notes and warnings for the user."""

    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def pending(self) -> list[Step]:
        """Steps that still have to act."""
        return [s for s in self.steps if s.pending]

    @property
    def changes_anything(self) -> bool:
        """At least one step has to act."""
        return any(s.pending for s in self.steps)

    def find(self, kind: str, target: str | None = None) -> Step | None:
        """The first step of `kind` (and `target`, when given), or None."""
        for s in self.steps:
            if s.kind == kind and (target is None or s.target == target):
                return s
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "changed": any(s.outcome is Outcome.CHANGED for s in self.steps),
            "steps": [s.as_dict() for s in self.steps],
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def show(value: object) -> str:
    """A value as shown in a plan: `-` for absent/empty."""
    if value is None or value == "" or value == [] or value == ():
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)
