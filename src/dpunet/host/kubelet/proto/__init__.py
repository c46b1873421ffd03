"""kubelet gRPC APIs: the `.proto` files here, written for dpunet from the published field
names and numbers, and the `*_pb2.py`/`*_pb2.pyi` modules protoc generated from them.

Regenerate after editing a `.proto` (tests/unit/test_k8s_proto.py checks they agree)::

    cd src && python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        dpunet/host/kubelet/proto/deviceplugin.proto \\
        dpunet/host/kubelet/proto/pluginregistration.proto \\
        dpunet/host/kubelet/proto/podresources.proto
"""
