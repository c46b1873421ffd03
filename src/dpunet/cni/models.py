"""The network config dpunet accepts and the typed requests handlers receive.

Two config styles (see docs/cni.md), both a single plugin config as the runtime passes it:

* the seed's NetworkAttachmentDefinition style, `{"cniVersion": "0.3.1", "name":
  "ovn-kubernetes", "type": "dpunet-cni", "ipam": {}, "dns": {}}`, into which multus injects
  the VF's PCI address as `deviceID` (and/or `pciBusID`, `runtimeConfig.deviceID`);
* standalone, with `resourceName` naming the device pool to take a VF from, and optionally
  `socket` (the daemon's CNI socket) and `stateDir` (its state directory).

Unknown fields are kept (`NetConf.model_extra`).

The daemon's one validation path: `wire.parse_invocation` checks the CNI rules (env,
decoding, version, name, type, the `socket` and `stateDir` paths), then `parse_request`
checks dpunet's own (device fields, IPAM, prevResult, the daemon's stateDir, what each
verb needs) and builds the typed request. No rule is checked in both.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from dpunet.cni.results import AddResult, Dns
from dpunet.cni.wire import (
    DEFAULT_STATE_DIR,
    VALID_ATTACHMENTS_KEY,
    CniError,
    ErrorCode,
    Invocation,
)
from dpunet.hw.pci import normalize_pci_address
from dpunet.settings import describe

PciAddress = Annotated[str, AfterValidator(normalize_pci_address)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class RuntimeConfig(_Model):
    """The `runtimeConfig` capability arguments dpunet understands (others are kept)."""

    model_config = ConfigDict(extra="allow")

    device_id: PciAddress | None = Field(None, alias="deviceID")
    mac: str | None = None
    ips: tuple[str, ...] = ()


class Attachment(_Model):
    """One still-valid attachment listed in a GC request."""

    container_id: str = Field(alias="containerID", min_length=1)
    ifname: str = Field(min_length=1)


class NetConf(_Model):
    """A plugin config as the runtime passes it on stdin (`name` and `cniVersion` injected);
    its CNI fields are typed here, checked by `wire.check_config`."""

    model_config = ConfigDict(extra="allow")

    cni_version: str = Field(alias="cniVersion")
    name: str
    type: str
    ipam: dict[str, Any] = {}
    dns: Dns = Dns()
    device_id: PciAddress | None = Field(None, alias="deviceID")
    pci_bus_id: PciAddress | None = Field(None, alias="pciBusID")
    runtime_config: RuntimeConfig = Field(RuntimeConfig(), alias="runtimeConfig")
    args: dict[str, Any] = {}
    capabilities: dict[str, bool] = {}
    resource_name: str | None = Field(None, alias="resourceName", min_length=1)
    socket: str | None = None
    state_dir: str = Field(DEFAULT_STATE_DIR, alias="stateDir")
    prev_result: dict[str, Any] | None = Field(None, alias="prevResult")
    valid_attachments: tuple[Attachment, ...] | None = Field(None, alias=VALID_ATTACHMENTS_KEY)

    @model_validator(mode="after")
    def _one_device(self) -> NetConf:
        given = {self.device_id, self.pci_bus_id, self.runtime_config.device_id} - {None}
        if len(given) > 1:
            raise ValueError(f"deviceID, pciBusID and runtimeConfig.deviceID disagree: {given}")
        return self

    @property
    def vf_pci_address(self) -> str | None:
        """The VF the runtime (multus) chose for this attachment, if any."""
        return self.device_id or self.runtime_config.device_id or self.pci_bus_id


def parse_netconf(config: dict[str, Any]) -> NetConf:
    """Validate dpunet's fields of a decoded config: CniError code 7 when invalid, 2 for
    an IPAM delegate."""
    try:
        conf = NetConf.model_validate(config)
    except ValidationError as exc:
        raise CniError(ErrorCode.INVALID_CONFIG, "invalid network config", describe(exc)) from None
    ipam_type = conf.ipam.get("type")
    if ipam_type:
        raise CniError(
            ErrorCode.UNSUPPORTED_FIELD,
            f"unsupported field ipam.type={ipam_type!r}",
            "dpunet assigns addresses itself; leave ipam empty",
        )
    return conf


def parse_request(inv: Invocation, state_dir: str) -> CniRequest:
    """The typed request of `inv` (checked by `wire.parse_invocation`, not VERSION) for
    the daemon whose state directory is `state_dir`; CniError when dpunet refuses it."""
    conf = parse_netconf(inv.config)
    if os.path.normpath(conf.state_dir) != os.path.normpath(state_dir):
        raise CniError(
            ErrorCode.INVALID_CONFIG,
            f"stateDir {conf.state_dir} is not this daemon's state directory {state_dir}",
            "set stateDir in the network config to the daemon's state directory",
        )
    prev = _prev_result(conf)
    common: dict[str, Any] = {
        "command": inv.command,
        "cni_version": inv.cni_version,
        "config": conf,
        "raw_config": inv.raw_config,
        "args": inv.args,
        "path": tuple(inv.path),
    }
    if inv.command == "STATUS":
        return StatusRequest(**common)
    if inv.command == "GC":
        if conf.valid_attachments is None:
            raise CniError(
                ErrorCode.INVALID_CONFIG, f"GC needs {VALID_ATTACHMENTS_KEY} in the config"
            )
        return GcRequest(**common, valid_attachments=conf.valid_attachments)
    if inv.command == "CHECK" and prev is None:
        raise CniError(ErrorCode.INVALID_CONFIG, "CHECK needs prevResult in the config")
    request_type = {"ADD": AddRequest, "DEL": DelRequest, "CHECK": CheckRequest}[inv.command]
    return request_type(
        **common,
        container_id=inv.container_id,
        ifname=inv.ifname,
        netns=inv.netns or None,
        prev_result=prev,
    )


def _prev_result(conf: NetConf) -> AddResult | None:
    if conf.prev_result is None:
        return None
    try:
        return AddResult.from_wire(conf.prev_result)
    except ValidationError as exc:
        raise CniError(ErrorCode.INVALID_CONFIG, "invalid prevResult", describe(exc)) from None


class CniRequest(_Model):
    """What every verb gets: the config, CNI_ARGS and CNI_PATH."""

    command: str
    cni_version: str
    config: NetConf
    raw_config: str
    args: dict[str, str] = {}
    path: tuple[str, ...] = ()

    @property
    def pod_namespace(self) -> str | None:
        """K8S_POD_NAMESPACE from CNI_ARGS."""
        return self.args.get("K8S_POD_NAMESPACE") or None

    @property
    def pod_name(self) -> str | None:
        """K8S_POD_NAME from CNI_ARGS."""
        return self.args.get("K8S_POD_NAME") or None

    @property
    def pod_uid(self) -> str | None:
        """K8S_POD_UID from CNI_ARGS."""
        return self.args.get("K8S_POD_UID") or None

    @property
    def infra_container_id(self) -> str | None:
        """K8S_POD_INFRA_CONTAINER_ID from CNI_ARGS."""
        return self.args.get("K8S_POD_INFRA_CONTAINER_ID") or None


class AttachmentRequest(CniRequest):
    """A request about one attachment `(container_id, ifname)`."""

    container_id: str
    ifname: str
    netns: str | None = None
    prev_result: AddResult | None = None


class AddRequest(AttachmentRequest):
    """ADD: create `ifname` in `netns`; `prev_result` is set when chained after others."""

    netns: str


class DelRequest(AttachmentRequest):
    """DEL: undo the ADD; `netns` may be unset (the namespace may be gone)."""


class CheckRequest(AttachmentRequest):
    """CHECK: verify the attachment against `prev_result` (the ADD's final result)."""

    netns: str
    prev_result: AddResult


class StatusRequest(CniRequest):
    """STATUS: can the plugin serve ADDs?"""


class GcRequest(CniRequest):
    """GC: release everything not belonging to one of `valid_attachments`."""

    valid_attachments: tuple[Attachment, ...] = ()
