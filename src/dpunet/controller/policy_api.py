"""The NetworkPolicy routes of the controller API (`/v1/policies`, namespace labels),
mounted by api.create_app."""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query

from dpunet.contract.api import DNS_LABEL, DeleteResult, ErrorBody
from dpunet.contract.policy import NamespaceLabels, NetworkPolicy, PolicyInfo, PolicyList
from dpunet.controller.routing import StrictJsonRoute, Who

if TYPE_CHECKING:
    from dpunet.controller.app import Controller

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "metadata.name or metadata.namespace differ from the path (nothing written)"),
        (401, "missing or unknown bearer token"),
        (403, "only an admin token may change policies or namespace labels"),
        (404, "no such policy"),
        (413, "request body too large"),
        (503, "OVN Northbound unavailable; retry"),
    )
}

Namespace = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="namespace")]
Name = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="policy name")]


def policy_routes(ctl: "Controller") -> APIRouter:
    """The routes serving `ctl.policies`."""
    router = APIRouter(tags=["policies"], responses=_ERRORS, route_class=StrictJsonRoute)

    @router.get("/v1/policies", response_model=PolicyList)
    async def list_policies(
        who: Who,
        namespace: Annotated[str | None, Query(pattern=DNS_LABEL, max_length=63)] = None,
    ) -> PolicyList:
        """NetworkPolicies, optionally of one namespace."""
        return await ctl.policies.list(who, namespace)

    @router.get("/v1/policies/{namespace}/{name}", response_model=PolicyInfo)
    async def get_policy(who: Who, namespace: Namespace, name: Name) -> PolicyInfo:
        """One policy with its port group and the pods it selects."""
        return await ctl.policies.get(who, namespace, name)

    @router.put("/v1/policies/{namespace}/{name}", response_model=PolicyInfo)
    async def put_policy(
        who: Who, namespace: Namespace, name: Name, policy: NetworkPolicy
    ) -> PolicyInfo:
        """Create or replace a NetworkPolicy (admin; the manifest as JSON): its port
        groups, address sets and ACLs are written in one transaction."""
        return await ctl.policies.put(who, namespace, name, policy)

    @router.delete("/v1/policies/{namespace}/{name}", response_model=DeleteResult)
    async def delete_policy(who: Who, namespace: Namespace, name: Name) -> DeleteResult:
        """Remove a policy and its OVN objects (admin); unknown policies succeed."""
        return await ctl.policies.delete(who, namespace, name)

    @router.put("/v1/namespaces/{namespace}/labels", response_model=NamespaceLabels)
    async def label_namespace(
        who: Who, namespace: Namespace, body: NamespaceLabels
    ) -> NamespaceLabels:
        """Replace a namespace's labels (admin): what namespaceSelectors match."""
        return await ctl.policies.label_namespace(who, namespace, body.labels)

    return router
