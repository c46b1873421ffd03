"""Configuration of `dpunet-dpu`: one pydantic model from a YAML/JSON file, `DPUNET_*`
environment variables and command-line flags (later sources win: file < env < flags).

Fields left unset are filled from the local Open_vSwitch database at start (see
`DpuAgentConfig.resolve`): the chassis name from `external_ids:system-id`, the SB remotes
from `external_ids:ovn-remote`, the host node from `external_ids:host-k8s-nodename` (all
written by `dpunet dpu setup`). Every default is documented in docs/dpu-agent.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from dpunet.observability import parse_listen
from dpunet.openflow.gateway import GatewaySettings
from dpunet.ovsdb.remote import default_ovs_db, validate_remote
from dpunet.settings import SettingsError, describe, read_config_file
from dpunet.setup.dpu import DpuSetupConfig
from dpunet.setup.plan import IfName
from dpunet.tls import ClientTls, TlsFiles, plain_remote, plain_url

ENV_PREFIX = "DPUNET_"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9476"
DEFAULT_MGMT_NAME = "ovn-k8s-mp0"
_REMOTE_RE = re.compile(r"^(tcp|ssl):(\[[0-9a-fA-F:.]+\]|[^:\[\],\s]+):\d{1,5}$|^unix:[^,\s]+$")
_NAME_RE = re.compile(r"^[^\s,]+$")


class ConfigError(Exception):
    """The configuration is invalid or incomplete; the message names the field."""


def _sb_remote(value: str) -> str:
    value = value.strip()
    if not _REMOTE_RE.match(value):
        raise ValueError(f"{value!r} is not an OVSDB remote like tcp:192.0.2.10:6642")
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("must be a non-empty name without spaces or commas")
    return value


def _listen(value: str) -> str:
    if value:
        parse_listen(value)
    return value


RemoteStr = Annotated[str, AfterValidator(_sb_remote)]
Name = Annotated[str, AfterValidator(_name)]


class MgmtPortConfig(BaseModel):
    """The management port: VF `vf_index` of host PF `pf_index`, whose representor is
    renamed `name` and plugged into br-int as LSP `k8s-<host node>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    pf_index: int = Field(default=0, ge=0)
    vf_index: int = Field(default=0, ge=0)
    name: IfName = DEFAULT_MGMT_NAME
    mtu: int | None = Field(default=None, ge=68, le=65535)


class SetupSection(BaseModel):
    """The `dpu setup` run at start; unset fields keep what the OVS database has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uplink: IfName | None = None
    gw_nexthop: ipaddress.IPv4Address | None = None
    encap_ip: ipaddress.IPv4Address | None = None
    hostname: Name | None = None
    host_pf_rep: IfName = "pf0hpf"
    bridge: IfName | None = None
    datapath_type: Literal["auto", "system", "netdev"] = "auto"


class DpuAgentConfig(BaseModel):
    """Everything `dpunet-dpu` needs; `None` means "take it from the OVS database"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chassis: Name | None = Field(None, description="OVN chassis name (OVS system-id)")
    sb_remotes: list[RemoteStr] = Field(
        default_factory=list, description="OVN SB remotes; default external_ids:ovn-remote"
    )
    sb_ssl: TlsFiles | None = Field(None, description="key, certificate, CA of ssl: SB remotes")
    insecure: bool = Field(
        False, description="allow plain tcp: SB remotes off the machine (a warning at start)"
    )
    ovs_db: Annotated[str, AfterValidator(validate_remote)] = Field(default_factory=default_ovs_db)
    integration_bridge: IfName = "br-int"
    sysfs_root: Path | None = Field(None, description="default $DPUNET_SYSFS_ROOT, else /sys")
    plug_mode: Literal["agent", "ovn"] = "agent"
    host_node: Name | None = Field(None, description="default external_ids:host-k8s-nodename")
    mgmt_port: MgmtPortConfig = Field(default_factory=MgmtPortConfig)
    metrics_address: Annotated[str, AfterValidator(_listen)] = DEFAULT_METRICS_ADDRESS
    resync_interval: float = Field(default=60.0, gt=0)
    retry_interval: float = Field(default=5.0, gt=0)
    run_setup: bool = True
    setup: SetupSection = Field(default_factory=SetupSection)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    controller_url: str | None = Field(
        None,
        description="controller API (https://HOST:PORT, unix:PATH, or http:// on loopback "
        "or with insecure) to renew the DPU lease at; None: no lease",
    )
    controller_tls: ClientTls | None = Field(
        None, description="CA (and client certificate) of an https:// controller_url"
    )
    token_file: Path | None = Field(None, description="the DPU's token (dpu:<chassis>)")
    lease_interval: float = Field(default=5.0, gt=0, description="seconds between renewals")
    log_format: Literal["kv", "json"] = "kv"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def plain_transports(self, sb_remotes: Sequence[str]) -> list[str]:
        """What this DPU sends in plain text over the network (needs `insecure`), with
        these SB remotes."""
        plain = [r for r in sb_remotes if plain_remote(r)]
        if self.controller_url is not None and plain_url(self.controller_url):
            plain.append(self.controller_url)
        return plain

    @model_validator(mode="after")
    def _lease_settings(self) -> DpuAgentConfig:
        if (self.controller_url is None) != (self.token_file is None):
            raise ValueError("controller_url and token_file go together (the DPU lease)")
        return self


@dataclass(frozen=True)
class Identity:
    """Who this DPU is, once the config gaps are filled from OVS."""

    chassis: str
    hostname: str | None
    host_node: str | None
    sb_remotes: tuple[str, ...]
    encap_ip: str | None = None  # the first of external_ids:ovn-encap-ip
    uplink: str | None = None  # setup.uplink, else external_ids:ovn-gw-interface

    @property
    def chassis_names(self) -> frozenset[str]:
        """Names a Port_Binding's `requested-chassis` may use for this chassis."""
        return frozenset(n for n in (self.chassis, self.hostname) if n)

    @property
    def mgmt_lport(self) -> str | None:
        """The management port's logical port, `k8s-<host node>`."""
        return f"k8s-{self.host_node}" if self.host_node else None


def resolve_identity(cfg: DpuAgentConfig, ovs_external_ids: Mapping[str, str]) -> Identity:
    """Fill chassis, hostname, host node and SB remotes from OVS `external_ids` where the
    config leaves them unset; ConfigError when the chassis or the remotes stay unknown."""
    chassis = cfg.chassis or ovs_external_ids.get("system-id")
    if not chassis:
        raise ConfigError(
            "chassis: not configured and the OVS database has no external_ids:system-id "
            "(run `dpunet dpu setup` or pass --chassis)"
        )
    remotes = list(cfg.sb_remotes)
    if not remotes:
        ovn_remote = ovs_external_ids.get("ovn-remote", "")
        try:
            remotes = [_sb_remote(r) for r in ovn_remote.split(",") if r.strip()]
        except ValueError as exc:
            raise ConfigError(f"sb_remotes: external_ids:ovn-remote: {exc}") from exc
    if not remotes:
        raise ConfigError(
            "sb_remotes: not configured and the OVS database has no external_ids:ovn-remote "
            "(pass --sb-remote tcp:IP:6642)"
        )
    plain = cfg.plain_transports(remotes)
    if plain and not cfg.insecure:
        raise ConfigError(
            f"sb_remotes/controller_url: {', '.join(plain)} is plain text on the network; "
            "use ssl: remotes with sb_ssl and https://, or set insecure: true"
        )
    if any(r.startswith("ssl:") for r in remotes) and cfg.sb_ssl is None:
        raise ConfigError("sb_ssl: an ssl: SB remote needs private_key, certificate and ca_cert")
    return Identity(
        chassis=chassis,
        hostname=ovs_external_ids.get("hostname"),
        host_node=cfg.host_node or ovs_external_ids.get("host-k8s-nodename"),
        sb_remotes=tuple(remotes),
        encap_ip=ovs_external_ids.get("ovn-encap-ip", "").split(",")[0].strip() or None,
        uplink=cfg.setup.uplink or ovs_external_ids.get("ovn-gw-interface"),
    )


_ENV_FIELDS: dict[str, tuple[str, ...]] = {
    "CHASSIS": ("chassis",),
    "SB_REMOTES": ("sb_remotes",),
    "OVS_DB": ("ovs_db",),
    "INTEGRATION_BRIDGE": ("integration_bridge",),
    "SYSFS_ROOT": ("sysfs_root",),
    "PLUG_MODE": ("plug_mode",),
    "HOST_NODE": ("host_node",),
    "METRICS_ADDRESS": ("metrics_address",),
    "RESYNC_INTERVAL": ("resync_interval",),
    "RETRY_INTERVAL": ("retry_interval",),
    "RUN_SETUP": ("run_setup",),
    "INSECURE": ("insecure",),
    "CONTROLLER_URL": ("controller_url",),
    "TOKEN_FILE": ("token_file",),
    "LEASE_INTERVAL": ("lease_interval",),
    "LOG_FORMAT": ("log_format",),
    "LOG_LEVEL": ("log_level",),
    "MGMT_PORT_ENABLED": ("mgmt_port", "enabled"),
    "MGMT_PORT_PF_INDEX": ("mgmt_port", "pf_index"),
    "MGMT_PORT_VF_INDEX": ("mgmt_port", "vf_index"),
    "MGMT_PORT_NAME": ("mgmt_port", "name"),
    "MGMT_PORT_MTU": ("mgmt_port", "mtu"),
    "GATEWAY_ENABLED": ("gateway", "enabled"),
    "GATEWAY_INTERVAL": ("gateway", "interval"),
    "GATEWAY_ZONE": ("gateway", "zone"),
    "GATEWAY_NODE_PORT_RANGE": ("gateway", "node_port_range"),
}
"""`DPUNET_<KEY>` environment variables and the config field each sets."""


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The config values the `DPUNET_*` variables in `environ` set (lists comma-separated)."""
    data: dict[str, Any] = {}
    for key, path in _ENV_FIELDS.items():
        raw = environ.get(ENV_PREFIX + key)
        if raw is None or raw == "":
            continue
        value: Any = (
            [p.strip() for p in raw.split(",") if p.strip()] if key == "SB_REMOTES" else raw
        )
        _set(data, path, value)
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> DpuAgentConfig:
    """The config from `path` (optional), then the environment, then `flags` (nested dicts
    allowed; None values ignored); ConfigError with the offending fields."""
    try:
        data = read_config_file(path) if path is not None else {}
    except SettingsError as exc:
        raise ConfigError(str(exc)) from exc
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    data = _merge(data, _drop_none(dict(flags or {})))
    try:
        return DpuAgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from exc


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None and value != ():
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def setup_config(cfg: DpuAgentConfig, ovs_external_ids: Mapping[str, str]) -> DpuSetupConfig:
    """The `dpu setup` input for the start-up run: the `setup` section and the agent's own
    fields, with what a previous `dpunet dpu setup` recorded in OVS filling the gaps."""
    ext, section = ovs_external_ids, cfg.setup
    bridge = section.bridge
    for entry in ext.get("ovn-bridge-mappings", "").split(","):
        net, _, mapped = entry.strip().partition(":")
        if bridge is None and net == "physnet" and mapped:
            bridge = mapped
    values: dict[str, Any] = {
        "host_node": cfg.host_node or ext.get("host-k8s-nodename"),
        "uplink": section.uplink or ext.get("ovn-gw-interface"),
        "gw_nexthop": section.gw_nexthop or ext.get("ovn-gw-nexthop"),
        "encap_ip": section.encap_ip or ext.get("ovn-encap-ip"),
        "system_id": cfg.chassis,
        "hostname": section.hostname,
        "ovn_remote": ",".join(cfg.sb_remotes) or None,
        "host_pf_rep": section.host_pf_rep,
        "bridge": bridge,
        "datapath_type": section.datapath_type,
        "ovs_db": cfg.ovs_db,
    }
    sources = {
        "host_node": "host_node / external_ids:host-k8s-nodename",
        "uplink": "setup.uplink / external_ids:ovn-gw-interface",
        "gw_nexthop": "setup.gw_nexthop / external_ids:ovn-gw-nexthop",
    }
    missing = [sources[k] for k in sources if not values[k]]
    if missing:
        raise ConfigError(
            "dpu setup at start needs " + ", ".join(missing) + " (configure them, run "
            "`dpunet dpu setup` once, or set run_setup: false)"
        )
    try:
        return DpuSetupConfig.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError("setup: " + describe(exc)) from exc
