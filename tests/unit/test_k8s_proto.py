"""The committed protoc output matches the `.proto` files it was generated from."""

from __future__ import annotations

from pathlib import Path

import pytest

import dpunet.host.kubelet.proto as proto_package

protoc = pytest.importorskip("grpc_tools.protoc")

PROTO_DIR = Path(proto_package.__file__).parent
SRC = PROTO_DIR.parents[3]


@pytest.mark.parametrize("name", ["deviceplugin", "pluginregistration", "podresources"])
def test_generated_modules_are_current(name: str, tmp_path: Path) -> None:
    source = f"dpunet/host/kubelet/proto/{name}.proto"
    status = protoc.main(
        ["protoc", f"-I{SRC}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", source]
    )
    assert status == 0
    for suffix in ("_pb2.py", "_pb2.pyi"):
        fresh = (tmp_path / "dpunet/host/kubelet/proto" / f"{name}{suffix}").read_text()
        committed = (PROTO_DIR / f"{name}{suffix}").read_text()
        assert fresh == committed, f"regenerate {name}{suffix} (see dpunet/host/kubelet/proto)"
