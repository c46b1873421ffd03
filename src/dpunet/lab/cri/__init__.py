"""The lab's `cri` pod engine: containerd's CRI driven over gRPC, as kubelet drives it.

`api.proto` is the part of the CRI RuntimeService (runtime.v1) the lab uses, written for
dpunet from the published field names and numbers; `api_pb2.py`/`api_pb2.pyi` are protoc's
output. Regenerate after editing it (tests/unit/test_cri_proto.py checks they agree)::

    cd src && python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \\
        dpunet/lab/cri/api.proto
"""
