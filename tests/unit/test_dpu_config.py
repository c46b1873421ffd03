"""DPU agent config: file < env < flags, identity from OVS, the start-up setup input."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dpunet.cli.dpu_agent_cmds import dpu_run
from dpunet.dpu.config import (
    ConfigError,
    DpuAgentConfig,
    env_overrides,
    load_config,
    resolve_identity,
    setup_config,
)
from dpunet.observability import parse_listen

SETUP_IDS = {
    "system-id": "dpu1",
    "hostname": "dpu1.lab",
    "host-k8s-nodename": "host1",
    "ovn-remote": "tcp:192.0.2.10:6642,tcp:192.0.2.11:6642",
    "ovn-gw-interface": "p0",
    "ovn-gw-nexthop": "192.0.2.1",
    "ovn-encap-ip": "192.0.2.201",
    "ovn-bridge-mappings": "other:br-x,physnet:brp0",
}


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.integration_bridge == "br-int"
    assert cfg.plug_mode == "agent"
    assert cfg.mgmt_port.enabled and cfg.mgmt_port.vf_index == 0
    assert cfg.mgmt_port.name == "ovn-k8s-mp0"
    assert cfg.metrics_address == "127.0.0.1:9476"
    assert cfg.resync_interval == 60.0 and cfg.retry_interval == 5.0
    assert cfg.run_setup and cfg.chassis is None and cfg.sb_remotes == []
    assert cfg.ovs_db.startswith("unix:") and cfg.ovs_db.endswith("/db.sock")


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "dpu.yaml"
    path.write_text(
        "chassis: from-file\n"
        "host_node: file-node\n"
        "sb_remotes: [tcp:192.0.2.10:6642]\n"
        "mgmt_port: {vf_index: 3, name: mgmt-file}\n"
        "resync_interval: 30\n"
    )
    env = {
        "DPUNET_CHASSIS": "from-env",
        "DPUNET_MGMT_PORT_VF_INDEX": "5",
        "DPUNET_SB_REMOTES": "tcp:192.0.2.20:6642, tcp:192.0.2.21:6642",
        "DPUNET_SYSFS_ROOT": "/run/x/sys",
        "DPUNET_UNRELATED": "ignored",
    }
    cfg = load_config(path, env, {"chassis": "from-flag", "mgmt_port": {"mtu": 1400}})
    assert cfg.chassis == "from-flag"
    assert cfg.host_node == "file-node"
    assert cfg.sb_remotes == ["tcp:192.0.2.20:6642", "tcp:192.0.2.21:6642"]
    assert cfg.mgmt_port.vf_index == 5 and cfg.mgmt_port.name == "mgmt-file"
    assert cfg.mgmt_port.mtu == 1400
    assert cfg.resync_interval == 30
    assert str(cfg.sysfs_root) == "/run/x/sys"


def test_json_file_and_env_booleans(tmp_path: Path) -> None:
    path = tmp_path / "dpu.json"
    path.write_text(json.dumps({"run_setup": False, "plug_mode": "ovn"}))
    cfg = load_config(path, {"DPUNET_MGMT_PORT_ENABLED": "false"}, {})
    assert not cfg.run_setup and cfg.plug_mode == "ovn" and not cfg.mgmt_port.enabled


@pytest.mark.parametrize(
    ("env", "flags", "fragment"),
    [
        ({"DPUNET_SB_REMOTES": "192.0.2.1:6642"}, {}, "sb_remotes.0"),
        ({}, {"mgmt_port": {"name": "a/b"}}, "mgmt_port.name"),
        ({}, {"plug_mode": "magic"}, "plug_mode"),
        ({}, {"metrics_address": "nowhere"}, "metrics_address"),
        ({}, {"resync_interval": 0}, "resync_interval"),
        ({}, {"ovs_db": "/tmp/db.sock"}, "ovs_db"),
        ({}, {"surprise": 1}, "surprise"),
    ],
)
def test_bad_values_name_the_field(
    env: dict[str, str], flags: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(None, env, flags)


def test_an_unusable_file_is_a_config_error(tmp_path: Path) -> None:
    # the cases themselves: tests/unit/test_settings.py (dpunet.settings.read_config_file)
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml", {}, {})


def test_env_overrides_ignores_empty_values() -> None:
    assert env_overrides({"DPUNET_CHASSIS": "", "DPUNET_HOST_NODE": "h"}) == {"host_node": "h"}


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9476") == ("127.0.0.1", 9476)
    assert parse_listen(":9476") == ("0.0.0.0", 9476)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("9476", "host:", "1.2.3.4:99999", "not-an-ip:80"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_identity_from_ovs_and_overrides() -> None:
    ident = resolve_identity(DpuAgentConfig(insecure=True), SETUP_IDS)
    assert ident.chassis == "dpu1" and ident.hostname == "dpu1.lab"
    assert ident.chassis_names == {"dpu1", "dpu1.lab"}
    assert ident.sb_remotes == ("tcp:192.0.2.10:6642", "tcp:192.0.2.11:6642")
    assert ident.mgmt_lport == "k8s-host1"
    cfg = DpuAgentConfig(chassis="c9", host_node="h9", sb_remotes=["unix:/run/sb.sock"])
    ident = resolve_identity(cfg, SETUP_IDS)  # unix: needs no TLS
    assert (ident.chassis, ident.host_node, ident.sb_remotes) == (
        "c9",
        "h9",
        ("unix:/run/sb.sock",),
    )


def test_identity_errors() -> None:
    with pytest.raises(ConfigError, match="system-id"):
        resolve_identity(DpuAgentConfig(), {"ovn-remote": "tcp:192.0.2.10:6642"})
    with pytest.raises(ConfigError, match="ovn-remote"):
        resolve_identity(DpuAgentConfig(), {"system-id": "dpu1"})
    with pytest.raises(ConfigError, match="sb_ssl"):
        resolve_identity(DpuAgentConfig(sb_remotes=["ssl:192.0.2.10:6642"]), {"system-id": "x"})
    with pytest.raises(ConfigError, match=r"tcp:192.0.2.10:6642.* is plain text.*insecure"):
        resolve_identity(DpuAgentConfig(), SETUP_IDS)  # from external_ids:ovn-remote too
    lease = {"controller_url": "http://192.0.2.10:9477", "token_file": "/t"}
    local = {"system-id": "dpu1", "ovn-remote": "unix:/run/sb.sock"}
    with pytest.raises(ConfigError, match=r"http://192.0.2.10:9477 is plain text"):
        resolve_identity(DpuAgentConfig.model_validate(lease), local)
    https = {
        **lease,
        "controller_url": "https://192.0.2.10:9477",
        "controller_tls": {"ca_cert": "/ca"},
    }
    assert resolve_identity(DpuAgentConfig.model_validate(https), local).chassis == "dpu1"
    ssl = {"private_key": "/k", "certificate": "/c", "ca_cert": "/ca"}
    cfg = DpuAgentConfig.model_validate({"sb_ssl": ssl})
    assert resolve_identity(cfg, {**SETUP_IDS, "ovn-remote": "ssl:192.0.2.10:6642"}).sb_remotes
    insecure = DpuAgentConfig(insecure=True)
    assert insecure.plain_transports(resolve_identity(insecure, SETUP_IDS).sb_remotes) == [
        "tcp:192.0.2.10:6642",
        "tcp:192.0.2.11:6642",
    ]
    assert (
        resolve_identity(
            DpuAgentConfig(insecure=True), {**SETUP_IDS, "host-k8s-nodename": ""}
        ).mgmt_lport
        is None
    )


def test_setup_config_fills_gaps_from_a_previous_setup() -> None:
    setup = setup_config(DpuAgentConfig(ovs_db="unix:/x/db.sock"), SETUP_IDS)
    assert setup.host_node == "host1" and setup.uplink == "p0" and setup.bridge == "brp0"
    assert setup.gw_nexthop == ipaddress.IPv4Address("192.0.2.1")
    assert setup.encap_ip == ipaddress.IPv4Address("192.0.2.201")
    assert setup.system_id is None and setup.ovn_remote is None  # keep what is there
    assert setup.ovs_db == "unix:/x/db.sock"
    cfg = DpuAgentConfig.model_validate(
        {
            "chassis": "dpu9",
            "sb_remotes": ["tcp:192.0.2.10:6642"],
            "setup": {"uplink": "p1", "gw_nexthop": "192.0.2.254", "bridge": "brp1"},
        }
    )
    setup = setup_config(cfg, SETUP_IDS)
    assert (setup.uplink, setup.bridge, setup.system_id) == ("p1", "brp1", "dpu9")
    assert setup.ovn_remote == "tcp:192.0.2.10:6642"


def test_setup_config_on_a_fresh_dpu_says_what_is_missing() -> None:
    with pytest.raises(ConfigError, match=r"ovn-gw-interface.*ovn-gw-nexthop"):
        setup_config(DpuAgentConfig(host_node="h"), {})


def test_cli_print_config_and_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        dpu_run,
        ["--print-config", "--sb-remote", "tcp:192.0.2.10:6642", "--mgmt-vf", "2", "--no-setup"],
        env={"DPUNET_HOST_NODE": "h1"},
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sb_remotes"] == ["tcp:192.0.2.10:6642"]
    assert data["mgmt_port"]["vf_index"] == 2 and data["host_node"] == "h1"
    assert data["run_setup"] is False
    result = runner.invoke(dpu_run, ["--print-config", "--sb-remote", "nope"])
    assert result.exit_code == 2 and "sb_remotes.0" in result.output
