"""NetworkPolicy (`networking.k8s.io/v1`) as the policy API takes it, and its answers.

The models carry the fields the Kubernetes API defines for a NetworkPolicy (IPv4 only:
dpunet's pod network is IPv4) with the API server's validation rules: a peer is either an
`ipBlock` or selectors, `except` lies inside `cidr`, `endPort` needs a numeric `port` not
above it, `In`/`NotIn` need values and `Exists`/`DoesNotExist` none.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from dpunet.contract.api import DNS_LABEL, PORT_NAME, LabelKey, LabelValue
from dpunet.contract.services import Protocol

MAX_RULES = 64  # rules per direction, peers and ports per rule (a sanity bound)
# external_ids of the OVN rows a policy becomes (the controller writes, verify reads them)
POLICY_KEY = "dpunet:policy"  # <ns>/<name> on a policy's port group and ACLs
ACL_KEY = "dpunet:acl"  # an ACL's identity among dpunet's

PortName = Annotated[str, StringConstraints(pattern=PORT_NAME)]


def _cidr_text(value: Any) -> Any:
    """A CIDR comes as text (pydantic would take the number 0 or `false` as 0.0.0.0/32)."""
    if not isinstance(value, str | IPv4Network):
        raise ValueError("a CIDR is a string such as 10.0.0.0/8")
    return value


Cidr = Annotated[IPv4Network, BeforeValidator(_cidr_text)]
Labels = dict[LabelKey, LabelValue]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PolicyType(StrEnum):
    """A direction a policy isolates its pods in."""

    INGRESS = "Ingress"
    EGRESS = "Egress"


class Operator(StrEnum):
    """A label selector requirement's operator."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(_Spec):
    """`key <operator> values`."""

    key: LabelKey
    operator: Operator
    values: list[LabelValue] = Field(default_factory=list, max_length=MAX_RULES)

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        wants = self.operator in (Operator.IN, Operator.NOT_IN)
        if wants and not self.values:
            raise ValueError(f"operator {self.operator.value} needs values")
        if not wants and self.values:
            raise ValueError(f"operator {self.operator.value} takes no values")
        return self


class LabelSelector(_Spec):
    """matchLabels AND matchExpressions; empty selects everything."""

    match_labels: Labels = Field(default_factory=dict, alias="matchLabels", max_length=MAX_RULES)
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, alias="matchExpressions", max_length=MAX_RULES
    )


class IPBlock(_Spec):
    """An IPv4 CIDR, minus the CIDRs in `except`."""

    cidr: Cidr
    except_: list[Cidr] = Field(default_factory=list, alias="except", max_length=MAX_RULES)

    @model_validator(mode="after")
    def _inside(self) -> IPBlock:
        for net in self.except_:
            if not net.subnet_of(self.cidr) or net == self.cidr:
                raise ValueError(f"except {net} must lie strictly inside cidr {self.cidr}")
        return self


class NetworkPolicyPeer(_Spec):
    """Pods (by pod and/or namespace selector) or an IP block."""

    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(default=None, alias="ipBlock")

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPolicyPeer:
        selectors = self.pod_selector is not None or self.namespace_selector is not None
        if self.ip_block is not None and selectors:
            raise ValueError("ipBlock cannot be combined with podSelector or namespaceSelector")
        if self.ip_block is None and not selectors:
            raise ValueError("a peer needs podSelector, namespaceSelector or ipBlock")
        return self


class NetworkPolicyPort(_Spec):
    """A protocol and a port (number or container port name) or a range up to endPort."""

    protocol: Protocol = Protocol.TCP
    port: Annotated[int, Field(ge=1, le=65535)] | PortName | None = None
    end_port: int | None = Field(default=None, alias="endPort", ge=1, le=65535)

    @model_validator(mode="after")
    def _range(self) -> NetworkPolicyPort:
        if isinstance(self.port, str) and not any(c.isalpha() for c in self.port):
            raise ValueError(f"port name {self.port!r} needs a letter (a number is an integer)")
        if self.end_port is not None:
            if not isinstance(self.port, int):
                raise ValueError("endPort needs a numeric port")
            if self.end_port < self.port:
                raise ValueError(f"endPort {self.end_port} is below port {self.port}")
        return self


class IngressRule(_Spec):
    """Traffic from any of `from` (absent/empty: from anywhere) to any of `ports`
    (absent/empty: every port)."""

    from_: list[NetworkPolicyPeer] = Field(default_factory=list, alias="from", max_length=MAX_RULES)
    ports: list[NetworkPolicyPort] = Field(default_factory=list, max_length=MAX_RULES)


class EgressRule(_Spec):
    """Traffic to any of `to` (absent/empty: anywhere) on any of `ports`."""

    to: list[NetworkPolicyPeer] = Field(default_factory=list, max_length=MAX_RULES)
    ports: list[NetworkPolicyPort] = Field(default_factory=list, max_length=MAX_RULES)


class NetworkPolicySpec(_Spec):
    """What a NetworkPolicy selects and allows."""

    pod_selector: LabelSelector = Field(alias="podSelector")
    ingress: list[IngressRule] = Field(default_factory=list, max_length=MAX_RULES)
    egress: list[EgressRule] = Field(default_factory=list, max_length=MAX_RULES)
    policy_types: list[PolicyType] | None = Field(default=None, alias="policyTypes", max_length=2)

    def types(self) -> frozenset[PolicyType]:
        """The effective policyTypes: as given, else Ingress, plus Egress when the policy
        has egress rules (the API's defaulting)."""
        if self.policy_types:
            return frozenset(self.policy_types)
        return frozenset({PolicyType.INGRESS} | ({PolicyType.EGRESS} if self.egress else set()))


class ObjectMeta(BaseModel):
    """The metadata a policy document may carry (only name and namespace are used)."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)
    namespace: str | None = Field(default=None, pattern=DNS_LABEL, max_length=63)


class NetworkPolicy(BaseModel):
    """A NetworkPolicy document (YAML/JSON as `kubectl` takes it); `status` is ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: Literal["networking.k8s.io/v1"] = Field(
        default="networking.k8s.io/v1", alias="apiVersion"
    )
    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: NetworkPolicySpec


class PolicyInfo(BaseModel):
    """A policy as the controller holds it, with the OVN objects it became."""

    namespace: str
    name: str
    spec: dict[str, Any] = Field(description="the spec, in the API's field names")
    port_group: str = Field(description="Port_Group of the pods it selects")
    pods: list[str] = Field(description="LSPs of the pods it selects")
    acls: int = Field(description="ACLs written for its rules")


class PolicyList(BaseModel):
    """`GET /v1/policies`."""

    items: list[PolicyInfo]


class NamespaceLabels(_Spec):
    """`PUT /v1/namespaces/{name}/labels`: a namespace's labels (replaces them)."""

    labels: Labels = Field(default_factory=dict, max_length=64)


def spec_json(spec: NetworkPolicySpec) -> dict[str, Any]:
    """A spec in the API's field names, without defaults it did not set."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)
