"""protos/ compiles on its own, and the committed stubs in saga/ are what protoc makes of it.

protos/ holds every file it imports beyond protobuf's well-known types: ours under
saga/, third-party ones (googleapis' google/rpc/status.proto) under google/. Python is
generated from ours only; the runtime takes google.rpc.status_pb2 from
googleapis-common-protos, so the vendored copy must declare the same messages.

saga/ also holds a copy of every .proto of ours next to its stubs, so the wheel ships
them and a user's own protos can import `saga/participants/common/v1/command.proto`
from the installed package; protos/ stays the source of those copies.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.rpc import status_pb2
from grpc_tools import protoc

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
WELL_KNOWN_TYPES = Path(protoc.__file__).parent / "_proto"
"""protobuf's own google/protobuf/*.proto, which grpc_tools ships (as every protoc does)."""
COPY_PROTOS = "cd protos && find saga -name '*.proto' -exec install -D -m 644 {} ../{} \\;"
IMPORT = re.compile(r'^import\s+(?:public\s+|weak\s+)?"([^"]+)";', re.M)


def every_proto() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def our_protos() -> list[str]:
    return [name for name in every_proto() if name.startswith("saga/")]


def compile_protos(sources: list[str], *outputs: str) -> None:
    """protoc as `make protos` runs it: protos/ and the well-known types, nothing else."""
    status = protoc.main(["protoc", f"-I{PROTOS}", f"-I{WELL_KNOWN_TYPES}", *outputs, *sources])
    assert status == 0, "protoc failed on protos/ (see its message above)"


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for package in ("saga", "google")
        for pattern in ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
        for path in (root / package).rglob(pattern)
    }


def test_the_well_known_types_are_all_the_include_path_adds():
    # Were google/rpc among them, the next test would pass without protos/google/.
    assert not (WELL_KNOWN_TYPES / "google" / "rpc").exists()
    assert (WELL_KNOWN_TYPES / "google" / "protobuf" / "any.proto").exists()


def test_every_import_is_under_protos_or_a_well_known_type():
    missing = {
        f"{name} imports {target}"
        for name in every_proto()
        for target in IMPORT.findall((PROTOS / name).read_text())
        if not (PROTOS / target).exists() and not target.startswith("google/protobuf/")
    }
    assert not missing, f"protos/ is not self-contained: {sorted(missing)}"


def test_every_proto_compiles_with_protos_as_the_only_include_path(tmp_path):
    compile_protos(every_proto(), f"--descriptor_set_out={tmp_path / 'all.binpb'}")
    files = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "all.binpb").read_bytes())
    assert sorted(f.name for f in files.file) == every_proto()


def test_the_vendored_status_proto_declares_what_the_runtime_uses(tmp_path):
    compile_protos(["google/rpc/status.proto"], f"--descriptor_set_out={tmp_path / 's.binpb'}")
    (vendored,) = descriptor_pb2.FileDescriptorSet.FromString(
        (tmp_path / "s.binpb").read_bytes()
    ).file
    runtime = descriptor_pb2.FileDescriptorProto()
    status_pb2.DESCRIPTOR.CopyToProto(runtime)
    for message in vendored.message_type:  # protoc adds the JSON names the runtime derives
        for field in message.field:
            field.ClearField("json_name")
    assert vendored.package == runtime.package == "google.rpc"
    assert list(vendored.dependency) == list(runtime.dependency)
    assert vendored.message_type == runtime.message_type


def test_committed_stubs_match_the_protos(tmp_path):
    compile_protos(
        our_protos(),
        f"--python_out={tmp_path}",
        f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
    )
    fresh = generated_files(tmp_path)
    committed = generated_files(ROOT)
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit saga/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code, run `make protos`: {stale}"


def test_no_stub_is_generated_for_the_vendored_protos():
    # google.rpc comes from googleapis-common-protos; a copy at the root would shadow it.
    assert not (ROOT / "google").exists()
    assert not Path(status_pb2.__file__).resolve().is_relative_to(ROOT / "saga")


def proto_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*.proto")}


def test_the_protos_shipped_in_saga_are_copies_of_protos():
    sources = proto_files(PROTOS / "saga")
    shipped = proto_files(ROOT / "saga")
    assert sorted(shipped) == sorted(sources), f"copy the protos into saga/: {COPY_PROTOS}"
    stale = [name for name in sources if sources[name] != shipped[name]]
    assert not stale, f"stale protos in saga/, copy them again ({COPY_PROTOS}): {stale}"
