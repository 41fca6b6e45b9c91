"""Turning a StartSaga payload (a JSON-like Struct) into a saga type's input message.

Proto3 has no `required`, so the rule is spelled by the input message itself:
every field not declared `optional` must be present in the payload (a repeated
field non-empty), at every level of nesting. Unknown fields are refused. The
error names the field path so a caller can fix the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from orchestrator.errors import InvalidPayload

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
            f"payload does not fit {input_type.DESCRIPTOR.full_name}: {error}"
        ) from None
    descriptor: Descriptor = input_type.DESCRIPTOR  # type: ignore[assignment]
    missing = missing_required_fields(descriptor, payload)
    if missing:
        raise InvalidPayload(
            f"payload for {input_type.DESCRIPTOR.full_name} is missing required field(s): "
            + ", ".join(missing)
        )
    if check is not None:
        try:
            check(message)
        except ValueError as error:
            raise InvalidPayload(
                f"payload for {input_type.DESCRIPTOR.full_name}: {error}"
            ) from None
    return message


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
