"""DPU tokens in Kubernetes mode: the controller in-process (no NB) with kmock as the API
server answering TokenReviews; the DPU agents' tokens come from `dpu_token_file`, which
holds `dpu:<chassis>` lines only, may renew only their node's lease, never reach the API
server, and fail closed like the standalone token file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import kmock
import pytest
import pytest_asyncio
import yaml
from controller_app import DPU1_TOKEN, DPU_TOKENS, bearer, register_node
from tokenreview_server import ADMIN_TOKEN, REVIEWS, ReviewServer

from dpunet.contract.api import NodeRole
from dpunet.controller.api import create_app
from dpunet.controller.app import Controller
from dpunet.controller.auth import DpuTokensFirst, TokenFileError
from dpunet.controller.config import ControllerConfig

NODE_LINE = "node-token-host1-0123456789 node:host1\n"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ReviewServer]:
    cluster = ReviewServer()
    cluster.received = cluster.in_flight = cluster.peak = 0
    cluster.gate = asyncio.Event()
    cluster.gate.set()
    async with cluster, kmock.Server(cluster, host="127.0.0.1"):
        yield cluster


def dpu_token_file(directory: Path, text: str = DPU_TOKENS, mode: int = 0o600) -> Path:
    path = directory / "dpu-tokens"
    path.write_text(text)
    path.chmod(mode)
    return path


def kube_config(directory: Path, api_server: str, dpu_tokens: Path | None) -> ControllerConfig:
    """Kubernetes mode against `api_server`, DPU tokens from `dpu_tokens`."""
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "k", "cluster": {"server": api_server}}],
                "users": [{"name": "u", "user": {"token": "controller-token-0123"}}],
                "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
                "current-context": "k",
            }
        )
    )
    return ControllerConfig(
        nb_remotes=[f"unix:{directory / 'no-nb.sock'}"],
        mode="kubernetes",
        kubeconfig=kubeconfig,
        k8s_namespace="dpunet",
        k8s_admin_users=["ops"],
        dpu_token_file=dpu_tokens,
        nb_timeout=1,
    )


async def with_host1(
    cfg: ControllerConfig, body: Callable[[Controller, httpx.AsyncClient], Awaitable[None]]
) -> None:
    """Run `body` against the controller of `cfg` with host1 (served by dpu1) registered."""
    ctl = Controller(cfg)
    await ctl.state.gate.open()
    register_node(ctl, "host1", NodeRole.DPU_HOST, "dpu1", 11)
    transport = httpx.ASGITransport(app=create_app(ctl))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ctl") as http:
            await body(ctl, http)
    finally:
        await ctl.close()
        assert ctl.kube is not None
        await ctl.kube.client.close()


@pytest.mark.asyncio
async def test_a_dpu_token_renews_its_lease_without_the_api_server(
    server: ReviewServer, tmp_path: Path
) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient) -> None:
        answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer(DPU1_TOKEN))
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "held"
        node = (await http.get("/v1/nodes/host1", headers=bearer(ADMIN_TOKEN))).json()
        assert node["dpu_lease"]["state"] == "held"  # the admin through TokenReview
        reviewed = [r.data["spec"]["token"] for r in server if r.url.path == REVIEWS]
        assert reviewed == [ADMIN_TOKEN]  # the DPU's token never left the controller

    await with_host1(kube_config(tmp_path, str(server.url), dpu_token_file(tmp_path)), body)


@pytest.mark.asyncio
async def test_without_a_dpu_token_file_there_are_no_leases(
    server: ReviewServer, tmp_path: Path
) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient) -> None:
        answer = await http.put("/v1/nodes/host1/dpu-lease", headers=bearer(DPU1_TOKEN))
        assert answer.status_code == 401  # TokenReview does not know it
        node = (await http.get("/v1/nodes/host1", headers=bearer(ADMIN_TOKEN))).json()
        assert node["dpu_lease"] is None

    await with_host1(kube_config(tmp_path, str(server.url), None), body)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/nodes"), ("GET", "/v1/nodes/host1"), ("GET", "/v1/ports"),
     ("PUT", "/v1/nodes/host1"), ("GET", "/metrics")],
)  # fmt: skip
async def test_a_dpu_token_may_do_nothing_else(
    server: ReviewServer, tmp_path: Path, method: str, path: str
) -> None:
    async def body(ctl: Controller, http: httpx.AsyncClient) -> None:
        answer = await http.request(method, path, headers=bearer(DPU1_TOKEN), json={})
        assert answer.status_code == 403, answer.text
        assert answer.json()["detail"].startswith("dpu:dpu1 may"), answer.text

    await with_host1(kube_config(tmp_path, str(server.url), dpu_token_file(tmp_path)), body)


@pytest.mark.parametrize(
    ("text", "mode", "error"),
    [
        (DPU_TOKENS + NODE_LINE, 0o600, "line 3: only '<token> dpu:<chassis>' lines belong"),
        (f"{ADMIN_TOKEN} admin\n", 0o600, "line 1: only '<token> dpu:<chassis>' lines belong"),
        (DPU_TOKENS, 0o640, "is accessible by group or others"),
    ],
)
def test_a_dpu_token_file_with_other_subjects_or_open_to_others_is_refused(
    tmp_path: Path, text: str, mode: int, error: str
) -> None:
    path = dpu_token_file(tmp_path, text, mode)
    with pytest.raises(TokenFileError, match=error):
        Controller(kube_config(tmp_path, "http://127.0.0.1:9", path))


@pytest.mark.asyncio
async def test_a_node_line_added_later_fails_closed(server: ReviewServer, tmp_path: Path) -> None:
    path = dpu_token_file(tmp_path)

    async def body(ctl: Controller, http: httpx.AsyncClient) -> None:
        assert ctl.nodes.leases is not None
        renew = {"url": "/v1/nodes/host1/dpu-lease", "headers": bearer(DPU1_TOKEN)}
        assert (await http.put(**renew)).status_code == 200
        path.write_text(DPU_TOKENS + NODE_LINE)
        assert isinstance(ctl.authenticator, DpuTokensFirst)
        ctl.authenticator.store.recheck_s = 0
        assert (await http.put(**renew)).status_code == 401  # no DPU token valid meanwhile
        answer = await http.get("/v1/nodes/host1", headers=bearer("node-token-host1-0123456789"))
        assert answer.status_code == 401  # the node line is no token either
        path.write_text(DPU_TOKENS)
        assert (await http.put(**renew)).status_code == 200

    await with_host1(kube_config(tmp_path, str(server.url), path), body)


def test_dpu_token_file_is_for_kubernetes_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dpu_token_file is for mode: kubernetes"):
        ControllerConfig(dpu_token_file=tmp_path / "dpu-tokens")
