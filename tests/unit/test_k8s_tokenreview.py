"""TokenReview authentication against kmock (a real HTTP server speaking the Kubernetes
API) that counts the reviews it receives and can hold them open: bogus tokens cost one
review per token and cap-limited concurrency, not one review per request."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import kmock
import pytest
import pytest_asyncio
from lightkube import AsyncClient, KubeConfig
from tokenreview_server import ADMIN_TOKEN, ReviewServer

from dpunet.controller.auth import Principal
from dpunet.controller.k8s.tokenreview import MAX_CONCURRENT_REVIEWS, TokenReviewAuthenticator


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ReviewServer]:
    cluster = ReviewServer()
    cluster.received = cluster.in_flight = cluster.peak = 0
    cluster.gate = asyncio.Event()
    cluster.gate.set()
    async with cluster, kmock.Server(cluster, host="127.0.0.1"):
        yield cluster


def authenticator(server: ReviewServer) -> TokenReviewAuthenticator:
    config = KubeConfig.from_dict(
        {
            "clusters": [{"name": "k", "cluster": {"server": str(server.url)}}],
            "users": [{"name": "u", "user": {"token": "controller-token-0123"}}],
            "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
            "current-context": "k",
        }
    )
    return TokenReviewAuthenticator(AsyncClient(config=config), "dpunet", ["dpunet"], [], ["ops"])


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


@pytest.mark.asyncio
async def test_a_rejected_token_is_not_reviewed_again_at_once(server: ReviewServer) -> None:
    auth = authenticator(server)
    for _ in range(5):
        assert await auth.authenticate("bogus-token-0123456789") is None
    assert await auth.authenticate(ADMIN_TOKEN) == Principal(admin=True)
    assert await auth.authenticate(ADMIN_TOKEN) == Principal(admin=True)
    assert server.received == 2


@pytest.mark.asyncio
async def test_many_bogus_tokens_are_reviewed_a_few_at_a_time(server: ReviewServer) -> None:
    auth = authenticator(server)
    server.gate.clear()
    tokens = [secrets.token_urlsafe(24) for _ in range(60)]
    calls = [asyncio.ensure_future(auth.authenticate(t)) for t in tokens]
    await until(lambda: server.in_flight >= MAX_CONCURRENT_REVIEWS)
    server.gate.set()
    assert await asyncio.gather(*calls) == [None] * len(tokens)
    assert server.peak == MAX_CONCURRENT_REVIEWS and server.received == len(tokens)


@pytest.mark.asyncio
async def test_concurrent_requests_with_one_token_share_one_review(server: ReviewServer) -> None:
    auth = authenticator(server)
    server.gate.clear()
    calls = [asyncio.ensure_future(auth.authenticate("bogus-token-0123456789")) for _ in range(30)]
    await until(lambda: server.in_flight == 1)
    server.gate.set()
    assert await asyncio.gather(*calls) == [None] * 30
    assert server.received == 1
