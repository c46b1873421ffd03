"""`NodeAgentConfig` and the `node run` command's handling of bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from dpunet.cli.node_agent_cmds import node_run
from dpunet.node.config import NodeAgentConfig
from dpunet.settings import SettingsError, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVS_RUNDIR", raising=False)
    cfg = load_settings(NodeAgentConfig, environ={"DPUNET_NODE": "cp"})
    assert cfg.node == "cp"
    assert cfg.ovs_db == "unix:/var/run/openvswitch/db.sock"
    assert cfg.integration_bridge == "br-int" and cfg.mgmt_ifname == "ovn-k8s-mp0"
    assert cfg.mgmt_port is True
    assert cfg.metrics_address == "127.0.0.1:9479"
    assert cfg.cni_socket == Path("/run/dpunet/cni.sock")
    assert cfg.state_dir == Path("/var/lib/dpunet")
    assert cfg.token_file == Path("/etc/dpunet/node/token")


def test_ovs_rundir_sets_the_default_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVS_RUNDIR", "/run/lab/cp/ovs")
    assert NodeAgentConfig(node="cp").ovs_db == "unix:/run/lab/cp/ovs/db.sock"


def test_file_env_flags_precedence(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node: cp\nreconcile_interval: 3\nmetrics_address: ''\n")
    cfg = load_settings(
        NodeAgentConfig,
        path,
        environ={"DPUNET_RECONCILE_INTERVAL": "4", "DPUNET_OVS_DB": "tcp:127.0.0.1:6640"},
        overrides={"reconcile_interval": 5.0, "mgmt_port": None},
    )
    assert cfg.reconcile_interval == 5.0
    assert cfg.ovs_db == "tcp:127.0.0.1:6640"
    assert cfg.metrics_address is None
    assert cfg.mgmt_port is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("node", "Not_A_Node"),
        ("ovs_db", "/var/run/openvswitch/db.sock"),
        ("metrics_address", "localhost"),
        ("mgmt_ifname", "a-name-longer-than-15"),
        ("reconcile_interval", "0"),
        ("surprise", "1"),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: str) -> None:
    data = {"node": "cp", field: value}
    with pytest.raises(SettingsError, match=field):
        load_settings(NodeAgentConfig, overrides=data, environ={})


def test_run_reports_bad_settings_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(node_run, ["--node", "cp", "--ovs-db", "nonsense"], env={})
    assert result.exit_code == 1
    assert "ovs_db" in result.output and "Traceback" not in result.output
    missing = tmp_path / "absent-token"
    result = CliRunner().invoke(node_run, ["--node", "cp", "--token-file", str(missing)], env={})
    assert result.exit_code == 1 and "absent-token" in result.output
