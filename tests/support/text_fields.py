"""The string fields of the API's requests, from their descriptors, and setting one of
them: for tests that put text the stores cannot hold into each field in turn."""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from saga.v1 import orchestrator_pb2 as pb


def string_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[tuple[str, ...]]:
    """Every string field reachable in a request, as the field names leading to it;
    messages of other packages (Struct, Any, Timestamp) are left to their own tests."""
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            yield (field.name,)
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.file is pb.DESCRIPTOR
        ):
            for rest in string_paths(field.message_type):
                yield (field.name, *rest)


def with_text(message: Message, names: tuple[str, ...], text: str) -> str:
    """Set the field at `names` (the first item of each repeated field on the way) and
    return its path as the refusal should name it."""
    path: list[str] = []
    for name in names[:-1]:
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            message = getattr(message, name).add()
            path.append(f"{name}[0]")
        else:
            message = getattr(message, name)
            path.append(name)
    field = message.DESCRIPTOR.fields_by_name[names[-1]]
    if field.is_repeated:
        getattr(message, names[-1]).append(text)
        path.append(f"{names[-1]}[0]")
    else:
        setattr(message, names[-1], text)
        path.append(names[-1])
    return ".".join(path)
