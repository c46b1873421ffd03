"""`ControllerConfig`: the controller's settings.

Loaded with `dpunet.settings.load_settings`: defaults < YAML/JSON file < `DPUNET_<FIELD>`
environment (lists comma-separated, e.g. `DPUNET_NB_REMOTES=tcp:a:6641,tcp:b:6641`) <
command-line flags. Every default is documented in docs/controller.md.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dpunet.contract.lsp import PlugMode
from dpunet.tls import TlsFiles, plain_listen, plain_remote, require_tls

DEFAULT_PORT = 9477
_REMOTE_RE = re.compile(r"^(unix:/.+|(tcp|ssl):(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$")
_LISTEN_RE = re.compile(r"^(unix:/.+|(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5})$")


class ControllerMode(StrEnum):
    """Where nodes, pods and callers come from."""

    STANDALONE = "standalone"  # the port API is the truth; static tokens
    KUBERNETES = "kubernetes"  # Node/Pod objects, TokenReview, Lease (docs/kubernetes.md)


class ControllerConfig(BaseModel):
    """Settings of `dpunet-controller`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nb_remotes: list[str] = Field(
        default=["unix:/var/run/ovn/ovnnb_db.sock"],
        min_length=1,
        description="OVN Northbound remotes (unix:PATH, ssl:HOST:PORT, or tcp:HOST:PORT with "
        "insecure); all raft members.",
    )
    ovn_ssl: TlsFiles | None = Field(
        default=None, description="key, certificate and CA of the ssl: NB and SB remotes"
    )
    api_tls: TlsFiles | None = Field(
        default=None,
        description="the API's key and certificate (HTTPS on every TCP listener; unix "
        "sockets stay plain) and the CA a client certificate must chain to",
    )
    api_client_cert: Literal["optional", "required"] = Field(
        default="optional",
        description="with api_tls: a client certificate not from ca_cert is always refused; "
        "required: a client without one is refused too",
    )
    insecure: bool = Field(
        default=False,
        description="allow plain transports off the machine (tcp: NB/SB remotes, plain HTTP "
        "on TCP listeners); logs a warning at start",
    )
    sb_remotes: list[str] = Field(
        default=["unix:/var/run/ovn/ovnsb_db.sock"],
        description="OVN Southbound remotes (unix:PATH, ssl:HOST:PORT, or tcp:HOST:PORT with "
        "insecure), read only, to see ports up one northd pass earlier and to check DPU "
        "registrations; all raft members; []: NB up only, DPU registrations refused.",
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
    node_port_range: str = Field(
        default="30000-32767",
        pattern=r"^[0-9]{1,5}-[0-9]{1,5}$",
        description="NodePort services: FIRST-LAST port on the nodes' gateway addresses.",
    )
    join_subnet: IPv4Network = IPv4Network("100.64.0.0/16")
    mtu: int = Field(default=1400, ge=576, le=9000)
    plug_mode: PlugMode = PlugMode.AGENT
    physnet: str = Field(default="physnet", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$")
    wait_for_up: bool = Field(
        default=True,
        description="Answer a port PUT only once it is ready: SB Port_Binding.up on its "
        "chassis or NB Logical_Switch_Port.up (docs/controller.md).",
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
    dpu_lease_duration: float | None = Field(
        default=15.0,
        gt=0,
        le=600,
        description="seconds a DPU agent's lease renewal holds (in Kubernetes mode only "
        "with dpu_token_file); null: no DPU leases (every DPU counts as alive)",
    )
    dpu_token_file: Path | None = Field(
        default=None,
        description="kubernetes mode: the DPU agents' tokens, '<token> dpu:<chassis>' lines "
        "only (token_file's format and rules); none: no DPU leases in this mode",
    )
    metrics_anonymous: bool = Field(
        default=False, description="Serve /metrics without a token (else: admin token)."
    )
    api_docs: bool = Field(
        default=False,
        description="Serve /docs, and /docs and /openapi.json without a token (else: /docs "
        "is off and /openapi.json needs a token).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["kv", "json"] = "kv"
    mode: ControllerMode = ControllerMode.STANDALONE
    kubeconfig: Path | None = Field(
        default=None,
        description="kubernetes mode: kubeconfig file; default: the pod's service account, "
        "else $KUBECONFIG or ~/.kube/config",
    )
    k8s_namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="namespace of the Lease and the agents' service accounts; default: the "
        "pod's own namespace, else dpunet",
    )
    k8s_audiences: list[str] = Field(
        default=["dpunet"], description="audiences the agents' tokens must carry (TokenReview)"
    )
    k8s_agent_service_accounts: list[str] = Field(
        default=["dpunet-host", "dpunet-node"],
        description="service accounts (in k8s_namespace) whose tokens act for their node",
    )
    k8s_admin_users: list[str] = Field(
        default=[], description="TokenReview user names with admin rights on the API"
    )
    k8s_next_hop: IPv4Address | None = Field(
        default=None,
        description="gateway next hop of nodes without the dpunet.io/gateway-next-hop annotation",
    )
    k8s_node_ip_prefix: int = Field(
        default=24, ge=8, le=32, description="prefix of a node's InternalIP (no annotation)"
    )
    lease_name: str = Field(
        default="dpunet-controller", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
    )
    lease_duration: float = Field(default=15.0, gt=0, le=300, description="seconds")
    lease_renew_deadline: float = Field(default=10.0, gt=0, le=300, description="seconds")
    lease_retry_period: float = Field(default=2.0, gt=0, le=60, description="seconds")

    @property
    def node_ports(self) -> range:
        """`node_port_range` as a range."""
        first, last = (int(p) for p in self.node_port_range.split("-"))
        return range(first, last + 1)

    @field_validator("nb_remotes", "sb_remotes")
    @classmethod
    def _valid_remotes(cls, value: list[str], info: ValidationInfo) -> list[str]:
        db = "SB" if info.field_name == "sb_remotes" else "NB"
        for remote in value:
            if not _REMOTE_RE.match(remote):
                raise ValueError(
                    f"{db} remote {remote!r} must be unix:PATH, ssl:HOST:PORT or tcp:HOST:PORT"
                )
        return value

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _LISTEN_RE.match(item):
                raise ValueError(f"listen address {item!r} must be HOST:PORT or unix:PATH")
        return value

    def check_tls(self) -> None:
        """TlsError when a transport off the machine is plain and `insecure` is not set (at
        start: a default config, listening on 0.0.0.0 without api_tls, is refused)."""
        require_tls("nb_remotes/listen", self.plain_transports(), self.insecure)

    def plain_transports(self) -> list[str]:
        """What this config sends in plain text over the network (needs `insecure`)."""
        plain = [r for r in [*self.nb_remotes, *self.sb_remotes] if plain_remote(r)]
        if self.api_tls is None:
            plain += [f"http://{a}" for a in self.listen if plain_listen(a)]
        return plain

    @model_validator(mode="after")
    def _consistent(self) -> ControllerConfig:
        remotes = [*self.nb_remotes, *self.sb_remotes]
        if any(r.startswith("ssl:") for r in remotes) and self.ovn_ssl is None:
            raise ValueError(
                "ovn_ssl: an ssl: NB or SB remote needs private_key, certificate and ca_cert"
            )
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
        first, last = (int(p) for p in self.node_port_range.split("-"))
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"node_port_range {self.node_port_range} is not FIRST-LAST in 1-65535")
        if self.dpu_token_file is not None and self.mode is not ControllerMode.KUBERNETES:
            raise ValueError(
                "dpu_token_file is for mode: kubernetes; in standalone mode DPU tokens are "
                "'dpu:<chassis>' lines of token_file"
            )
        if not self.lease_retry_period < self.lease_renew_deadline < self.lease_duration:
            raise ValueError("lease_retry_period < lease_renew_deadline < lease_duration must hold")
        return self
