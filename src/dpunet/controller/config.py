"""`ControllerConfig`: the controller's settings.

Loaded with `dpunet.settings.load_settings`: defaults < YAML/JSON file < `DPUNET_<FIELD>`
environment (lists comma-separated, e.g. `DPUNET_NB_REMOTES=tcp:a:6641,tcp:b:6641`) <
command-line flags. Every default is documented in docs/controller.md.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_PORT = 9477
_REMOTE_RE = re.compile(r"^(unix:/.+|tcp:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$")
_LISTEN_RE = re.compile(r"^(unix:/.+|(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5})$")


class PlugMode(StrEnum):
    """Who plugs the VF representor into br-int on the DPU."""

    AGENT = "agent"  # dpunet-dpu, from `options:dpunet-plug*`
    OVN = "ovn"  # ovn-controller's representor plug provider, from `options:vif-plug*`


class ControllerConfig(BaseModel):
    """Settings of `dpunet-controller`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nb_remotes: list[str] = Field(
        default=["unix:/var/run/ovn/ovnnb_db.sock"],
        min_length=1,
        description="OVN Northbound remotes (unix:PATH or tcp:HOST:PORT); all raft members.",
    )
    listen: list[str] = Field(
        default=[f"0.0.0.0:{DEFAULT_PORT}"],
        min_length=1,
        description="Where the API listens: HOST:PORT or unix:PATH, one or more.",
    )
    token_file: Path = Field(
        default=Path("/etc/dpunet/controller/tokens"),
        description="Bearer tokens, one '<token> <subject>' per line.",
    )
    cluster_cidr: IPv4Network = IPv4Network("10.233.64.0/18")
    node_prefix: int = Field(default=24, ge=8, le=29)
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    join_subnet: IPv4Network = IPv4Network("100.64.0.0/16")
    mtu: int = Field(default=1400, ge=576, le=9000)
    plug_mode: PlugMode = PlugMode.AGENT
    physnet: str = Field(default="physnet", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
    wait_for_up: bool = Field(
        default=True, description="Answer a port PUT only once Logical_Switch_Port.up is true."
    )
    port_timeout: float = Field(
        default=60.0, gt=0, le=600, description="Default per-request deadline of a port PUT (s)."
    )
    nb_timeout: float = Field(
        default=30.0, gt=0, le=600, description="One NB transaction, retries included (s)."
    )
    nb_workers: int = Field(default=8, ge=1, le=64)
    reconcile_interval: float = Field(default=60.0, ge=1)
    max_body_bytes: int = Field(default=16384, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["kv", "json"] = "kv"

    @field_validator("nb_remotes")
    @classmethod
    def _valid_remotes(cls, value: list[str]) -> list[str]:
        for remote in value:
            if not _REMOTE_RE.match(remote):
                raise ValueError(f"NB remote {remote!r} must be unix:PATH or tcp:HOST:PORT")
        return value

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _LISTEN_RE.match(item):
                raise ValueError(f"listen address {item!r} must be HOST:PORT or unix:PATH")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ControllerConfig:
        if not self.cluster_cidr.prefixlen <= self.node_prefix:
            raise ValueError(
                f"node_prefix /{self.node_prefix} is shorter than cluster_cidr {self.cluster_cidr}"
            )
        nets = {
            "cluster_cidr": self.cluster_cidr,
            "service_cidr": self.service_cidr,
            "join_subnet": self.join_subnet,
        }
        names = list(nets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if nets[a].overlaps(nets[b]):
                    raise ValueError(f"{a} {nets[a]} overlaps {b} {nets[b]}")
        if self.join_subnet.num_addresses < 4:
            raise ValueError(f"join_subnet {self.join_subnet} is too small")
        return self
