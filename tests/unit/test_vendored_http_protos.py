"""The vendored google/api/*.proto declare what the runtime's google.api modules declare,
and every RPC of the saga.v1 services carries its HTTP rule.

`protos/google/api/` is there so that clients generated from protos/ alone compile; the
orchestrator itself reads the rules through googleapis-common-protos' annotations_pb2, so
the two must agree (as tests/unit/test_generated_code.py checks for google/rpc).
"""

from __future__ import annotations

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from saga.v1 import events_admin_pb2, orchestrator_pb2, tasks_pb2, webhooks_pb2
from tests.unit.test_generated_code import compile_protos

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "runtime"),
    [("google/api/http.proto", http_pb2), ("google/api/annotations.proto", annotations_pb2)],
)
def test_the_vendored_http_protos_declare_what_the_runtime_uses(tmp_path, name, runtime):
    compile_protos([name], f"--descriptor_set_out={tmp_path / 'a.binpb'}")
    (vendored,) = descriptor_pb2.FileDescriptorSet.FromString(
        (tmp_path / "a.binpb").read_bytes()
    ).file
    expected = descriptor_pb2.FileDescriptorProto()
    runtime.DESCRIPTOR.CopyToProto(expected)
    # protoc adds the JSON names the runtime derives
    for field in [*vendored.extension, *(f for m in vendored.message_type for f in m.field)]:
        field.ClearField("json_name")
    assert vendored.package == expected.package == "google.api"
    assert list(vendored.dependency) == list(expected.dependency)
    assert vendored.message_type == expected.message_type
    assert vendored.extension == expected.extension


@pytest.mark.parametrize(
    "file",
    [
        orchestrator_pb2.DESCRIPTOR,
        tasks_pb2.DESCRIPTOR,
        webhooks_pb2.DESCRIPTOR,
        events_admin_pb2.DESCRIPTOR,
    ],
    ids=lambda f: f.name,
)
def test_every_rpc_of_the_public_services_has_an_http_rule(file: FileDescriptor):
    for service in file.services_by_name.values():
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            assert rule.WhichOneof("pattern"), f"{service.name}.{method.name} has no HTTP rule"
            path = getattr(rule, rule.WhichOneof("pattern"))
            assert path.startswith("/v1/"), f"{method.name}: {path} is outside /v1/"
