"""A row of the lab's check tables (`dpunet lab check`, the services' checks) and the
ping the rows share."""

from dataclasses import dataclass

from dpunet.lab.runner import run


@dataclass(frozen=True)
class CheckResult:
    """One row of the check table."""

    check: str
    source: str
    target: str
    ok: bool
    detail: str = ""


def ping(netns: str, address: str, count: int = 3) -> tuple[bool, str]:
    """Ping from a namespace (a name or a path); succeeds on any reply."""
    argv = ["ping", "-c", str(count), "-i", "0.2", "-W", "1", "-w", str(count + 1), "-A", address]
    proc = run(argv, netns=netns, check=False, timeout=count + 5)
    replies = proc.stdout.count("bytes from")
    return replies > 0, f"{replies}/{count} replies"
