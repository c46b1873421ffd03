"""A row of the lab's check tables (`dpunet lab check`, the services' checks)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """One row of the check table."""

    check: str
    source: str
    target: str
    ok: bool
    detail: str = ""
