"""A scripted Kubernetes API for tests: kmock's emulator (a real HTTP server with watch
streams) on a background event loop, so that synchronous tests and controller processes
can talk to it. The test scripts the cluster through the API itself (POST/PATCH/DELETE),
and reads back what kmock recorded.

Where kmock 0.8 differs from an API server in what dpunet reads, `Cluster` does what the
API server does:
- Namespaces: `/api/v1/namespaces[/<name>]` is the cluster-scoped Namespace resource
  (kmock reads `namespaces/<x>` as the namespace prefix of a namespaced path, so creating,
  listing or patching a Namespace failed with 500); a created Namespace gets the immutable
  label `kubernetes.io/metadata.name=<name>` (kept through every update), a uid and
  `status.phase: Active`.
- NetworkPolicy: `spec.policyTypes` defaulted on create and update when empty (Ingress,
  plus Egress with egress rules), and each port's `protocol` to TCP, as the API server's
  defaulting does; then stored as sent.
- Both kinds, and Services and EndpointSlices, are served (an empty list, an empty watch)
  before the first object exists.
- An object created under `/namespaces/<ns>/` without `metadata.namespace` gets it.

`KubeMock.permissions()` maps what a caller did (each recorded method and path) to the
RBAC rules it needed (API group, resource, verb), and `granted()` reads the same triples
from rendered Roles/ClusterRoles: a test compares the two (least privilege).
"""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import httpx
import kmock
import yaml
from kmock._internal import parsing as kmock_parsing

T = TypeVar("T")
Permission = tuple[str, str, str]  # (API group, resource[/subresource], verb)
TOKENREVIEWS = "authentication.k8s.io/v1/tokenreviews"
CONTROLLER_TOKEN = "controller-sa-token-0123456789"
SEED_RESOURCE = "mellanox.com/mlnx_sriov_cx6"
NAMESPACES = kmock.resource("", "v1", "namespaces")
NETWORK_POLICIES = kmock.resource("networking.k8s.io", "v1", "networkpolicies")
SERVICES = kmock.resource("", "v1", "services")
ENDPOINT_SLICES = kmock.resource("discovery.k8s.io", "v1", "endpointslices")
NAME_LABEL = "kubernetes.io/metadata.name"
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?")
_kmock_parse_path = kmock_parsing.parse_path


def _parse_path(path: str) -> Any:
    """kmock's path parser, except that the Namespace resource's own paths are read as
    the cluster-scoped resource `namespaces` (object name, subresource)."""
    match = _NAMESPACE_PATH.fullmatch(path)
    if match is None:
        return _kmock_parse_path(path)
    return kmock_parsing.ParsedPath("", "v1", "namespaces", None, match[1], match[2])


kmock_parsing.parse_path = _parse_path  # kmock 0.8 has no hook for it (module doc)


def _default_policy(obj: dict[str, Any]) -> None:
    """The API server's defaulting of a NetworkPolicy (in place)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", *(["Egress"] if spec.get("egress") else [])]
    for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
        for port in (rule or {}).get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


class Cluster(kmock.KubernetesEmulator):
    """The emulator plus TokenReview as an API server answers it: from `users`
    (token -> (user info, audiences)); TokenReviews are not stored (they never are)."""

    users: dict[str, tuple[dict[str, Any], list[str]]]

    def serve_builtin_kinds(self) -> None:
        """The built-in kinds the controller watches are listed and watched before any
        object of theirs exists (kmock serves a kind only once it has an object)."""
        self.resources[NAMESPACES] = {"namespaced": False, "kind": "Namespace"}
        self.resources[NETWORK_POLICIES] = {"namespaced": True, "kind": "NetworkPolicy"}
        self.resources[SERVICES] = {"namespaced": True, "kind": "Service"}
        self.resources[ENDPOINT_SLICES] = {"namespaced": True, "kind": "EndpointSlice"}

    def _stored(self, request: Any) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return dict(self.objects[key].raw)

    def _admit(self, request: Any) -> None:
        """What the API server adds to a Namespace or NetworkPolicy being written (module
        doc); changes the request's body in place."""
        data = request.data
        if not isinstance(data, dict) or request.action not in (
            kmock.action.CREATE, kmock.action.UPDATE,
        ):  # fmt: skip
            return
        create = request.action == kmock.action.CREATE
        if create and request.namespace and isinstance(data.get("metadata"), dict):
            data["metadata"].setdefault("namespace", request.namespace)  # from the path
        if request.resource == NAMESPACES:
            meta = data.setdefault("metadata", {})
            name = meta.get("name") if create else request.name
            if create:
                meta.setdefault("uid", str(uuid.uuid4()))
                data.setdefault("status", {"phase": "Active"})
                meta["labels"] = {**(meta.get("labels") or {}), NAME_LABEL: name}
            elif "labels" in meta:  # a merge patch: null removes a label (or all of them)
                old = (self._stored(request) or {}).get("metadata", {}).get("labels") or {}
                patch = meta["labels"] or {k: None for k in old}
                meta["labels"] = {**patch, NAME_LABEL: name}
        elif request.resource == NETWORK_POLICIES:
            if create:
                _default_policy(data)
            elif (old := self._stored(request)) is not None and "spec" in data:
                merged = {"spec": {**(old.get("spec") or {}), **(data["spec"] or {})}}
                _default_policy(merged)
                data["spec"] = {**(data["spec"] or {}), **merged["spec"]}

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        self._admit(request)
        if request.resource == kmock.resource(TOKENREVIEWS) and request.method == "POST":
            spec = request.data.get("spec", {})
            user, audiences = self.users.get(spec.get("token", ""), ({}, []))
            wanted = spec.get("audiences") or []
            matched = [a for a in audiences if a in wanted] if wanted else audiences
            ok = bool(user) and (bool(matched) or not wanted)
            status: dict[str, Any] = {"authenticated": ok}
            if ok:
                status.update(user=user, audiences=matched)
            body = {**request.data, "status": status}
            return aiohttp.web.json_response(body, status=201)
        return await super()._handle(request)


class KubeMock:
    """`Cluster` served on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cluster = Cluster()
        self.cluster.users = {}
        self.cluster.serve_builtin_kinds()
        self.server = kmock.Server(self.cluster, host="127.0.0.1")
        self.call(self.cluster.__aenter__())
        self.call(self.server.__aenter__())
        self.url = str(self.cluster.url).rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the mock's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.http.close()
        self.call(self.server.__aexit__(None, None, None))
        self.call(self.cluster.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # ------------------------------------------------------------ scripting
    def kubeconfig(self, path: Path, token: str = CONTROLLER_TOKEN) -> Path:
        """A kubeconfig for this server with a bearer token."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "ctl", "user": {"token": token}}],
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "ctl"}}],
                    "current-context": "kmock",
                }
            )
        )
        return path

    def user(self, token: str, username: str, audiences: list[str], **extra: str) -> None:
        """Make `token` a valid token of `username` with these audiences and extra claims."""
        claims = {k: [v] for k, v in extra.items()}
        info = {"username": username, "uid": f"uid-{username}", "extra": claims}
        self.cluster.users[token] = (info, audiences)

    def _send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        resp = self.http.request(method, path, json=body, headers=headers)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def node(
        self, name: str, ip: str, labels: dict[str, str] | None = None, **annotations: str
    ) -> dict[str, Any]:
        """Create a Node."""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": f"uid-node-{name}",
                "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                "annotations": annotations,
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": ip},
                    {"type": "Hostname", "address": name},
                ]
            },
        }
        return self._send("POST", "/api/v1/nodes", body)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """Create a Namespace."""
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}}}  # fmt: skip
        return self._send("POST", "/api/v1/namespaces", body)

    def pod(
        self,
        namespace: str,
        name: str,
        uid: str,
        node: str,
        vfs: int = 1,
        labels: dict[str, str] | None = None,
        ports: list[dict[str, Any]] | None = None,
        **annotations: str,
    ) -> dict[str, Any]:
        """Create a scheduled Pod requesting `vfs` of the seed's resource (none when 0),
        with `labels` and container `ports` (`{"name", "containerPort", "protocol"}`)."""
        amount = {SEED_RESOURCE: str(vfs)}
        resources = {"requests": amount, "limits": amount} if vfs else {}
        container: dict[str, Any] = {"name": "app", "image": "busybox", "resources": resources}
        if ports:
            container["ports"] = ports
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "labels": labels or {},
                "annotations": annotations,
            },
            "spec": {"nodeName": node, "containers": [container]},
        }
        return self._send("POST", f"/api/v1/namespaces/{namespace}/pods", body)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object."""
        return self._send("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A merge patch."""
        return self._send("PATCH", path, body)

    def delete(self, path: str) -> dict[str, Any]:
        """Delete an object."""
        return self._send("DELETE", path)

    def get(self, path: str) -> dict[str, Any] | None:
        """An object, or None (404)."""
        resp = self.http.get(path)
        return None if resp.status_code == 404 else dict(resp.json())

    # -------------------------------------------------------------- records
    def permissions(self, token: str = CONTROLLER_TOKEN) -> set[Permission]:
        """The RBAC permissions the requests made with `token` needed."""
        wanted = f"Bearer {token}"
        return {
            permission(r.method, r.url.path, "watch" in r.url.query)
            for r in self.requests()
            if r.headers.get("Authorization") == wanted
        }

    def requests(self, method: str | None = None, path: str = "") -> list[Any]:
        """What kmock recorded (optionally one method and a path prefix)."""

        async def snapshot() -> list[Any]:
            return list(self.cluster)

        return [
            r
            for r in self.call(snapshot())
            if (method is None or r.method == method) and r.url.path.startswith(path)
        ]

    def events(self, namespace: str) -> list[dict[str, Any]]:
        """Events in `namespace` as the API lists them."""
        listed = self.get(f"/api/v1/namespaces/{namespace}/events")  # 404 until the first
        return list(listed["items"]) if listed else []


def permission(method: str, path: str, watch: bool = False) -> Permission:
    """The RBAC rule a request needs: its API group and resource from the path
    (`/api/v1/...` is the core group, `/apis/<group>/<version>/...`; a namespace's own
    objects follow `namespaces/<ns>/`), its verb from the method (a GET of a collection is
    `list`, or `watch` with `?watch`)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        raise ValueError(f"not a resource path: {path}")
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        raise ValueError(f"no resource in {path}")
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method == "GET":
        verb = "get" if named else ("watch" if watch else "list")
    elif method == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = verbs[method]
    return group, resource, verb


def granted(manifests: list[dict[str, Any]]) -> set[Permission]:
    """The permissions the Roles and ClusterRoles among `manifests` grant."""
    return {
        (group, resource, verb)
        for m in manifests
        if m.get("kind") in ("Role", "ClusterRole")
        for rule in m.get("rules", [])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
