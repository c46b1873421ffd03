"""A Kubernetes API server (kmock) that answers TokenReviews: only ADMIN_TOKEN authenticates;
it counts the reviews and can hold them open."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp.web
import kmock

ADMIN_TOKEN = "good-admin-token-0123456789"
REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class ReviewServer(kmock.KubernetesEmulator):
    """Answers TokenReviews (only ADMIN_TOKEN authenticates) once `gate` is set,
    counting those received and the most in flight at once."""

    received: int
    in_flight: int
    peak: int
    gate: asyncio.Event

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        if request.method != "POST" or request.url.path != REVIEWS:
            return await super()._handle(request)
        self.received += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        spec = request.data.get("spec", {})
        status: dict[str, Any] = {"authenticated": spec.get("token") == ADMIN_TOKEN}
        if status["authenticated"]:
            status.update(user={"username": "ops"}, audiences=spec.get("audiences", []))
        return aiohttp.web.json_response({**request.data, "status": status}, status=201)
