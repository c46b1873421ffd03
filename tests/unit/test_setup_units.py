"""Boot units of the setup commands: the unit file systemd reads, its ExecStart (the same
command with the options given), installing/enabling and removing under a root."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpunet.cli.main import cli
from dpunet.setup.host import HostSetupConfig
from dpunet.setup.node import NodeSetupConfig
from dpunet.setup.plan import SetupError
from dpunet.setup.units import (
    BootUnit,
    exec_start,
    install_unit,
    remove_unit,
    setup_argv,
    unit_path,
)

UNIT = BootUnit(
    "dpunet-host-setup",
    "dpunet host setup",
    ("/usr/bin/dpunet", "host", "setup", "--pf", "enp2s0f0np0", "--num-vfs", "3"),
    after=("systemd-udev-settle.service",),
    before=("kubelet.service",),
)


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_unit_is_a_oneshot_ordered_before_kubelet() -> None:
    unit = parse(UNIT.render())
    assert unit["Unit"]["Before"] == "kubelet.service"
    assert unit["Unit"]["After"] == "systemd-udev-settle.service"
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Service"]["RemainAfterExit"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert exec_start(UNIT.render()) == list(UNIT.argv)


def test_exec_start_quotes_what_needs_it() -> None:
    unit = BootUnit("u", "d", ("/bin/dpunet", "node", "setup", "--hostname", "a b'c"))
    assert exec_start(unit.render()) == list(unit.argv)
    with pytest.raises(SetupError):
        exec_start("[Service]\nType=oneshot\n")


def test_argv_repeats_the_options_given_and_leaves_defaults_to_the_command() -> None:
    cfg = HostSetupConfig(pf="enp2s0f0np0", num_vfs=3)
    assert setup_argv("/d", ("host", "setup"), cfg) == (
        "/d", "host", "setup", "--num-vfs", "3", "--pf", "enp2s0f0np0",
    )  # fmt: skip
    node = NodeSetupConfig(uplink="eth0", address="192.168.40.111/22", ovs_db="unix:/x.sock")
    argv = setup_argv("/d", ("node", "setup"), node)
    assert argv[3:] == (
        "--address", "192.168.40.111/22", "--ovs-db", "unix:/x.sock", "--uplink", "eth0",
    )  # fmt: skip
    # what the argv says parses back to the same config (as the unit's command will)
    again = NodeSetupConfig(
        **{argv[i][2:].replace("-", "_"): argv[i + 1] for i in range(3, len(argv), 2)}
    )
    assert again == node


def test_install_enables_and_is_idempotent_remove_undoes_it(tmp_path: Path) -> None:
    changes = install_unit(tmp_path, UNIT)
    path = unit_path(tmp_path, UNIT.name)
    link = tmp_path / "etc/systemd/system/multi-user.target.wants/dpunet-host-setup.service"
    assert len(changes) == 2 and path.read_text() == UNIT.render()
    assert link.is_symlink() and link.resolve() == path.resolve()
    assert path.stat().st_mode & 0o777 == 0o644
    assert install_unit(tmp_path, UNIT) == []  # the same again: nothing to do
    other = BootUnit(UNIT.name, UNIT.description, (*UNIT.argv, "--mgmt-vf", "1"))
    assert install_unit(tmp_path, other) == [f"wrote {path}"]  # the new options
    assert remove_unit(tmp_path, UNIT.name) == [f"removed {link}", f"removed {path}"]
    assert not path.exists() and not link.is_symlink()
    assert remove_unit(tmp_path, UNIT.name) == []


def test_remove_unit_commands(tmp_path: Path) -> None:
    install_unit(tmp_path, BootUnit("dpunet-dpu-setup", "d", ("/d", "dpu", "setup")))
    result = CliRunner().invoke(cli, ["dpu", "remove-unit", "--unit-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    assert not unit_path(tmp_path, "dpunet-dpu-setup").exists()
    for noun in ("host", "node", "dpu"):
        result = CliRunner().invoke(cli, [noun, "remove-unit", "--unit-root", str(tmp_path)])
        assert result.exit_code == 0 and "nothing to remove" in result.output, result.output


def test_node_setup_input_errors() -> None:
    for args, message in (
        (["--uplink", "eth0", "--address", "10.0.0.1/40"], "--address"),
        (["--uplink", "eth0", "--ovn-remote", "http://x"], "not an OVN remote"),
        (["--uplink", "a/b"], "not a valid interface name"),
    ):
        result = CliRunner().invoke(cli, ["node", "setup", *args])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
