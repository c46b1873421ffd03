"""ControllerConfig: defaults, file < env < flags, validation."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from dpunet.controller.config import ControllerConfig, PlugMode
from dpunet.settings import SettingsError, load_settings
from dpunet.tls import TlsError


def test_defaults_are_the_seed_deployment() -> None:
    cfg = ControllerConfig()
    assert cfg.cluster_cidr == IPv4Network("10.233.64.0/18") and cfg.node_prefix == 24
    assert cfg.service_cidr == IPv4Network("10.96.0.0/12")
    assert cfg.join_subnet == IPv4Network("100.64.0.0/16")
    assert cfg.plug_mode is PlugMode.AGENT and cfg.physnet == "physnet"
    assert cfg.port_timeout == 60 and cfg.wait_for_up and cfg.mtu == 1400
    assert cfg.listen == ["0.0.0.0:9477"]
    assert cfg.sb_remotes == ["unix:/var/run/ovn/ovnsb_db.sock"]


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cluster_cidr: 198.18.0.0/16\nnode_prefix: 26\nmtu: 1500\n")
    env = {
        "DPUNET_NODE_PREFIX": "25",
        "DPUNET_NB_REMOTES": "tcp:192.0.2.10:6641, tcp:192.0.2.11:6641",
        "DPUNET_SB_REMOTES": "tcp:192.0.2.10:6642",
        "DPUNET_SYSFS_ROOT": "/elsewhere",  # another daemon's setting: ignored
    }
    cfg = load_settings(ControllerConfig, path, env, {"mtu": 1400, "listen": None})
    assert cfg.cluster_cidr == IPv4Network("198.18.0.0/16")
    assert cfg.node_prefix == 25 and cfg.mtu == 1400
    assert cfg.nb_remotes == ["tcp:192.0.2.10:6641", "tcp:192.0.2.11:6641"]
    assert cfg.sb_remotes == ["tcp:192.0.2.10:6642"]


def test_json_file_works_too(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"plug_mode": "ovn", "listen": ["unix:/run/dpunet/api.sock"]}')
    cfg = load_settings(ControllerConfig, path, {})
    assert cfg.plug_mode is PlugMode.OVN and cfg.listen == ["unix:/run/dpunet/api.sock"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cluster_cidr": "10.0.0.0/16", "service_cidr": "10.0.128.0/17"}, "overlaps"),
        ({"cluster_cidr": "10.0.0.0/24", "node_prefix": 20}, "shorter than"),
        ({"nb_remotes": ["ssl1.2.3.4:6641"]}, "unix:PATH, ssl:HOST:PORT or tcp:HOST:PORT"),
        ({"sb_remotes": ["tcp:central"]}, "SB remote 'tcp:central' must be"),
        ({"sb_remotes": ["ssl:192.0.2.10:6642"]}, "ovn_ssl: an ssl: NB or SB remote needs"),
        ({"listen": ["nowhere"]}, "HOST:PORT or unix:PATH"),
        ({"node_prefix": 30}, "node_prefix"),
        ({"plug_mode": "magic"}, "plug_mode"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_settings_name_the_problem(settings: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(ControllerConfig, None, {}, settings)


def test_tls_unless_insecure() -> None:
    # the default listens on 0.0.0.0 in plain HTTP: refused at start
    with pytest.raises(TlsError, match=r"http://0.0.0.0:9477 is plain text.*insecure: true"):
        ControllerConfig().check_tls()
    files = {"private_key": "/k", "certificate": "/c", "ca_cert": "/ca"}
    cfg = load_settings(
        ControllerConfig,
        None,
        {},
        {"nb_remotes": ["ssl:192.0.2.10:6641"], "ovn_ssl": files, "api_tls": files},
    )
    cfg.check_tls()
    assert cfg.ovn_ssl is not None and cfg.plain_transports() == []
    # a unix socket or loopback never leaves the machine
    local = {
        "nb_remotes": ["unix:/run/ovn/ovnnb_db.sock", "tcp:127.0.0.1:6641", "tcp:[::1]:6641"],
        "listen": ["127.0.0.1:9477", "[::1]:9477", "unix:/run/dpunet/api.sock"],
    }
    load_settings(ControllerConfig, None, {}, local).check_tls()
    plain = {"nb_remotes": ["tcp:192.0.2.10:6641"], "listen": ["192.0.2.10:9477"]}
    with pytest.raises(TlsError, match=r"tcp:192\.0\.2\.10:6641, http://192\.0\.2\.10:9477"):
        load_settings(ControllerConfig, None, {}, plain).check_tls()
    cfg = load_settings(ControllerConfig, None, {"DPUNET_INSECURE": "true"}, plain)
    cfg.check_tls()
    assert cfg.plain_transports() == ["tcp:192.0.2.10:6641", "http://192.0.2.10:9477"]
