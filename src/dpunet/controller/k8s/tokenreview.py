"""Kubernetes-mode authentication: ServiceAccount tokens checked with TokenReview.

A token is accepted when the API server authenticates it for one of the configured
audiences and it belongs to
- one of the agents' service accounts (in the controller's namespace): the caller acts
  for one node, taken from the bound token's node claim
  (`authentication.kubernetes.io/node-name` in the user's extra, Kubernetes >= 1.30), or
  else from `spec.nodeName` of the pod the token is bound to (pod name and uid claims,
  the pod looked up and its uid compared);
- a user named in `k8s_admin_users`: admin.
Nothing else is accepted (no static tokens in this mode). Accepted tokens are cached for
`CACHE_TTL_S`, rejected ones for `NEGATIVE_TTL_S`; concurrent requests with one token share
one review, and at most `MAX_CONCURRENT_REVIEWS` reviews are in flight (the others wait),
so a flood of bogus tokens costs the API server a bounded load.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from lightkube import AsyncClient
from lightkube.models.authentication_v1 import TokenReviewSpec, UserInfo
from lightkube.resources.authentication_v1 import TokenReview
from lightkube.resources.core_v1 import Pod

from dpunet.controller.auth import Principal
from dpunet.controller.errors import Unavailable
from dpunet.controller.k8s.kube import KubeErrors, status_code
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s.auth")

NODE_NAME_CLAIM = "authentication.kubernetes.io/node-name"
POD_NAME_CLAIM = "authentication.kubernetes.io/pod-name"
POD_UID_CLAIM = "authentication.kubernetes.io/pod-uid"
SA_PREFIX = "system:serviceaccount:"
CACHE_TTL_S = 10.0
NEGATIVE_TTL_S = 3.0
MAX_CONCURRENT_REVIEWS = 8
_CACHE_MAX = 4096


class TokenReviewAuthenticator:
    """`authenticate(token)` through the API server (see module docstring)."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        audiences: list[str],
        agent_service_accounts: list[str],
        admin_users: list[str],
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.audiences = audiences
        self.agents = {f"{SA_PREFIX}{namespace}:{sa}" for sa in agent_service_accounts}
        self.admins = set(admin_users)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._reviews = asyncio.Semaphore(MAX_CONCURRENT_REVIEWS)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of `token`, or None; Unavailable when the API cannot be asked
        (not cached: the next request asks again)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._review_once(key, token))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _review_once(self, key: str, token: str) -> Principal | None:
        """One review (waiting for a free slot), its answer cached."""
        async with self._reviews:
            principal = await self._review(token)
        now = time.monotonic()
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= _CACHE_MAX:  # a flood of live entries: drop the oldest
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (now + (CACHE_TTL_S if principal else NEGATIVE_TTL_S), principal)
        return principal

    async def _review(self, token: str) -> Principal | None:
        review = TokenReview(spec=TokenReviewSpec(token=token, audiences=self.audiences))
        try:
            answer = await self.client.create(review)
        except KubeErrors as exc:
            raise Unavailable(f"cannot review the token with the Kubernetes API: {exc}") from exc
        status = answer.status
        if status is None or not status.authenticated or status.user is None:
            return None
        if self.audiences and not set(status.audiences or ()) & set(self.audiences):
            return None
        user = status.user
        if user.username in self.admins:
            return Principal(admin=True)
        if user.username not in self.agents:
            event(log, "auth.rejected", logging.WARNING, user=user.username, reason="not an agent")
            return None
        node = await self._node_of(user)
        if node is None:
            return None
        return Principal(admin=False, node=node)

    async def _node_of(self, user: UserInfo) -> str | None:
        """The node a bound agent token acts for."""
        extra = user.extra or {}
        nodes = extra.get(NODE_NAME_CLAIM) or []
        if nodes:
            return nodes[0]
        pods, uids = extra.get(POD_NAME_CLAIM) or [], extra.get(POD_UID_CLAIM) or []
        if not pods or not uids:
            event(log, "auth.rejected", logging.WARNING, user=user.username, reason="not bound")
            return None
        try:
            pod = await self.client.get(Pod, pods[0], namespace=self.namespace)
        except KubeErrors as exc:
            if status_code(exc) == 404:
                return None
            raise Unavailable(f"cannot read the agent's pod {pods[0]}: {exc}") from exc
        if pod.metadata is None or pod.metadata.uid != uids[0] or pod.spec is None:
            return None
        return pod.spec.nodeName or None
