"""A scripted Kubernetes API for tests: kmock's emulator (a real HTTP server with watch
streams) on a background event loop, so that synchronous tests and controller processes
can talk to it. The test scripts the cluster through the API itself (POST/PATCH/DELETE),
and reads back what kmock recorded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import httpx
import kmock
import yaml

T = TypeVar("T")
TOKENREVIEWS = "authentication.k8s.io/v1/tokenreviews"
CONTROLLER_TOKEN = "controller-sa-token-0123456789"
SEED_RESOURCE = "mellanox.com/mlnx_sriov_cx6"


class Cluster(kmock.KubernetesEmulator):
    """The emulator plus TokenReview as an API server answers it: from `users`
    (token -> (user info, audiences)); TokenReviews are not stored (they never are)."""

    users: dict[str, tuple[dict[str, Any], list[str]]]

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
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

    def pod(
        self, namespace: str, name: str, uid: str, node: str, vfs: int = 1, **annotations: str
    ) -> dict[str, Any]:
        """Create a scheduled Pod requesting `vfs` of the seed's resource (none when 0)."""
        amount = {SEED_RESOURCE: str(vfs)}
        resources = {"requests": amount, "limits": amount} if vfs else {}
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": uid,
                "annotations": annotations,
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "app", "image": "busybox", "resources": resources}],
            },
        }
        return self._send("POST", f"/api/v1/namespaces/{namespace}/pods", body)

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
