"""The committed stubs in saga/ are exactly what protoc makes of protos/ today.

saga/ also holds a copy of every .proto next to its stubs, so the wheel ships them
and a user's own protos can import `saga/participants/common/v1/command.proto`
from the installed package; protos/ stays the source of those copies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.rpc import status_pb2
from grpc_tools import protoc

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
COPY_PROTOS = "cd protos && find saga -name '*.proto' -exec install -D -m 644 {} ../{} \\;"


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for pattern in ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
        for path in (root / "saga").rglob(pattern)
    }


def test_committed_stubs_match_the_protos(tmp_path):
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    googleapis = str(Path(status_pb2.__file__).parents[2])  # google/rpc/status.proto
    status = protoc.main(
        [
            "protoc",
            f"-I{PROTOS}",
            f"-I{include}",
            f"-I{googleapis}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *sources,
        ]
    )
    assert status == 0, "protoc failed"
    fresh = generated_files(tmp_path)
    committed = generated_files(ROOT)
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit saga/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code, run `make protos`: {stale}"


def proto_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.proto")}


def test_the_protos_shipped_in_saga_are_copies_of_protos():
    sources = proto_files(PROTOS / "saga")
    shipped = proto_files(ROOT / "saga")
    assert sorted(shipped) == sorted(sources), f"copy the protos into saga/: {COPY_PROTOS}"
    stale = [name for name in sources if sources[name] != shipped[name]]
    assert not stale, f"stale protos in saga/, copy them again ({COPY_PROTOS}): {stale}"
