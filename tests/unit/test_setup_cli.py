"""`dpu setup` / `host setup` CLI: input errors are one clear line, exit 1, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dpunet.cli.setup_cmds import dpu, host
from dpunet.setup.dpu import _merge_mappings
from dpunet.setup.plan import Outcome, show, step

DPU_ARGS = ["setup", "--host-node", "h", "--uplink", "p0", "--gw-nexthop", "192.0.2.1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gw-nexthop", "192.0.2.256"], "--gw-nexthop"),
        (["--encap-ip", "example"], "--encap-ip"),
        (["--bridge", "br/0"], "--bridge"),
        (["--ovn-remote", "192.0.2.1"], "--ovn-remote"),
        (
            ["--ovs-db", "unix:/nonexistent/db.sock"],
            "cannot reach the OVS database at unix:/nonexistent",
        ),
        (["--ovs-db", "ssl:192.0.2.1:6640"], "--ovs-db"),
    ],
)
def test_dpu_setup_input_errors(extra: list[str], message: str) -> None:
    result = CliRunner().invoke(dpu, [*DPU_ARGS, *extra])
    assert result.exit_code == 1
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_host_setup_input_errors() -> None:
    result = CliRunner().invoke(host, ["setup", "--pf", "enp2s0f0np0", "--num-vfs", "-2"])
    assert result.exit_code == 1 and "--num-vfs" in result.output
    result = CliRunner().invoke(host, ["setup", "--pf", "x" * 16, "--num-vfs", "1"])
    assert result.exit_code == 1 and "--pf" in result.output


def test_merge_mappings_keeps_other_networks() -> None:
    assert _merge_mappings(None, "brp0") == "physnet:brp0"
    assert _merge_mappings("other:br-x", "brp0") == "other:br-x,physnet:brp0"
    assert _merge_mappings("physnet:br-old,other:br-x", "brp0") == "physnet:brp0,other:br-x"
    assert _merge_mappings("other:br-x, physnet:brp0", "brp0") == "other:br-x,physnet:brp0"


def test_step_and_show() -> None:
    assert step("k", "t", "w", "a", "a").outcome is Outcome.NO_CHANGE
    assert step("k", "t", "w", "a", "b").pending
    assert [show(v) for v in (None, "", [], ["x", "y"], True, 3)] == [
        "-",
        "-",
        "-",
        "x, y",
        "true",
        "3",
    ]
