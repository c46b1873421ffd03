"""The controller's Kubernetes API client (lightkube) and a level-triggered list+watch loop.

Why lightkube: see docs/kubernetes.md ("The controller's Kubernetes client").
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.core.exceptions import ApiError, NotReadyError
from lightkube.core.resource import GlobalResource, NamespacedResource

from dpunet.controller.config import ControllerConfig
from dpunet.logs import event

log = logging.getLogger("dpunet.k8s")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_NAMESPACE = "dpunet"
FIELD_MANAGER = "dpunet-controller"
RELIST_S = 300.0  # a fresh list now and then, also if a watch hangs silently
_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0

R = TypeVar("R", bound=GlobalResource | NamespacedResource)
KubeErrors = (ApiError, httpx2.HTTPError, OSError)


def make_client(cfg: ControllerConfig) -> AsyncClient:
    """A client from `cfg.kubeconfig`, else the pod's service account, else $KUBECONFIG."""
    for noisy in ("httpx2", "httpcore2"):  # one line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = (
        KubeConfig.from_file(cfg.kubeconfig)
        if cfg.kubeconfig is not None
        else KubeConfig.from_env()
    )
    return AsyncClient(config=config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(15.0))


def own_namespace(cfg: ControllerConfig, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> str:
    """`k8s_namespace`, else the namespace of the pod's service account, else `dpunet`."""
    if cfg.k8s_namespace:
        return cfg.k8s_namespace
    try:
        return (sa_dir / "namespace").read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def status_code(exc: BaseException) -> int:
    """The HTTP status of an API error (0 when the server was not reached)."""
    if isinstance(exc, httpx2.HTTPStatusError):  # lightkube's ApiError is one too
        return exc.response.status_code
    return 0


async def list_and_watch(
    client: AsyncClient,
    resource: type[R],
    on_list: Callable[[list[R]], Awaitable[None]],
    on_event: Callable[[str, R], Awaitable[None]],
    relist: float = RELIST_S,
) -> None:
    """Forever: list `resource` (all namespaces) and hand the full set to `on_list`, then
    hand each watch event to `on_event`; any error backs off and lists again, and so does
    `relist` seconds of watching. Handlers must be idempotent (a watch may repeat objects)."""
    kind = resource.__name__
    api: Any = client  # lightkube's overloads cannot take a type variable
    backoff = _BACKOFF_MIN_S
    namespaced = issubclass(resource, NamespacedResource)
    scope: dict[str, Any] = {"namespace": "*"} if namespaced else {}
    while True:
        try:
            listing = api.list(resource, **scope)
            items = [obj async for obj in listing]
            await on_list(items)
            backoff = _BACKOFF_MIN_S
            version = _version(listing)
            async with asyncio.timeout(relist * random.uniform(0.9, 1.1)):
                async for kind_of_change, obj in api.watch(
                    resource, server_timeout=int(relist), resource_version=version, **scope
                ):
                    await on_event(kind_of_change, obj)
        except TimeoutError:
            continue
        except KubeErrors as exc:
            event(log, "k8s.watch_failed", logging.WARNING, kind=kind, error=str(exc) or repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)


def _version(listing: Any) -> str | None:
    try:
        return str(listing.resourceVersion) or None
    except NotReadyError:  # the server sent none
        return None
