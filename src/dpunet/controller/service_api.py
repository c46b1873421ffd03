"""The service routes of the controller API (`/v1/services`), mounted by api.create_app."""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path, Query

from dpunet.contract.api import DNS_LABEL, DeleteResult, ErrorBody
from dpunet.contract.services import ServiceInfo, ServiceList, ServiceSpec
from dpunet.controller.routing import StrictJsonRoute, Who

if TYPE_CHECKING:
    from dpunet.controller.app import Controller

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "outside the service CIDR or node port range (nothing written)"),
        (401, "missing or unknown bearer token"),
        (403, "only an admin token may change services"),
        (404, "no such service"),
        (409, "the cluster IP or node port belongs to another service, or clusterIP changed"),
        (413, "request body too large"),
        (503, "OVN Northbound unavailable; retry"),
        (507, "no free cluster IP or node port left"),
    )
}

Namespace = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="namespace")]
Name = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="service name")]


def service_routes(ctl: "Controller") -> APIRouter:
    """The routes serving `ctl.services`."""
    router = APIRouter(
        prefix="/v1/services", tags=["services"], responses=_ERRORS, route_class=StrictJsonRoute
    )

    @router.get("", response_model=ServiceList)
    async def list_services(
        who: Who,
        namespace: Annotated[str | None, Query(pattern=DNS_LABEL, max_length=63)] = None,
    ) -> ServiceList:
        """Services, optionally of one namespace."""
        return await ctl.services.list(who, namespace)

    @router.get("/{namespace}/{name}", response_model=ServiceInfo)
    async def get_service(who: Who, namespace: Namespace, name: Name) -> ServiceInfo:
        """One service with its allocations and current backends."""
        return await ctl.services.get(who, namespace, name)

    @router.put("/{namespace}/{name}", response_model=ServiceInfo)
    async def put_service(
        who: Who, namespace: Namespace, name: Name, spec: ServiceSpec
    ) -> ServiceInfo:
        """Create or update a service (admin): cluster IP and node ports are allocated
        unless given; its OVN load balancers are written in the same transaction."""
        return await ctl.services.put(who, namespace, name, spec)

    @router.delete("/{namespace}/{name}", response_model=DeleteResult)
    async def delete_service(who: Who, namespace: Namespace, name: Name) -> DeleteResult:
        """Remove a service and its load balancers (admin); unknown services succeed."""
        return await ctl.services.delete(who, namespace, name)

    return router
