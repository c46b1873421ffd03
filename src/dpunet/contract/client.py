"""A small synchronous client of the controller API (CLI, lab, host agents): requests
and answers are the models of `dpunet.contract`, which the server validates with too."""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from dpunet.contract.api import (
    DeleteResult,
    DpuBinding,
    DpuLease,
    DpuRegistration,
    EventResult,
    GatewayReport,
    NodeGateway,
    NodeInfo,
    NodeList,
    NodeSpec,
    PodEventReport,
    PortInfo,
    PortList,
    PortRequest,
)

if TYPE_CHECKING:  # their models load with the first call that needs them (not in the DPU lease)
    from dpunet.contract.policy import NamespaceLabels, NetworkPolicy, PolicyInfo
    from dpunet.contract.services import ServiceInfo, ServiceSpec

DEFAULT_URL = "http://127.0.0.1:9477"
M = TypeVar("M", bound=BaseModel)


class ClientError(Exception):
    """The controller answered with an error, or could not be reached (`status` 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{detail} (HTTP {status})" if status else detail)
        self.status = status
        self.detail = detail


def read_token_file(path: str) -> str:
    """The first word of the first non-comment line (a bare token file, or the controller's
    token file, whose first entry is then used)."""
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if line:
                return line.split()[0]
    raise ClientError(0, f"no token in {path}")


def tls_context(
    ca_cert: str | None, certificate: str | None = None, private_key: str | None = None
) -> ssl.SSLContext:
    """What an `https://` client trusts: the server's certificate must chain to `ca_cert`
    (the system's CAs when None) and name the host dialled; with `certificate` and
    `private_key`, the client shows its own. ClientError (status 0) for unusable files."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_cert)
        if certificate is not None and private_key is not None:
            ctx.load_cert_chain(certificate, private_key)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        files = ", ".join(f for f in (ca_cert, certificate, private_key) if f)
        raise ClientError(0, f"TLS files {files}: {reason}") from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class ControllerClient:
    """`https://HOST:PORT` (or `http://`), or `unix:/path/to/api.sock`, with a bearer token,
    or a token file that is re-read whenever it changes (projected ServiceAccount tokens
    rotate). `tls` is the context of an `https://` URL (`tls_context`; default: the
    system's CAs)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 90.0,
        token_file: str | None = None,
        tls: ssl.SSLContext | None = None,
    ):
        self.url = url
        transport = None
        base = url
        verify: ssl.SSLContext | bool = tls if tls is not None else True
        if url.startswith("unix:"):
            # plain HTTP: no TLS context to load (the system's CAs cost ~25 ms of CPU)
            verify = False
            transport = httpx.HTTPTransport(uds=url[len("unix:") :], verify=verify)
            base = "http://controller"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base, transport=transport, headers=headers, timeout=timeout, verify=verify
        )
        self._token_file = token_file
        self._token_stamp: tuple[float, int] | None = None
        if token_file is not None:
            self._reload_token(os.stat(token_file))

    def _reload_token(self, stat: os.stat_result) -> None:
        stamp = (stat.st_mtime, stat.st_ino)
        if stamp != self._token_stamp and self._token_file is not None:
            self._http.headers["Authorization"] = f"Bearer {read_token_file(self._token_file)}"
            self._token_stamp = stamp

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def _call(self, method: str, path: str, answer: type[M], **kwargs: Any) -> M:
        """One request; its answer as `answer`; ClientError for an error answer, no answer
        (status 0) or one that does not fit the API (502)."""
        if self._token_file is not None:
            with contextlib.suppress(OSError, ClientError):  # keep the last good token
                self._reload_token(os.stat(self._token_file))
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(0, f"cannot reach the controller at {self.url}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {"detail": resp.text}
        if resp.is_error:
            detail = body.get("detail") if isinstance(body, dict) else body
            raise ClientError(resp.status_code, str(detail))
        try:
            return answer.model_validate(body)
        except ValidationError as exc:
            raise ClientError(502, f"{method} {path}: unexpected answer: {exc}") from exc

    def list_nodes(self) -> list[NodeInfo]:
        """Registered nodes."""
        return self._call("GET", "/v1/nodes", NodeList).items

    def get_node(self, name: str) -> NodeInfo:
        """One node."""
        return self._call("GET", f"/v1/nodes/{name}", NodeInfo)

    def put_node(self, name: str, spec: NodeSpec | Mapping[str, Any]) -> NodeInfo:
        """Register or update a node (admin token); a mapping is sent as it is, for the
        server to validate (what a person typed gets the server's reasons)."""
        return self._call("PUT", f"/v1/nodes/{name}", NodeInfo, json=_body(spec))

    def renew_dpu_lease(self, node: str) -> DpuLease:
        """Renew the lease of the DPU serving `node` (that DPU's token, or admin)."""
        return self._call("PUT", f"/v1/nodes/{node}/dpu-lease", DpuLease)

    def register_dpu(self, node: str, registration: DpuRegistration) -> DpuBinding:
        """Bind dpu-host node `node` to the DPU's chassis (that DPU's token, or admin)."""
        return self._call("PUT", f"/v1/nodes/{node}/dpu", DpuBinding, json=_body(registration))

    def report_gateway(self, node: str, report: GatewayReport) -> NodeGateway:
        """Report full node `node`'s gateway MAC (that node's token, or admin)."""
        return self._call("PUT", f"/v1/nodes/{node}/gateway", NodeGateway, json=_body(report))

    def delete_node(self, name: str) -> DeleteResult:
        """Remove a node and its ports (admin token)."""
        return self._call("DELETE", f"/v1/nodes/{name}", DeleteResult)

    def list_ports(self, node: str | None = None, namespace: str | None = None) -> list[PortInfo]:
        """Pod ports (every attachment's), optionally filtered."""
        params = _params(node=node, namespace=namespace)
        return self._call("GET", "/v1/ports", PortList, params=params).items

    def get_port(self, namespace: str, name: str, network: str | None = None) -> PortInfo:
        """A pod's primary port, or its port in secondary `network`."""
        params = _params(network=network)
        return self._call("GET", f"/v1/ports/{namespace}/{name}", PortInfo, params=params)

    def put_port(
        self, namespace: str, name: str, request: PortRequest, timeout: float | None = None
    ) -> PortInfo:
        """Create (or re-confirm) a pod port and wait until it is up."""
        params = {"timeout": timeout} if timeout else {}
        return self._call(
            "PUT", f"/v1/ports/{namespace}/{name}", PortInfo, json=_body(request), params=params
        )

    def delete_port(
        self,
        namespace: str,
        name: str,
        uid: str | None = None,
        sandbox: str | None = None,
        network: str | None = None,
    ) -> DeleteResult:
        """Release a pod's primary port, or its port in `network` (unknown ports succeed)."""
        params = _params(uid=uid, sandbox=sandbox, network=network)
        return self._call("DELETE", f"/v1/ports/{namespace}/{name}", DeleteResult, params=params)

    def report_event(self, namespace: str, name: str, report: PodEventReport) -> EventResult:
        """Report why a pod cannot be attached (a Kubernetes Event in Kubernetes mode)."""
        path = f"/v1/ports/{namespace}/{name}/events"
        return self._call("POST", path, EventResult, json=_body(report))

    def list_services(self, namespace: str | None = None) -> list[ServiceInfo]:
        """Services, optionally of one namespace."""
        from dpunet.contract.services import ServiceList

        params = _params(namespace=namespace)
        return self._call("GET", "/v1/services", ServiceList, params=params).items

    def get_service(self, namespace: str, name: str) -> ServiceInfo:
        """One service."""
        from dpunet.contract.services import ServiceInfo

        return self._call("GET", f"/v1/services/{namespace}/{name}", ServiceInfo)

    def put_service(
        self, namespace: str, name: str, spec: ServiceSpec | Mapping[str, Any]
    ) -> ServiceInfo:
        """Create or update a service (admin token); a mapping is sent as it is, for the
        server to validate."""
        from dpunet.contract.services import ServiceInfo

        return self._call("PUT", f"/v1/services/{namespace}/{name}", ServiceInfo, json=_body(spec))

    def delete_service(self, namespace: str, name: str) -> DeleteResult:
        """Remove a service (admin token; unknown services succeed)."""
        return self._call("DELETE", f"/v1/services/{namespace}/{name}", DeleteResult)

    def list_policies(self, namespace: str | None = None) -> list[PolicyInfo]:
        """NetworkPolicies, optionally of one namespace."""
        from dpunet.contract.policy import PolicyList

        params = _params(namespace=namespace)
        return self._call("GET", "/v1/policies", PolicyList, params=params).items

    def put_policy(
        self, namespace: str, name: str, policy: NetworkPolicy | Mapping[str, Any]
    ) -> PolicyInfo:
        """Create or replace a NetworkPolicy (admin token); a mapping (a manifest) is sent
        as it is, for the server to validate."""
        from dpunet.contract.policy import PolicyInfo

        path = f"/v1/policies/{namespace}/{name}"
        return self._call("PUT", path, PolicyInfo, json=_body(policy))

    def delete_policy(self, namespace: str, name: str) -> DeleteResult:
        """Remove a NetworkPolicy (admin token; unknown policies succeed)."""
        return self._call("DELETE", f"/v1/policies/{namespace}/{name}", DeleteResult)

    def label_namespace(self, namespace: str, labels: Mapping[str, str]) -> NamespaceLabels:
        """Replace a namespace's labels (admin token)."""
        from dpunet.contract.policy import NamespaceLabels

        body = {"labels": dict(labels)}
        return self._call("PUT", f"/v1/namespaces/{namespace}/labels", NamespaceLabels, json=body)


def _body(request: BaseModel | Mapping[str, Any]) -> Any:
    """A request as the JSON the API takes: of a model, the fields the caller set, by wire
    name."""
    if isinstance(request, BaseModel):
        return request.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return dict(request)


def _params(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}
