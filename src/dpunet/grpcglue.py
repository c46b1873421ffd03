"""gRPC glue built from the services in the `.proto` descriptors (no generated stubs), shared
by the kubelet APIs (host/kubelet) and the lab's CRI client (lab/cri).

`service_handler` turns an object with one (async) method per RPC into a handler for a
`grpc.aio` server; `unary` / `unary_stream` make client callables on a channel. Method
paths are `/<package>.<Service>/<Method>`, exactly as kubelet calls them.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


def unix_target(path: str) -> str:
    """The gRPC target of a unix socket path."""
    return f"unix:{path}"


def service_handler(service: ServiceDescriptor, impl: object) -> grpc.GenericRpcHandler:
    """A handler serving every method of `service` with `impl.<MethodName>`."""
    handlers = {}
    for method in service.methods:
        make = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(impl, method.name),
            request_deserializer=GetMessageClass(method.input_type).FromString,
            response_serializer=_serialize,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _method(service: ServiceDescriptor, name: str) -> tuple[str, MethodDescriptor]:
    method = service.methods_by_name[name]
    return f"/{service.full_name}/{name}", method


def unary(channel: Any, service: ServiceDescriptor, name: str) -> Any:
    """A client callable for the unary RPC `name` of `service` (sync or aio channel)."""
    path, method = _method(service, name)
    return channel.unary_unary(
        path,
        request_serializer=_serialize,
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )


def unary_stream(channel: Any, service: ServiceDescriptor, name: str) -> Any:
    """A client callable for the server-streaming RPC `name` of `service`."""
    path, method = _method(service, name)
    return channel.unary_stream(
        path,
        request_serializer=_serialize,
        response_deserializer=GetMessageClass(method.output_type).FromString,
    )
