"""The committed protoc output of the lab's CRI subset matches `api.proto`."""

from __future__ import annotations

from pathlib import Path

import pytest

import dpunet.lab.cri as cri_package

protoc = pytest.importorskip("grpc_tools.protoc")

PROTO_DIR = Path(cri_package.__file__).parent
SRC = PROTO_DIR.parents[2]


def test_generated_module_is_current(tmp_path: Path) -> None:
    status = protoc.main(
        [
            "protoc",
            f"-I{SRC}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "dpunet/lab/cri/api.proto",
        ]
    )
    assert status == 0
    for suffix in ("_pb2.py", "_pb2.pyi"):
        fresh = (tmp_path / "dpunet/lab/cri" / f"api{suffix}").read_text()
        committed = (PROTO_DIR / f"api{suffix}").read_text()
        assert fresh == committed, f"regenerate api{suffix} (see dpunet/lab/cri)"
