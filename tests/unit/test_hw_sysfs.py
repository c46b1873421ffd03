"""Sysfs root selection and the tolerant attribute readers."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from dpunet.hw.sysfs import (
    DEFAULT_SYSFS_ROOT,
    SYSFS_ROOT_ENV,
    Sysfs,
    SysfsReadError,
    link_name,
    list_dir,
    open_dir,
    read_attr,
    read_int_attr,
)


def test_root_defaults_to_sys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SYSFS_ROOT_ENV, raising=False)
    assert Sysfs.from_env().root == DEFAULT_SYSFS_ROOT == Path("/sys")


def test_env_overrides_default_and_explicit_overrides_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SYSFS_ROOT_ENV, str(tmp_path / "env"))
    assert Sysfs.from_env().root == tmp_path / "env"
    assert Sysfs.from_env(tmp_path / "flag").root == tmp_path / "flag"


def test_paths_below_root(tmp_path: Path) -> None:
    sysfs = Sysfs(tmp_path)
    assert sysfs.pci_device("0000:02:00.0") == tmp_path / "bus/pci/devices/0000:02:00.0"
    assert sysfs.netdev("p0") == tmp_path / "class/net/p0"


def test_read_attr_strips_and_missing_is_none(tmp_path: Path) -> None:
    (tmp_path / "mtu").write_text("1500\n")
    assert read_attr(tmp_path / "mtu") == "1500"
    assert read_int_attr(tmp_path / "mtu") == 1500
    assert read_attr(tmp_path / "absent") is None
    assert read_int_attr(tmp_path / "absent") is None


def test_read_int_attr_hex_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "vendor").write_text("0x15b3\n")
    (tmp_path / "junk").write_text("n/a\n")
    assert read_int_attr(tmp_path / "vendor", base=16) == 0x15B3
    assert read_int_attr(tmp_path / "junk") is None


@pytest.mark.parametrize(
    ("attribute", "code"),
    [
        ("phys_port_name", errno.EOPNOTSUPP),  # netdev that is not a switchdev port
        ("phys_switch_id", errno.EOPNOTSUPP),
        ("carrier", errno.EINVAL),  # link administratively down
        ("speed", errno.EINVAL),
        ("operstate", errno.ENODEV),  # device went away under us
    ],
)
def test_kernel_absent_errnos_read_as_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, attribute: str, code: int
) -> None:
    # Plain files cannot fail like kernel attributes do, so make this one read fail.
    target = tmp_path / attribute
    target.write_text("x\n")
    real_read_bytes = Path.read_bytes

    def failing_read_bytes(self: Path) -> bytes:
        if self == target:
            raise OSError(code, "kernel says no")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", failing_read_bytes)
    assert read_attr(target) is None


def test_other_read_errors_are_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("x\n")

    def denied(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(SysfsReadError, match=r"cannot read .*config"):
        read_attr(target)


def test_link_name(tmp_path: Path) -> None:
    (tmp_path / "drivers" / "mlx5_core").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "driver").symlink_to("../drivers/mlx5_core")
    (tmp_path / "dev" / "plain").write_text("not a link\n")
    assert link_name(tmp_path / "dev" / "driver") == "mlx5_core"
    assert link_name(tmp_path / "dev" / "plain") is None
    assert link_name(tmp_path / "dev" / "absent") is None


def test_link_name_takes_the_targets_last_component(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "physfn").symlink_to("../0000:02:00.0")  # dangling is fine
    (tmp_path / "dev" / "trailing").symlink_to("../drivers/mlx5_core/")
    (tmp_path / "dev" / "absolute").symlink_to("/sys/bus/pci/drivers/vfio-pci")
    (tmp_path / "dev" / "dots").symlink_to("..")
    assert link_name(tmp_path / "dev" / "physfn") == "0000:02:00.0"
    assert link_name(tmp_path / "dev" / "trailing") == "mlx5_core"
    assert link_name(tmp_path / "dev" / "absolute") == "vfio-pci"
    assert link_name(tmp_path / "dev" / "dots") is None


def test_open_dir_reads_entries_like_the_path_readers(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    (dev / "net" / "eth1").mkdir(parents=True)
    (dev / "net" / "eth0").mkdir()
    (dev / "vendor").write_text("0x15b3\n")
    (dev / "numa_node").write_text("-1\n")
    (dev / "junk").write_text("n/a\n")
    (dev / "driver").symlink_to("../drivers/mlx5_core")
    (tmp_path / "link-to-dev").symlink_to("dev")
    with open_dir(tmp_path / "link-to-dev") as d:
        assert d is not None
        assert d.read("vendor") == read_attr(dev / "vendor") == "0x15b3"
        assert d.read_int("vendor", 16) == 0x15B3
        assert d.read_int("numa_node") == -1
        assert d.read_int("junk") is None
        assert d.read("absent") is None and d.read_int("absent") is None
        assert d.read("vendor/below-a-file") is None  # ENOTDIR reads as absent
        assert d.link_name("driver") == "mlx5_core"
        assert d.link_name("vendor") is None  # not a link
        assert d.link_name("absent") is None
        assert d.list("net") == ["eth0", "eth1"]
        assert d.list("absent") == []
        assert d.list("vendor") == []  # not a directory
        with pytest.raises(SysfsReadError, match=r"cannot read .*net"):
            d.read("net")  # EISDIR is not a kernel "absent"
    with open_dir(tmp_path / "absent") as missing:
        assert missing is None


def test_list_dir_sorted_and_missing_empty(tmp_path: Path) -> None:
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
    assert list_dir(tmp_path) == ["a", "b"]
    assert list_dir(tmp_path / "absent") == []
