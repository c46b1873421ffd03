"""A configurable sysfs root and readers that tolerate the kernel's ways of saying "absent".

Everything in the hardware layer reads below one root (default `/sys`, overridden by
`DPUNET_SYSFS_ROOT` or an explicit path) so tests and the lab can point it at a tree
with the kernel's layout. Attribute reads return None where the kernel reports the
attribute as missing or not applicable: the file does not exist, `phys_port_name` /
`phys_switch_id` fail with EOPNOTSUPP, `carrier` / `speed` fail with EINVAL while the
link is down, the device went away (ENODEV, ENXIO). Any other OS error is raised as
`SysfsReadError`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SYSFS_ROOT = Path("/sys")
SYSFS_ROOT_ENV = "DPUNET_SYSFS_ROOT"

ABSENT_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV, errno.ENXIO}
)


class SysfsReadError(OSError):
    """A sysfs read failed for a reason other than "attribute absent" (e.g. permission)."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, f"cannot read {path}: {cause.strerror or cause}")
        self.path = path


def _is_absent(exc: OSError) -> bool:
    return exc.errno in ABSENT_ERRNOS


def read_attr(path: Path) -> str | None:
    """The stripped text of a sysfs attribute, or None when the kernel reports it absent."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        if _is_absent(exc):
            return None
        raise SysfsReadError(path, exc) from exc
    return data.decode("utf-8", errors="replace").strip()


def read_int_attr(path: Path, base: int = 10) -> int | None:
    """A sysfs attribute parsed as an integer (`base=16` accepts a `0x` prefix), or None."""
    text = read_attr(path)
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def link_name(path: Path) -> str | None:
    """The name of what a symlink points at (e.g. the driver of `<dev>/driver`), or None
    when `path` is absent or not a symlink."""
    try:
        os.readlink(path)
    except OSError as exc:
        if _is_absent(exc):  # includes EINVAL: the path is not a symlink
            return None
        raise SysfsReadError(path, exc) from exc
    return os.path.basename(os.path.realpath(path)) or None


def list_dir(path: Path) -> list[str]:
    """Sorted entry names of a directory; empty when it does not exist."""
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        if _is_absent(exc):
            return []
        raise SysfsReadError(path, exc) from exc


@dataclass(frozen=True)
class Sysfs:
    """A sysfs tree rooted at `root` (the real `/sys`, the lab's emulated tree, a fixture)."""

    root: Path = DEFAULT_SYSFS_ROOT

    @classmethod
    def from_env(cls, explicit: str | os.PathLike[str] | None = None) -> Sysfs:
        """The root given explicitly, else `$DPUNET_SYSFS_ROOT`, else `/sys`."""
        chosen = explicit if explicit is not None else os.environ.get(SYSFS_ROOT_ENV)
        return cls(Path(chosen) if chosen else DEFAULT_SYSFS_ROOT)

    @property
    def pci_devices(self) -> Path:
        """`<root>/bus/pci/devices`: one entry (usually a symlink) per PCI function."""
        return self.root / "bus" / "pci" / "devices"

    @property
    def class_net(self) -> Path:
        """`<root>/class/net`: one entry per netdev of the current network namespace."""
        return self.root / "class" / "net"

    def pci_device(self, address: str) -> Path:
        """The directory of one PCI function."""
        return self.pci_devices / address

    def netdev(self, name: str) -> Path:
        """The directory of one netdev."""
        return self.class_net / name
