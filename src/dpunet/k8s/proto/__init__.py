"""kubelet gRPC APIs: the `.proto` files here, written for dpunet from the published field
names and numbers, and the `*_pb2.py`/`*_pb2.pyi` modules protoc generated from them.

Regenerate after editing a `.proto` (tests/unit/test_k8s_proto.py checks they agree)::

    cd src && python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        dpunet/k8s/proto/deviceplugin.proto dpunet/k8s/proto/pluginregistration.proto \\
        dpunet/k8s/proto/podresources.proto
"""
