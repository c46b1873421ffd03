"""Kubernetes mode: NetworkPolicy, Namespace and Pod objects are the source of the
policies (docs/network-policy.md).

Every NetworkPolicy (`networking.k8s.io/v1`) becomes its spec; one dpunet cannot use is
logged (`k8s.policy_unusable`) and left out, as if absent. Every Namespace gives its
labels (what namespaceSelectors match); every Pod its labels and named container ports,
from the pod source's cache (k8s/sources.py, one Pod watch for the whole controller). Once
policies, namespaces and pods have all been listed, each change hands the policy
controller the whole set, which replaces what Northbound stores on the next pass.
"""

from __future__ import annotations

import asyncio
import logging

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.networking_v1 import NetworkPolicy
from pydantic import ValidationError

from dpunet.contract.policy import NetworkPolicySpec
from dpunet.controller.k8s.kube import list_and_watch
from dpunet.controller.k8s.sources import PodSource
from dpunet.controller.policies import PolicyController
from dpunet.controller.policy_acls import policy_key
from dpunet.controller.policy_nb import ExternalPolicies
from dpunet.logs import event
from dpunet.settings import describe

log = logging.getLogger("dpunet.k8s.policies")


def policy_spec(obj: NetworkPolicy) -> NetworkPolicySpec:
    """The spec of a NetworkPolicy object; ValidationError when dpunet cannot use it."""
    return NetworkPolicySpec.model_validate(obj.to_dict().get("spec") or {})


class PolicySource:
    """Watch NetworkPolicies and Namespaces, follow the pods' labels and named ports;
    hand the policy controller the whole set."""

    def __init__(self, client: AsyncClient, policies: PolicyController, pods: PodSource) -> None:
        self.client = client
        self.policies = policies
        self.pods = pods
        self._specs: dict[str, NetworkPolicySpec] = {}
        self._namespaces: dict[str, dict[str, str]] = {}
        self._listed: set[str] = set()
        policies.use_external_source()
        pods.on_policy_meta.append(self._publish)

    async def run(self) -> None:
        """Until cancelled."""
        client = self.client
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                list_and_watch(client, NetworkPolicy, self._policies_listed, self._policy_changed)
            )
            tasks.create_task(
                list_and_watch(client, Namespace, self._namespaces_listed, self._namespace_changed)
            )

    def _publish(self) -> None:
        if self._listed != {"policies", "namespaces"} or not self.pods.synced:
            return
        pods = {key: (dict(meta.labels), meta.ports) for key, meta in self.pods.policy_meta.items()}
        self.policies.replace_external(
            ExternalPolicies(dict(self._specs), dict(self._namespaces), pods)
        )

    def _set_policy(self, obj: NetworkPolicy) -> None:
        meta = obj.metadata
        if meta is None or not meta.name or not meta.namespace:
            return
        key = policy_key(meta.namespace, meta.name)
        try:
            self._specs[key] = policy_spec(obj)
        except ValidationError as exc:
            self._specs.pop(key, None)
            reason = describe(exc)
            event(log, "k8s.policy_unusable", logging.WARNING, policy=key, reason=reason)

    async def _policies_listed(self, items: list[NetworkPolicy]) -> None:
        self._specs = {}
        for obj in items:
            self._set_policy(obj)
        self._listed.add("policies")
        event(log, "k8s.policies_listed", policies=len(self._specs))
        self._publish()

    async def _policy_changed(self, kind: str, obj: NetworkPolicy) -> None:
        meta = obj.metadata
        if meta is None or not meta.name or not meta.namespace:
            return
        if kind == "DELETED":
            self._specs.pop(policy_key(meta.namespace, meta.name), None)
        else:
            self._set_policy(obj)
        self._publish()

    async def _namespaces_listed(self, items: list[Namespace]) -> None:
        self._namespaces = {
            n.metadata.name: dict(n.metadata.labels or {})
            for n in items
            if n.metadata is not None and n.metadata.name
        }
        self._listed.add("namespaces")
        self._publish()

    async def _namespace_changed(self, kind: str, obj: Namespace) -> None:
        meta = obj.metadata
        if meta is None or not meta.name:
            return
        labels = dict(meta.labels or {})
        if kind == "DELETED":
            self._namespaces.pop(meta.name, None)
        elif self._namespaces.get(meta.name) == labels:
            return  # a status change: nothing policies look at
        else:
            self._namespaces[meta.name] = labels
        self._publish()
