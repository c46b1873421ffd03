"""A small synchronous client of the controller API (CLI, lab, host agents)."""

from __future__ import annotations

import contextlib
import os
from types import TracebackType
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:9477"


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


class ControllerClient:
    """`http://HOST:PORT` or `unix:/path/to/api.sock`, with a bearer token, or a token file
    that is re-read whenever it changes (projected ServiceAccount tokens rotate)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 90.0,
        token_file: str | None = None,
    ):
        self.url = url
        transport = None
        base = url
        if url.startswith("unix:"):
            transport = httpx.HTTPTransport(uds=url[len("unix:") :])
            base = "http://controller"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=base, transport=transport, headers=headers, timeout=timeout
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

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
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
        return body

    def list_nodes(self) -> list[dict[str, Any]]:
        """Registered nodes."""
        return list(self._call("GET", "/v1/nodes")["items"])

    def get_node(self, name: str) -> dict[str, Any]:
        """One node."""
        return dict(self._call("GET", f"/v1/nodes/{name}"))

    def put_node(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Register or update a node (admin token)."""
        return dict(self._call("PUT", f"/v1/nodes/{name}", json=spec))

    def delete_node(self, name: str) -> dict[str, Any]:
        """Remove a node and its ports (admin token)."""
        return dict(self._call("DELETE", f"/v1/nodes/{name}"))

    def list_ports(self, node: str | None = None, namespace: str | None = None) -> list[Any]:
        """Pod ports, optionally filtered."""
        params = {k: v for k, v in (("node", node), ("namespace", namespace)) if v}
        return list(self._call("GET", "/v1/ports", params=params)["items"])

    def get_port(self, namespace: str, name: str) -> dict[str, Any]:
        """One pod port."""
        return dict(self._call("GET", f"/v1/ports/{namespace}/{name}"))

    def put_port(
        self, namespace: str, name: str, request: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        """Create (or re-confirm) a pod port and wait until it is up."""
        params = {"timeout": timeout} if timeout else {}
        return dict(self._call("PUT", f"/v1/ports/{namespace}/{name}", json=request, params=params))

    def delete_port(
        self, namespace: str, name: str, uid: str | None = None, sandbox: str | None = None
    ) -> dict[str, Any]:
        """Release a pod port (unknown ports succeed)."""
        params = {k: v for k, v in (("uid", uid), ("sandbox", sandbox)) if v}
        return dict(self._call("DELETE", f"/v1/ports/{namespace}/{name}", params=params))

    def report_event(self, namespace: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
        """Report why a pod cannot be attached (a Kubernetes Event in Kubernetes mode)."""
        return dict(self._call("POST", f"/v1/ports/{namespace}/{name}/events", json=report))

    def list_services(self, namespace: str | None = None) -> list[Any]:
        """Services, optionally of one namespace."""
        params = {"namespace": namespace} if namespace else {}
        return list(self._call("GET", "/v1/services", params=params)["items"])

    def get_service(self, namespace: str, name: str) -> dict[str, Any]:
        """One service."""
        return dict(self._call("GET", f"/v1/services/{namespace}/{name}"))

    def put_service(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create or update a service (admin token)."""
        return dict(self._call("PUT", f"/v1/services/{namespace}/{name}", json=spec))

    def delete_service(self, namespace: str, name: str) -> dict[str, Any]:
        """Remove a service (admin token; unknown services succeed)."""
        return dict(self._call("DELETE", f"/v1/services/{namespace}/{name}"))
