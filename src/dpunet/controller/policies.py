"""The policy controller: NetworkPolicy as OVN ACLs (see policy_acls.py, policy_nb.py).

Level-triggered like the service controller: a pass (policy_nb.SyncPolicies) recomputes
every policy object from the specs and namespace labels stored in Northbound and the pod
ports, and writes only the difference. Passes (controller/passes.py) run once the
controller holds the NB lock, when NB reports a change to ports, switches or policy
objects (to ports and switches only while some policy exists; not a pass's own writes,
which NB reports while its transaction is in flight), and every
`reconcile_interval`. An API write (PUT, DELETE, namespace labels) is admitted by a pass
of its own, shared with the writes that arrived while the previous one ran (a batch of
concurrent writes costs one pass, not one each); its answer comes from that pass's result.

In Kubernetes mode (`use_external_source`) the policies, namespace labels and pods' labels
and named ports come from the API server (k8s/policies.py hands over the whole set on each
change); no pass runs before the first complete set, and the API's writes answer 409.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from functools import partial

from prometheus_client import Counter

from dpunet.contract.api import DeleteResult
from dpunet.contract.policy import (
    NamespaceLabels,
    NetworkPolicy,
    PolicyInfo,
    PolicyList,
    spec_json,
)
from dpunet.controller.auth import Principal
from dpunet.controller.config import ControllerConfig
from dpunet.controller.errors import BadRequest, Conflict, Forbidden, NotFound
from dpunet.controller.metrics import Metrics
from dpunet.controller.nb import NbClient
from dpunet.controller.nbcommands import LS, LSP
from dpunet.controller.passes import PassLoop
from dpunet.controller.policy_acls import policy_key, policy_port_group
from dpunet.controller.policy_nb import (
    ACL_TABLE,
    ADDRESS_SET,
    PORT_GROUP,
    ExternalPolicies,
    PolicyCache,
    PolicyChange,
    PolicySyncResult,
    ReadPolicies,
    SyncPolicies,
)
from dpunet.logs import event

log = logging.getLogger("dpunet.controller.policies")
WATCHED = frozenset({LSP, LS, PORT_GROUP, ADDRESS_SET, ACL_TABLE})
POD_TABLES = frozenset({LSP, LS})  # what a pass reads besides the policy objects
OWN_TABLES = frozenset({PORT_GROUP, ADDRESS_SET, ACL_TABLE})  # what only passes write
SWITCH_ACLS = frozenset({"acls"})  # the one Logical_Switch column passes write


class PolicyController:
    """Policy API operations and the sync loop."""

    def __init__(self, cfg: ControllerConfig, nb: NbClient, metrics: Metrics) -> None:
        self.cfg = cfg
        self.nb = nb
        # no policy after the last pass: pod and switch changes have nothing to update
        # (a pass would only queue an empty transaction among the port writes)
        self._idle = False
        self._external = False  # Kubernetes mode: the API server has the policies
        self.external: ExternalPolicies | None = None  # what it said last (None: not yet)
        self.syncs = Counter(
            "dpunet_controller_policy_syncs",
            "NetworkPolicy passes by result",
            ["result"],
            registry=metrics.registry,
        )
        self.changes = Counter(
            "dpunet_controller_policy_changes",
            "Port group, address set and ACL columns and rows written by policy passes",
            registry=metrics.registry,
        )
        # API writes waiting for the next pass, and the lock a pass that admits them holds
        self._waiting: list[tuple[PolicyChange, asyncio.Future[tuple[PolicySyncResult, bool]]]]
        self._waiting = []
        self._admitting = asyncio.Lock()
        self._writing = 0  # passes whose transaction is in flight (read by the IDL thread)
        self.cache = PolicyCache()  # pods and specs parsed by passes
        self.passes = PassLoop(
            "policy", cfg.reconcile_interval, self._can_run, self._write, self.syncs, log
        )
        nb.on_change(self._changed)

    def _can_run(self) -> bool:
        return self.nb.ready and not (self._external and self.external is None)

    def use_external_source(self) -> None:
        """Kubernetes mode: everything policies depend on comes from `replace_external`."""
        self._external = True

    def replace_external(self, external: ExternalPolicies) -> None:
        """The API server's whole current set (event loop thread); a pass follows."""
        self.external = external
        self.passes.wake.set()

    def _changed(
        self, table: str, row: uuid.UUID | None = None, columns: frozenset[str] | None = None
    ) -> None:
        """IDL thread: something in Northbound changed (an LSP: its parse is dropped from
        the cache). While a pass's transaction is in flight, changes to what only passes
        write are its own echo (NB reports them before the transaction's reply) and wake
        nothing; anything else changed by someone else then is corrected by the periodic
        pass."""
        if table == LSP and row is not None:
            self.cache.changed(row)
        if self._idle and table in POD_TABLES:
            return
        if self._writing and (table in OWN_TABLES or (table == LS and columns == SWITCH_ACLS)):
            return
        if table in WATCHED:
            self.passes.wake_from_thread()

    async def run(self) -> None:
        """Pass after pass, forever (cancel to stop)."""
        await self.passes.run()

    async def _admit(self, change: PolicyChange) -> tuple[PolicySyncResult, bool]:
        """Admit one API write in a pass, with every write waiting meanwhile: (that pass's
        result, whether the change's policy existed just before it)."""
        future: asyncio.Future[tuple[PolicySyncResult, bool]]
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((change, future))
        async with self._admitting:
            if not future.done():
                batch, self._waiting = self._waiting, []
                try:
                    result = await self._write([c for c, _ in batch])
                except Exception as exc:
                    for _, waiter in batch:
                        if waiter is not future and not waiter.done():
                            waiter.set_exception(exc)
                    raise
                for (_, waiter), existed in zip(batch, result.existed, strict=True):
                    if not waiter.done():
                        waiter.set_result((result, existed))
        return await future

    async def _write(self, changes: list[PolicyChange] | None = None) -> PolicySyncResult:
        sync = partial(
            SyncPolicies, changes=changes or (), external=self.external, cache=self.cache
        )
        self._writing += 1
        try:
            result: PolicySyncResult = await self.nb.write(sync)
        finally:
            self._writing -= 1
        self._idle = not result.policies and not result.broken
        self.syncs.labels("ok").inc()
        self.changes.inc(result.changes)
        if result.changes:
            event(log, "policy.sync", changes=result.changes)
        for key, reason in sorted(result.broken.items()):
            event(log, "policy.unreadable", logging.WARNING, policy=key, reason=reason)
        return result

    # ------------------------------------------------------------------ API
    def _admin(self, who: Principal, what: str) -> None:
        if not who.admin:
            raise Forbidden(f"only an admin token may {what}")
        if self._external:
            raise Conflict(
                "in Kubernetes mode policies and namespace labels come from the API server: "
                "use kubectl (NetworkPolicy objects, kubectl label namespace)"
            )

    async def put(
        self, who: Principal, namespace: str, name: str, policy: NetworkPolicy
    ) -> PolicyInfo:
        """Create or replace a policy (admin); repeating a PUT writes nothing."""
        self._admin(who, "create or change policies")
        meta = policy.metadata
        for what, given, path in (
            ("name", meta.name, name),
            ("namespace", meta.namespace, namespace),
        ):
            if given is not None and given != path:
                raise BadRequest(f"metadata.{what} {given!r} differs from the path's {path!r}")
        key = policy_key(namespace, name)
        result, existed = await self._admit(PolicyChange(key=key, spec=policy.spec))
        pods, acls = result.policies.get(key, ([], 0))  # absent: deleted in the same pass
        event(
            log, "policy.put", policy=key, action="updated" if existed else "created",
            pods=len(pods), acls=acls, changes=result.changes,
        )  # fmt: skip
        return PolicyInfo(
            namespace=namespace, name=name, spec=spec_json(policy.spec),
            port_group=policy_port_group(key), pods=pods, acls=acls,
        )  # fmt: skip

    async def delete(self, who: Principal, namespace: str, name: str) -> DeleteResult:
        """Remove a policy and its objects (admin); unknown policies succeed."""
        self._admin(who, "delete policies")
        key = policy_key(namespace, name)
        result, existed = await self._admit(PolicyChange(key=key, delete=True))
        event(log, "policy.delete", policy=key, existed=existed, changes=result.changes)
        if not existed:
            return DeleteResult(deleted=False, detail=f"no policy {key}")
        return DeleteResult(deleted=True, detail=f"policy {key} removed")

    async def get(self, who: Principal, namespace: str, name: str) -> PolicyInfo:
        """One policy; 404 when absent."""
        key = policy_key(namespace, name)
        found = (await self.list(who, namespace)).items
        info = next((p for p in found if p.name == name), None)
        if info is None:
            raise NotFound(f"no policy {key}")
        return info

    async def list(self, who: Principal, namespace: str | None = None) -> PolicyList:
        """Every policy, optionally of one namespace."""
        stored = await self.nb.read(ReadPolicies)
        items = []
        for key, (spec, group, pods, acls) in stored.items():
            ns, _, name = key.partition("/")
            if namespace is None or ns == namespace:
                items.append(PolicyInfo(namespace=ns, name=name, spec=spec_json(spec),
                                        port_group=group, pods=pods, acls=acls))  # fmt: skip
        return PolicyList(items=items)

    async def label_namespace(
        self, who: Principal, namespace: str, labels: Mapping[str, str]
    ) -> NamespaceLabels:
        """Set a namespace's labels (admin; what namespaceSelectors match)."""
        self._admin(who, "label namespaces")
        change = PolicyChange(namespace=namespace, labels=dict(labels))
        result, _ = await self._admit(change)
        event(log, "policy.namespace", namespace=namespace, labels=dict(labels),
              changes=result.changes)  # fmt: skip
        return NamespaceLabels(labels=dict(labels))
