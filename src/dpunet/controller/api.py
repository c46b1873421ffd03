"""The controller's HTTP API (FastAPI): nodes, ports, health, readiness, metrics.

Every request but `/healthz` and `/readyz` (and `/metrics`, `/docs`, `/openapi.json` when
the settings open them) needs `Authorization: Bearer <token>` (see auth.py), checked
before the request is routed or its body read. Errors are `{"detail": "<reason>"}` (422
carries FastAPI's list of validation problems).
"""

import json
import math
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dpunet import __version__
from dpunet.contract.api import (
    DNS_LABEL,
    NETWORK,
    NODE_NAME,
    OPAQUE_ID,
    DeleteResult,
    DpuBinding,
    DpuLease,
    DpuRegistration,
    ErrorBody,
    EventResult,
    GatewayReport,
    Health,
    NodeGateway,
    NodeInfo,
    NodeList,
    NodeSpec,
    PodEventReport,
    PortInfo,
    PortList,
    PortRequest,
)
from dpunet.controller.auth import Authenticator, Principal
from dpunet.controller.errors import ControllerError, Forbidden
from dpunet.controller.policy_api import policy_routes
from dpunet.controller.routing import AnyCaller, StrictJsonRoute, Who
from dpunet.controller.service_api import service_routes

if TYPE_CHECKING:
    from dpunet.controller.app import Controller

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "the request does not make sense for this node (nothing written)"),
        (401, "missing or unknown bearer token"),
        (403, "the token's node (or DPU) may not act on this object"),
        (404, "no such node or port"),
        (409, "conflicts with existing state (or with OVN Southbound)"),
        (413, "request body too large"),
        (503, "OVN Northbound unavailable or the controller is reloading; retry"),
        (504, "the request's deadline passed; the detail names what it waited for"),
        (507, "no free subnet or address left"),
    )
}

# methods the request metrics name (anything else counts as "other")
API_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})

NodeName = Annotated[str, Path(pattern=NODE_NAME, max_length=63, description="node name")]
Namespace = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="pod namespace")]
PodName = Annotated[str, Path(pattern=DNS_LABEL, max_length=63, description="pod name")]
NetworkQuery = Annotated[
    str | None,
    Query(pattern=NETWORK, description="a secondary network's port; absent: the primary port"),
]


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float and non-JSON object turned into a string, so an
    error answer can always be serialised whatever input it quotes."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


class ErrorResponse(JSONResponse):
    """A JSON error answer that renders whatever its content quotes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            json_safe(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")


class _BodyLimit:
    """413 (JSON) for a request body over `limit` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request body is larger than {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and (len(length) > 18 or int(length) > self.limit):
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, detail)
            return message

        await self.app(scope, limited, send)


class _Authenticate:
    """401 for a request without a valid bearer token, before it is routed or its body
    read (anonymous garbage learns nothing); the principal goes to `request.state`."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator, open_paths: set[str]) -> None:
        self.app = app
        self.authenticator = authenticator
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, token = get_authorization_scheme_param(header)
        response: Response | None = None
        if scheme.lower() != "bearer" or not token:
            response = _unauthorized("missing bearer token (Authorization: Bearer <token>)")
        else:
            try:
                who = await self.authenticator.authenticate(token)
            except ControllerError as exc:  # e.g. TokenReview unavailable
                response = ErrorResponse({"detail": str(exc)}, status_code=exc.status)
            else:
                if who is None:
                    response = _unauthorized("unknown bearer token")
                else:
                    scope.setdefault("state", {})["principal"] = who
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _CountRequests:
    """Counts each answered request by method, route and status (`requests` metric)."""

    def __init__(self, app: ASGIApp, count: Counter) -> None:
        self.app = app
        self.count = count  # labelled (method, route, code)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app fails before it starts one

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            # anyone may send any method: only the API's own name a series of their own
            method = scope["method"] if scope["method"] in API_METHODS else "other"
            self.count.labels(method, path, str(status)).inc()


def _unauthorized(detail: str) -> Response:
    return ErrorResponse(
        {"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
    )


def create_app(ctl: "Controller") -> FastAPI:
    """The ASGI app serving `ctl`."""
    cfg = ctl.cfg
    app = FastAPI(
        title="dpunet-controller",
        version=__version__,
        description="Pod ports and nodes of a dpunet cluster (OVN Northbound writer).",
        docs_url="/docs" if cfg.api_docs else None,
        redoc_url=None,
    )
    app.router.route_class = StrictJsonRoute
    app.state.controller = ctl
    app.add_middleware(_BodyLimit, limit=cfg.max_body_bytes)
    open_paths = {"/healthz", "/readyz"}
    if cfg.metrics_anonymous:
        open_paths.add("/metrics")
    if cfg.api_docs:
        open_paths |= {"/docs", "/docs/oauth2-redirect", "/openapi.json"}
    app.add_middleware(_Authenticate, authenticator=ctl.authenticator, open_paths=open_paths)

    @app.exception_handler(ControllerError)
    async def _controller_error(request: Request, exc: ControllerError) -> JSONResponse:
        return ErrorResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return ErrorResponse({"detail": exc.errors()}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # list every method of the path, not just one route's
            methods = {
                m
                for r in app.router.routes
                if isinstance(r, APIRoute) and r.matches(request.scope)[0] is not Match.NONE
                for m in r.methods or ()
            }
            headers["Allow"] = ", ".join(sorted(methods - {"HEAD"}))
        return ErrorResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    app.add_middleware(_CountRequests, count=ctl.metrics.requests)

    # ---------------------------------------------------------------- health
    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """The process is alive."""
        return ctl.health("ok")

    @app.get(
        "/readyz",
        response_model=Health,
        tags=["health"],
        responses={503: {"model": Health, "description": "not ready"}},
    )
    async def readyz(response: Response) -> Health:
        """Connected to the NB leader, holding the dpunet lock, state loaded."""
        if ctl.ready:
            return ctl.health("ready")
        response.status_code = 503
        return ctl.health("not ready")

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics(request: Request) -> Response:
        """Prometheus metrics (admin token, unless `metrics_anonymous`)."""
        who: Principal | None = getattr(request.state, "principal", None)
        if not cfg.metrics_anonymous and (who is None or not who.admin):
            raise Forbidden(f"{who} may not read the metrics (admin token)")
        ctl.metrics.nb_ready.set(1 if ctl.ready else 0)
        return Response(generate_latest(ctl.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ----------------------------------------------------------------- nodes
    @app.get("/v1/nodes", response_model=NodeList, tags=["nodes"], responses=_ERRORS)
    async def list_nodes(who: Who) -> NodeList:
        """Registered nodes (a node's token sees only its own)."""
        return await ctl.nodes.list(who)

    @app.get("/v1/nodes/{name}", response_model=NodeInfo, tags=["nodes"], responses=_ERRORS)
    async def get_node(who: Who, name: NodeName) -> NodeInfo:
        """One node."""
        return await ctl.nodes.get(who, name)

    @app.put("/v1/nodes/{name}", response_model=NodeInfo, tags=["nodes"], responses=_ERRORS)
    async def put_node(who: Who, name: NodeName, spec: NodeSpec) -> NodeInfo:
        """Register or update a node (admin): subnet, management port, gateway."""
        return await ctl.nodes.put(who, name, spec)

    @app.put(
        "/v1/nodes/{name}/dpu-lease", response_model=DpuLease, tags=["nodes"], responses=_ERRORS
    )
    async def renew_dpu_lease(who: AnyCaller, name: NodeName) -> DpuLease:
        """The DPU serving the dpu-host node `name` renews its lease (its `dpu:<chassis>`
        token, the chassis the node is registered with; or admin)."""
        return await ctl.nodes.renew_dpu_lease(who, name)

    @app.put("/v1/nodes/{name}/dpu", response_model=DpuBinding, tags=["nodes"], responses=_ERRORS)
    async def register_dpu(who: AnyCaller, name: NodeName, req: DpuRegistration) -> DpuBinding:
        """The DPU of the dpu-host node `name` registers: its chassis (its `dpu:<chassis>`
        token's) and tunnel endpoint, checked against OVN Southbound, become the node's
        binding (Kubernetes mode: the Node's k8s.ovn.org/node-chassis-id annotation)."""
        return await ctl.registrar.register(who, name, req)

    @app.put(
        "/v1/nodes/{name}/gateway", response_model=NodeGateway, tags=["nodes"], responses=_ERRORS
    )
    async def report_gateway(who: Who, name: NodeName, report: GatewayReport) -> NodeGateway:
        """The agent of full node `name` reports its gateway MAC (breth0's; its own node
        token, or admin): the node's gateway router's (Kubernetes mode: the Node's
        dpunet.io/gateway-mac annotation)."""
        return await ctl.registrar.report_gateway(who, name, report)

    @app.delete("/v1/nodes/{name}", response_model=DeleteResult, tags=["nodes"], responses=_ERRORS)
    async def delete_node(who: Who, name: NodeName) -> DeleteResult:
        """Remove a node with its topology and ports (admin); unknown nodes succeed."""
        return await ctl.nodes.delete(who, name)

    # ----------------------------------------------------------------- ports
    @app.get("/v1/ports", response_model=PortList, tags=["ports"], responses=_ERRORS)
    async def list_ports(
        who: Who,
        node: Annotated[str | None, Query(pattern=NODE_NAME, max_length=63)] = None,
        namespace: Annotated[str | None, Query(pattern=DNS_LABEL, max_length=63)] = None,
    ) -> PortList:
        """Pod ports, optionally filtered (a node's token sees only its own)."""
        return await ctl.ports.list(who, node, namespace)

    @app.get(
        "/v1/ports/{namespace}/{name}", response_model=PortInfo, tags=["ports"], responses=_ERRORS
    )
    async def get_port(
        who: Who, namespace: Namespace, name: PodName, network: NetworkQuery = None
    ) -> PortInfo:
        """One pod port."""
        return await ctl.ports.get(who, namespace, name, network)

    @app.put(
        "/v1/ports/{namespace}/{name}", response_model=PortInfo, tags=["ports"], responses=_ERRORS
    )
    async def put_port(
        who: Who,
        namespace: Namespace,
        name: PodName,
        req: PortRequest,
        timeout: Annotated[
            float | None,
            Query(ge=1, le=600, description="deadline in seconds (default: port_timeout)"),
        ] = None,
    ) -> PortInfo:
        """Allocate address and MAC, write the LSP, wait until it is up; idempotent per
        (uid, sandbox)."""
        return await ctl.ports.put(who, namespace, name, req, timeout)

    @app.delete(
        "/v1/ports/{namespace}/{name}",
        response_model=DeleteResult,
        tags=["ports"],
        responses=_ERRORS,
    )
    async def delete_port(
        who: Who,
        namespace: Namespace,
        name: PodName,
        uid: Annotated[str | None, Query(pattern=OPAQUE_ID)] = None,
        sandbox: Annotated[str | None, Query(pattern=OPAQUE_ID)] = None,
        network: NetworkQuery = None,
    ) -> DeleteResult:
        """Release a pod port; an unknown port succeeds. With uid/sandbox, only a port
        that still belongs to them is released."""
        return await ctl.ports.delete(who, namespace, name, uid, sandbox, network)

    @app.post(
        "/v1/ports/{namespace}/{name}/events",
        response_model=EventResult,
        tags=["ports"],
        responses=_ERRORS,
    )
    async def report_pod_event(
        who: Who, namespace: Namespace, name: PodName, report: PodEventReport
    ) -> EventResult:
        """A node agent reports a failure the pod's user must see: a Kubernetes Event on
        the pod in Kubernetes mode (the pod must run on the caller's node), logged always."""
        return await ctl.pod_event(who, namespace, name, report)

    app.include_router(service_routes(ctl))
    app.include_router(policy_routes(ctl))
    return app
