"""A client of the CRI RuntimeService (runtime.v1) over gRPC, as kubelet calls it."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from dpunet.grpcglue import unary, unix_target
from dpunet.lab.cri import api_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["RuntimeService"]
API_VERSION = "v1"


class CriError(RuntimeError):
    """A CRI call failed; `code` is the gRPC status, `details` the runtime's message."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{method}: {details} ({code.name})")
        self.code = code
        self.details = details


class CriClient:
    """The pod-sandbox calls of a CRI runtime listening on a unix socket."""

    def __init__(self, socket: Path, timeout: float = 120.0) -> None:
        self.socket = socket
        self.timeout = timeout
        self._channel = grpc.insecure_channel(unix_target(str(socket)))

    def __enter__(self) -> CriClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return unary(self._channel, SERVICE, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise CriError(method, exc.code(), exc.details() or "") from None

    def version(self, timeout: float | None = None) -> pb.VersionResponse:
        """The runtime's name and versions."""
        response: pb.VersionResponse = self._call(
            "Version", pb.VersionRequest(version=API_VERSION), timeout
        )
        return response

    def run_pod_sandbox(self, config: pb.PodSandboxConfig) -> str:
        """Create and start a sandbox (the runtime runs CNI ADD); its id."""
        response: pb.RunPodSandboxResponse = self._call(
            "RunPodSandbox", pb.RunPodSandboxRequest(config=config)
        )
        return response.pod_sandbox_id

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Stop a sandbox (CNI DEL); idempotent."""
        self._call("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove a sandbox; idempotent."""
        self._call("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    def pod_sandbox_status(
        self, sandbox_id: str, verbose: bool = False
    ) -> pb.PodSandboxStatusResponse:
        """A sandbox's status; with `verbose`, the runtime's details in `info`."""
        response: pb.PodSandboxStatusResponse = self._call(
            "PodSandboxStatus",
            pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose),
        )
        return response

    def status(self, verbose: bool = False) -> pb.StatusResponse:
        """The runtime's conditions; with `verbose`, its details (loaded CNI config...) in
        `info`."""
        response: pb.StatusResponse = self._call("Status", pb.StatusRequest(verbose=verbose))
        return response

    def list_pod_sandbox(self, labels: dict[str, str] | None = None) -> list[pb.PodSandbox]:
        """Sandboxes, optionally those carrying all of `labels`."""
        request = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector=labels or {}))
        response: pb.ListPodSandboxResponse = self._call("ListPodSandbox", request)
        return list(response.items)
