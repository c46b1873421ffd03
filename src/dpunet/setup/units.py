"""Boot-time units: a setup command installed as a systemd oneshot service, so that what
it provisions (VFs, brp0 and its address, a full node's OVS settings) is applied again at
every boot, before the services that need it.

A unit's `ExecStart` is the same `dpunet <noun> setup` command line with the options it
was given (`setup_argv`), so the boot runs exactly what the operator ran, and a re-run on
a provisioned node changes nothing (the commands are idempotent). Units are written
under `root` (`/` on a node; a directory in tests and the lab) as
`etc/systemd/system/<name>.service` and enabled as `systemctl enable` does, with a link
in `etc/systemd/system/<wanted_by>.wants/`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from dpunet.setup.plan import SetupError

UNIT_DIR = Path("etc/systemd/system")
WANTED_BY = "multi-user.target"


@dataclass(frozen=True)
class BootUnit:
    """A oneshot unit running `argv` at boot, ordered `after` and `before` other units."""

    name: str  # without `.service`
    description: str
    argv: tuple[str, ...]
    after: tuple[str, ...] = ()
    before: tuple[str, ...] = ()
    wants: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        """`<name>.service`."""
        return f"{self.name}.service"

    def render(self) -> str:
        """The unit file's text."""
        lines = ["[Unit]", f"Description={self.description}"]
        if self.wants:
            lines.append("Wants=" + " ".join(self.wants))
        if self.after:
            lines.append("After=" + " ".join(self.after))
        if self.before:
            lines.append("Before=" + " ".join(self.before))
        lines += [
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            f"ExecStart={shlex.join(self.argv)}",
            "",
            "[Install]",
            f"WantedBy={WANTED_BY}",
            "",
        ]
        return "\n".join(lines)


def setup_argv(dpunet: str, command: Sequence[str], cfg: BaseModel) -> tuple[str, ...]:
    """`dpunet <command...>` with one `--option value` per setting given in `cfg` (the
    defaults are left to the command, as they were when it was run by hand)."""
    argv = [dpunet, *command]
    for name in sorted(cfg.model_fields_set):
        value = getattr(cfg, name)
        if value is None:
            continue
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return tuple(argv)


def unit_path(root: Path, name: str) -> Path:
    """Where unit `name` (without `.service`) lives under `root`."""
    return root / UNIT_DIR / f"{name}.service"


def exec_start(text: str) -> list[str]:
    """The command of a unit file's `ExecStart=` line (SetupError when there is none)."""
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line[len("ExecStart=") :])
    raise SetupError("the unit has no ExecStart= line")


def install_unit(root: Path, unit: BootUnit) -> list[str]:
    """Write and enable `unit` under `root`; what changed (empty: it was installed as is)."""
    path = unit_path(root, unit.name)
    link = root / UNIT_DIR / f"{WANTED_BY}.wants" / unit.filename
    text = unit.render()
    changed: list[str] = []
    try:
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{unit.filename}.tmp")
            temp.write_text(text)
            temp.chmod(0o644)
            temp.replace(path)
            changed.append(f"wrote {path}")
        target = Path("..") / unit.filename
        if not link.is_symlink() or Path(link.readlink()) != target:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(target)
            changed.append(f"enabled {unit.filename} ({link} -> {target})")
    except OSError as exc:
        raise SetupError(f"cannot install {unit.filename} under {root}: {exc}") from exc
    return changed


def remove_unit(root: Path, name: str) -> list[str]:
    """Disable and delete unit `name` under `root`; what was removed (empty: nothing was
    there)."""
    removed: list[str] = []
    filename = f"{name}.service"
    try:
        for path in (
            root / UNIT_DIR / f"{WANTED_BY}.wants" / filename,
            unit_path(root, name),
        ):
            if path.is_symlink() or path.exists():
                path.unlink()
                removed.append(f"removed {path}")
    except OSError as exc:
        raise SetupError(f"cannot remove {filename} under {root}: {exc}") from exc
    return removed
