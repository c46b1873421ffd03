"""ovsdbapp commands that keep NetworkPolicy's OVN objects in step (policy_acls.py).

`SyncPolicies` is one level-triggered pass in one transaction, in ovsdbapp's connection
thread against the IDL replica: read the policy specs stored on dpunet's policy port
groups, the namespaces' labels (NB_Global `external_ids:dpunet:ns-labels:<ns>`, JSON),
the pod ports and the node switches; admit the API's writes it was given (policy PUTs
and DELETEs, namespaces' labels, in order); compute every wanted object and
compare-and-set against the rows dpunet owns. Set columns are changed member by member
(`addvalue`/`delvalue`, OVSDB mutations), so a pod added costs the port groups and
address sets it belongs to and nothing else; a pass that finds everything as wanted
sends nothing. Rows without dpunet's owner mark are never touched. A stored spec that
does not parse leaves that policy's rows as they are until a PUT or DELETE replaces
them. In Kubernetes mode the pass takes the specs, namespace labels and pods' labels and
named ports the API server has (`ExternalPolicies`) instead of the stored ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any

from ovsdbapp.backend.ovs_idl import command
from pydantic import ValidationError

from dpunet.contract.policy import NetworkPolicySpec, Protocol
from dpunet.controller.ipam import mgmt_ip
from dpunet.controller.nbcommands import LS, LSP, read_column
from dpunet.controller.policy_acls import (
    ACL_KEY,
    POLICY_KEY,
    SPEC_KEY,
    Acl,
    AddressSet,
    Kind,
    PolicyObjects,
    PolicyPod,
    PortGroup,
    desired,
    policy_port_group,
)
from dpunet.controller.topology import KIND_KEY, NodeRecord, PodPort, owned
from dpunet.controller.topology import Kind as TopologyKind

PORT_GROUP = "Port_Group"
ADDRESS_SET = "Address_Set"
ACL_TABLE = "ACL"
NB_GLOBAL = "NB_Global"
NS_LABELS_PREFIX = "dpunet:ns-labels:"

Row = Any  # ovs.db.idl.Row (untyped library)


def _kind(row: Row) -> str | None:
    ext = read_column(row, "external_ids")
    return ext.get(KIND_KEY) if owned(ext) else None


def encode(spec: NetworkPolicySpec) -> str:
    """A spec as stored on its port group."""
    return json.dumps(
        spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclass
class PolicyView:
    """dpunet's policies, namespaces, pods and nodes as the IDL replica holds them."""

    specs: dict[str, tuple[NetworkPolicySpec, str]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # policy key -> reason
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    pods: list[PolicyPod] = field(default_factory=list)
    lsps: dict[str, Row] = field(default_factory=dict)  # pod and management LSPs by name
    nodes: dict[str, IPv4Address] = field(default_factory=dict)  # node -> management address
    switches: dict[str, Row] = field(default_factory=dict)
    groups: dict[str, Row] = field(default_factory=dict)  # owned port groups by name
    sets: dict[str, Row] = field(default_factory=dict)  # owned address sets by name


def _pod(row: Row) -> PolicyPod | None:
    try:
        port = PodPort.from_lsp(read_column(row, "addresses"), read_column(row, "external_ids"))
    except (KeyError, ValueError):
        return None
    if port.network is not None:
        return None  # policies apply to the pod network (the primary port)
    return PolicyPod(
        port.namespace, port.pod, port.name, port.ip, port.node, dict(port.labels),
        tuple((n, Protocol(p), c) for n, p, c in port.named_ports),
    )  # fmt: skip


class PolicyCache:
    """What passes parsed: each LSP's pod (None: not a policy pod), dropped when NB reports
    the row changed (`changed`, in the IDL thread, which also runs the passes), and specs
    by their stored text; so a pass parses only the rows and specs that changed since
    the one before."""

    def __init__(self) -> None:
        self._pods: dict[uuid.UUID, PolicyPod | None] = {}
        self._specs: dict[str, NetworkPolicySpec] = {}

    def changed(self, row: uuid.UUID) -> None:
        """LSP `row` was created, updated or deleted."""
        self._pods.pop(row, None)

    def pod(self, row: Row) -> PolicyPod | None:
        """The policy pod LSP `row` is (None: none)."""
        if row.uuid in self._pods:
            return self._pods[row.uuid]
        pod = _pod(row) if _kind(row) == TopologyKind.POD.value else None
        if not row._changes and not row._mutations:  # (not a transaction's values)
            self._pods[row.uuid] = pod
        return pod

    def specs(self, stored: Mapping[str, str]) -> dict[str, NetworkPolicySpec | ValidationError]:
        """Each stored spec text parsed (or why not); keeps only these for the next pass."""
        out: dict[str, NetworkPolicySpec | ValidationError] = {}
        for key, text in stored.items():
            spec = self._specs.get(text)
            if spec is None:
                try:
                    spec = NetworkPolicySpec.model_validate_json(text)
                except ValidationError as exc:
                    out[key] = exc
                    continue
            out[key] = spec
        self._specs = {stored[k]: s for k, s in out.items() if isinstance(s, NetworkPolicySpec)}
        return out


def load(api: Any, cache: PolicyCache | None = None) -> PolicyView:
    """The view of the replica; pods and specs parsed through `cache` (none: all parsed)."""
    cache = cache or PolicyCache()
    view = PolicyView()
    for row in api.tables[LSP].rows.values():
        if (pod := cache.pod(row)) is not None:
            view.pods.append(pod)
            view.lsps[pod.lsp] = row
    for row in api.tables[LS].rows.values():
        if _kind(row) != TopologyKind.NODE_SWITCH.value:
            continue
        try:
            node = NodeRecord.from_switch(row.name, row.other_config, row.external_ids)
        except (KeyError, ValueError):
            continue
        view.switches[node.name] = row
        view.nodes[node.name] = mgmt_ip(node.subnet)
    for row in api.tables[NB_GLOBAL].rows.values():
        for key, value in read_column(row, "external_ids").items():
            if key.startswith(NS_LABELS_PREFIX):
                try:
                    view.namespaces[key.removeprefix(NS_LABELS_PREFIX)] = dict(json.loads(value))
                except (ValueError, TypeError):
                    continue
    for row in api.tables[ADDRESS_SET].rows.values():
        if _kind(row) == Kind.SELECTOR:
            view.sets[row.name] = row
    stored: dict[str, str] = {}
    names: dict[str, str] = {}  # policy key -> its port group's name
    for row in api.tables[PORT_GROUP].rows.values():
        kind = _kind(row)
        if kind not in (Kind.POLICY, Kind.DEFAULT_DENY):
            continue
        view.groups[row.name] = row
        if kind != Kind.POLICY:
            continue
        ext = read_column(row, "external_ids")
        key = ext.get(POLICY_KEY, "")
        names[key] = row.name
        if SPEC_KEY in ext:
            stored[key] = ext[SPEC_KEY]
        else:
            view.broken[key] = f"unreadable spec on port group {row.name}: no {SPEC_KEY}"
    for key, spec in cache.specs(stored).items():
        if isinstance(spec, NetworkPolicySpec):
            view.specs[key] = (spec, stored[key])
        else:
            view.broken[key] = f"unreadable spec on port group {names[key]}: {spec}"
    return view


NamedPorts = tuple[tuple[str, Protocol, int], ...]  # (name, protocol, number)


@dataclass(frozen=True)
class ExternalPolicies:
    """Kubernetes mode: the policies (key -> spec), namespace labels and pods' labels and
    named ports ((namespace, pod) -> them) as the API server has them; they replace what
    Northbound stores and the LSPs carry."""

    specs: Mapping[str, NetworkPolicySpec]
    namespaces: Mapping[str, Mapping[str, str]]
    pods: Mapping[tuple[str, str], tuple[Mapping[str, str], NamedPorts]]

    def adopt(self, view: PolicyView) -> None:
        """Make `view` say what the API server says."""
        view.specs = {key: (spec, encode(spec)) for key, spec in self.specs.items()}
        view.broken = {}
        view.namespaces = {ns: dict(labels) for ns, labels in self.namespaces.items()}
        for i, pod in enumerate(view.pods):
            if (known := self.pods.get((pod.namespace, pod.name))) is not None:
                view.pods[i] = replace(pod, labels=dict(known[0]), ports=known[1])


@dataclass(frozen=True)
class PolicyChange:
    """One API write a pass admits: `spec` for policy `key` (PUT), `delete` of `key`, or
    `labels` for namespace `namespace`."""

    key: str | None = None
    spec: NetworkPolicySpec | None = None
    delete: bool = False
    namespace: str | None = None
    labels: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PolicySyncResult:
    """What a pass did: columns/rows changed, the policies there are (key -> selected
    LSPs, ACL count), the ones it could not read, and per admitted change whether its
    policy existed just before it."""

    changes: int
    policies: dict[str, tuple[list[str], int]]
    broken: dict[str, str]
    existed: tuple[bool, ...] = ()


class SyncPolicies(command.BaseCommand):
    """Make the policy objects match the stored specs after admitting `changes` in order;
    or match `external` (Kubernetes mode)."""

    def __init__(
        self,
        api: Any,
        changes: Sequence[PolicyChange] = (),
        external: ExternalPolicies | None = None,
        cache: PolicyCache | None = None,
    ) -> None:
        super().__init__(api)
        self.admitted = tuple(changes)
        self.external = external
        self.cache = cache
        self.changes = 0

    def run_idl(self, txn: Any) -> None:
        self.changes = 0
        view = load(self.api, self.cache)
        if self.external is not None:
            self.external.adopt(view)
        existed = []
        for change in self.admitted:
            existed.append(change.key in view.specs or change.key in view.broken)
            if change.key is not None:
                view.broken.pop(change.key, None)
                view.specs.pop(change.key, None)
                if not change.delete and change.spec is not None:
                    view.specs[change.key] = (change.spec, encode(change.spec))
            if change.namespace is not None and change.labels is not None:
                self._namespace_labels(change.namespace, change.labels)
                view.namespaces[change.namespace] = dict(change.labels)
        wanted = desired(view.pods, view.namespaces, view.specs, view.nodes)
        self._apply(txn, view, wanted)
        self.result = PolicySyncResult(
            self.changes,
            {
                key: (sorted(group.ports), len(group.acls))
                for key in view.specs
                if (group := wanted.port_groups.get(policy_port_group(key))) is not None
            },
            dict(view.broken),
            tuple(existed),
        )

    # ------------------------------------------------------------------ writes
    def _namespace_labels(self, namespace: str, labels: Mapping[str, str]) -> None:
        key = NS_LABELS_PREFIX + namespace
        value = json.dumps(dict(sorted(labels.items())), separators=(",", ":"))
        for row in self.api.tables[NB_GLOBAL].rows.values():
            current = row.external_ids.get(key)
            if labels and current != value:
                row.setkey("external_ids", key, value)
                self.changes += 1
            elif not labels and current is not None:
                row.delkey("external_ids", key)
                self.changes += 1

    def _set(self, row: Row, new: bool, **columns: Any) -> None:
        for col, value in columns.items():
            if new or read_column(row, col) != value:
                setattr(row, col, value)
                self.changes += 1

    def _members(self, row: Row, column: str, want: set[Any], have: set[Any]) -> None:
        """Mutate a set column from `have` to `want`, member by member."""
        for value in have - want:
            row.delvalue(column, value)
            self.changes += 1
        for value in want - have:
            row.addvalue(column, value)
            self.changes += 1

    def _acls(self, txn: Any, holder: Row, wanted: tuple[Acl, ...], new: bool) -> None:
        """Make `holder.acls` hold exactly `wanted` among dpunet's ACLs (others stay)."""
        have = {}
        if not new:
            for acl_row in read_column(holder, "acls"):
                if owned(ext := read_column(acl_row, "external_ids")):
                    have[ext.get(ACL_KEY)] = acl_row
        for acl in wanted:
            row = have.pop(acl.key, None)
            fresh = row is None
            if fresh:
                row = txn.insert(self.api.tables[ACL_TABLE])
                self.changes += 1
            self._set(
                row, fresh, direction=acl.direction, priority=acl.priority, match=acl.match,
                action=acl.action, options=dict(acl.options), external_ids=dict(acl.external_ids),
            )  # fmt: skip
            if fresh:
                holder.addvalue("acls", row)
        for row in have.values():
            holder.delvalue("acls", row)
            row.delete()
            self.changes += 1

    def _address_set(self, txn: Any, view: PolicyView, want: AddressSet) -> None:
        row = view.sets.pop(want.name, None)
        new = row is None
        if new:
            row = txn.insert(self.api.tables[ADDRESS_SET])
            self.changes += 1
        self._set(row, new, name=want.name, external_ids=dict(want.external_ids))
        self._members(
            row,
            "addresses",
            set(want.addresses),
            set() if new else set(read_column(row, "addresses")),
        )

    def _port_group(self, txn: Any, view: PolicyView, want: PortGroup) -> None:
        row = view.groups.pop(want.name, None)
        new = row is None
        if new:
            row = txn.insert(self.api.tables[PORT_GROUP])
            self.changes += 1
        self._set(row, new, name=want.name, external_ids=dict(want.external_ids))
        ports = {view.lsps[n].uuid for n in want.ports if n in view.lsps}
        self._members(
            row, "ports", ports, set() if new else {p.uuid for p in read_column(row, "ports")}
        )
        self._acls(txn, row, want.acls, new)

    def _apply(self, txn: Any, view: PolicyView, wanted: PolicyObjects) -> None:
        for address_set in wanted.address_sets.values():
            self._address_set(txn, view, address_set)
        broken_groups = {policy_port_group(k) for k in view.broken}
        for group in wanted.port_groups.values():
            self._port_group(txn, view, group)
        for node, switch in view.switches.items():
            self._acls(txn, switch, wanted.node_acls.get(node, ()), False)
        for name, row in view.groups.items():
            if name not in broken_groups:
                for acl in read_column(row, "acls"):
                    acl.delete()
                row.delete()
                self.changes += 1
        if not view.broken:  # an unreadable policy may still name its address sets
            for row in view.sets.values():
                row.delete()
                self.changes += 1


class ReadPolicies(command.ReadOnlyCommand):
    """The stored policies: key -> (spec, port group, selected LSPs, ACL count)."""

    def run_idl(self, txn: Any) -> None:
        view = load(self.api)
        out = {}
        for key, (spec, _) in sorted(view.specs.items()):
            row = view.groups.get(policy_port_group(key))
            names = sorted(p.name for p in read_column(row, "ports")) if row is not None else []
            acls = len(read_column(row, "acls")) if row is not None else 0
            out[key] = (spec, policy_port_group(key), names, acls)
        self.result: Any = out
