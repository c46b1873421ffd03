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
from collections.abc import Iterator
from contextlib import contextmanager
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
    when `path` is absent or not a symlink.

    The last component of the link's own target: sysfs links end in the name of what they
    point at, and resolving the whole path instead would stat every directory on the way
    (each a filesystem request on an emulated sysfs)."""
    try:
        target = os.readlink(path)
    except OSError as exc:
        if _is_absent(exc):  # includes EINVAL: the path is not a symlink
            return None
        raise SysfsReadError(path, exc) from exc
    return _target_name(target)


def _target_name(target: str) -> str | None:
    name = os.path.basename(os.path.normpath(target))
    return name if name not in ("", ".", "..") else None


def list_dir(path: Path) -> list[str]:
    """Sorted entry names of a directory; empty when it does not exist."""
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        if _is_absent(exc):
            return []
        raise SysfsReadError(path, exc) from exc


class SysfsDir:
    """One open sysfs directory whose entries are read relative to it: each read looks up
    one name instead of walking the whole path again (on the lab's emulated sysfs every
    step of a walk is a filesystem request). Same "absent is None" rules as `read_attr`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def read(self, name: str) -> str | None:
        """Like `read_attr(path / name)`."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._fd)
        except OSError as exc:
            self._raise_unless_absent(name, exc)
            return None
        try:
            data = os.read(fd, 65536)
        except OSError as exc:
            self._raise_unless_absent(name, exc)
            return None
        finally:
            os.close(fd)
        return data.decode("utf-8", errors="replace").strip()

    def read_int(self, name: str, base: int = 10) -> int | None:
        """Like `read_int_attr(path / name, base)`."""
        text = self.read(name)
        if not text:
            return None
        try:
            return int(text, base)
        except ValueError:
            return None

    def link_name(self, name: str) -> str | None:
        """Like `link_name(path / name)`."""
        try:
            target = os.readlink(name, dir_fd=self._fd)
        except OSError as exc:
            self._raise_unless_absent(name, exc)
            return None
        return _target_name(target)

    def list(self, name: str) -> list[str]:
        """Like `list_dir(path / name)`."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._fd)
        except OSError as exc:
            self._raise_unless_absent(name, exc)
            return []
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def _raise_unless_absent(self, name: str, exc: OSError) -> None:
        if not _is_absent(exc):
            raise SysfsReadError(self.path / name, exc) from exc


@contextmanager
def open_dir(path: Path) -> Iterator[SysfsDir | None]:
    """`path` opened as a `SysfsDir`, or None when there is no such directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if _is_absent(exc):
            yield None
            return
        raise SysfsReadError(path, exc) from exc
    try:
        yield SysfsDir(path, fd)
    finally:
        os.close(fd)


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
