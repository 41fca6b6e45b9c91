"""The protos' comments by element, for the OpenAPI document's descriptions.

Runtime descriptors carry no comments, so `make openapi` (and the test that keeps the
document current) compiles protos/ with `--include_source_info` through grpc_tools'
protoc, a development dependency imported here only. Each message, field, enum, enum
value, service and method gets its leading comment, keyed by its full name
(`saga.v1.Saga.saga_id`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2

_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
"""FileDescriptorProto's field numbers, as source locations' paths name them."""
_FIELD, _NESTED, _NESTED_ENUM, _VALUE, _METHOD = 2, 3, 4, 2, 2


def _named_paths(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    def message(
        proto: descriptor_pb2.DescriptorProto, path: tuple[int, ...], scope: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        name = f"{scope}.{proto.name}"
        yield path, name
        for index, field in enumerate(proto.field):
            yield (*path, _FIELD, index), f"{name}.{field.name}"
        for index, nested in enumerate(proto.nested_type):
            yield from message(nested, (*path, _NESTED, index), name)
        for index, enum_type in enumerate(proto.enum_type):
            yield from enum(enum_type, (*path, _NESTED_ENUM, index), name)

    def enum(
        proto: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], scope: str
    ) -> Iterator[tuple[tuple[int, ...], str]]:
        name = f"{scope}.{proto.name}"
        yield path, name
        for index, value in enumerate(proto.value):
            yield (*path, _VALUE, index), f"{name}.{value.name}"

    for index, message_type in enumerate(file.message_type):
        yield from message(message_type, (_MESSAGE, index), file.package)
    for index, enum_type in enumerate(file.enum_type):
        yield from enum(enum_type, (_ENUM, index), file.package)
    for index, service in enumerate(file.service):
        name = f"{file.package}.{service.name}"
        yield (_SERVICE, index), name
        for number, method in enumerate(service.method):
            yield (_SERVICE, index, _METHOD, number), f"{name}.{method.name}"


def comments_of(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, str]:
    """Each element's leading comment (one paragraph, lines joined) by full name."""
    found: dict[str, str] = {}
    for file in files:
        names = dict(_named_paths(file))
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = " ".join(location.leading_comments.split())
            if name is not None and text:
                found[name] = text
    return found


def proto_comments(protos: Path, sources: Iterable[str]) -> dict[str, str]:
    """Compile `sources` (relative to `protos`, the only include path besides protobuf's
    own) with their source info, and return their comments by full name."""
    from grpc_tools import protoc  # development dependency: make openapi, the tests

    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "protos.binpb"
        status = protoc.main(
            [
                "protoc",
                f"-I{protos}",
                f"-I{well_known}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *sources,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {', '.join(sources)}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return comments_of(files)
