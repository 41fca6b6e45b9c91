"""Turning a StartSaga input (a JSON-like Struct, or the message packed in an Any) into
a saga type's input message.

Proto3 has no `required`, so the rule is spelled by the input message itself:
every field not declared `optional` must be present in the payload (a repeated
field non-empty), at every level of nesting. Unknown fields are refused. The
error names the field path so a caller can fix the request, with the proto field
names (snake_case) the caller wrote in the .proto. A packed input is the message
itself; a field at its zero value counts as absent there, as proto3 cannot tell them
apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from orchestrator.core.errors import InvalidPayload

_MAX_DEPTH = 32


def parse_input(
    input_type: type[Message],
    payload: dict[str, Any],
    check: Callable[[Message], None] | None = None,
) -> Message:
    """The payload as an `input_type` message; InvalidPayload names what is wrong.

    `check` is the saga type's own rule on values (a positive amount, say); its
    ValueError becomes InvalidPayload.
    """
    try:
        message = json_format.ParseDict(payload, input_type(), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise InvalidPayload(
            f"payload does not fit {input_type.DESCRIPTOR.full_name}: "
            + _proto_field_names(str(error), input_type.DESCRIPTOR)  # type: ignore[arg-type]
        ) from None
    return _checked(input_type, message, payload, "payload", check)


def parse_typed_input(
    input_type: type[Message],
    packed: any_pb2.Any,
    check: Callable[[Message], None] | None = None,
) -> Message:
    """The packed input as an `input_type` message; InvalidPayload when its type URL names
    another message, when it does not decode, or when a required field is unset."""
    expected = input_type.DESCRIPTOR.full_name
    if packed.TypeName() != expected:
        raise InvalidPayload(
            f"input is packed as {packed.TypeName() or '(no type URL)'!r}, but this saga "
            f"type takes {expected} (type URL type.googleapis.com/{expected})"
        )
    message = input_type()
    try:
        message.ParseFromString(packed.value)
    except Exception as error:
        raise InvalidPayload(f"input does not decode as {expected}: {error}") from None
    present = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return _checked(input_type, message, present, "input", check)


def _checked(
    input_type: type[Message],
    message: Message,
    given: dict[str, Any],
    what: str,
    check: Callable[[Message], None] | None,
) -> Message:
    descriptor: Descriptor = input_type.DESCRIPTOR  # type: ignore[assignment]
    missing = missing_required_fields(descriptor, given)
    if missing:
        raise InvalidPayload(
            f"{what} for {descriptor.full_name} is missing required field(s): " + ", ".join(missing)
        )
    if check is not None:
        try:
            check(message)
        except ValueError as error:
            raise InvalidPayload(f"{what} for {descriptor.full_name}: {error}") from None
    return message


_QUOTED_NAME = re.compile(r"'(\w+)'")


def _proto_field_names(text: str, descriptor: Descriptor) -> str:
    """json_format's error lists the available fields by JSON (lowerCamel) name; name them
    as the .proto does."""
    names = _json_to_proto_names(descriptor)
    head, marker, tail = text.partition("Available Fields")
    if not marker:
        return text
    return head + marker + _QUOTED_NAME.sub(lambda m: f"'{names.get(m[1], m[1])}'", tail)


def _json_to_proto_names(descriptor: Descriptor) -> dict[str, str]:
    """JSON name to proto name for the fields of the message and every message it nests."""
    names: dict[str, str] = {}
    pending, seen = [descriptor], {descriptor.full_name}
    while pending:
        for field in pending.pop().fields:
            names.setdefault(field.json_name, field.name)
            nested = field.message_type
            if nested is not None and nested.full_name not in seen:
                seen.add(nested.full_name)
                pending.append(nested)
    return names


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, list | dict | str) and len(value) == 0)


def _payload_value(payload: dict[str, Any], field: FieldDescriptor) -> Any:
    # json_format accepts both the proto name and the lowerCamel JSON name.
    if field.name in payload:
        return payload[field.name]
    return payload.get(field.json_name)


def missing_required_fields(
    descriptor: Descriptor, payload: dict[str, Any], prefix: str = "", depth: int = 0
) -> list[str]:
    """Paths of required fields absent from the payload (after ParseDict accepted it)."""
    if depth > _MAX_DEPTH:
        return []
    missing: list[str] = []
    for field in descriptor.fields:
        path = f"{prefix}{field.name}"
        value = _payload_value(payload, field)
        if not _present(value):
            # `optional` fields sit in a synthetic oneof; members of real oneofs
            # are alternatives. Everything else is required.
            if field.containing_oneof is None:
                missing.append(path)
            continue
        message_type = field.message_type
        if message_type is not None and not message_type.GetOptions().map_entry:
            if message_type.full_name.startswith("google.protobuf."):
                continue
            items = value if isinstance(value, list) else [value]
            for position, item in enumerate(items):
                if isinstance(item, dict):
                    where = f"{path}[{position}]." if isinstance(value, list) else f"{path}."
                    missing.extend(missing_required_fields(message_type, item, where, depth + 1))
    return missing
