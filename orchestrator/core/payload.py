"""Turning a StartSaga input (a JSON-like Struct, or the message packed in an Any) into
a saga type's input message.

Proto3 has no `required`, so the rule is spelled by the input message itself:
every field not declared `optional` must be present in the payload (a repeated
field non-empty), at every level of nesting. Unknown fields are refused. The
error names the field path so a caller can fix the request, with the proto field
names (snake_case) the caller wrote in the .proto. A packed input is the message
itself; a field at its zero value counts as absent there, as proto3 cannot tell them
apart.

Every string a client sends passes `check_message_text` before anything is queued: the
stores cannot hold U+0000 (PostgreSQL's text and jsonb refuse it, and the refusal
would fail a whole group commit) nor a surrogate code point, which has no UTF-8 form.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf import any_pb2, json_format, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from orchestrator.core.errors import InvalidArgument, InvalidPayload

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
    path: str = "input",
) -> Message:
    """The packed input as an `input_type` message; InvalidPayload when its type URL names
    another message, when it does not decode, or when a required field is unset, and
    InvalidArgument when a string in it cannot be stored (named from `path` on)."""
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
    check_message_text(message, path)
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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unstorable_text(text: str) -> str | None:
    """Why the stores cannot hold `text` ("contains U+0000"), or None if they can.

    PostgreSQL refuses U+0000 in text and jsonb alike (SQLite would keep it, and the two
    back ends must agree). A surrogate code point (U+D800 to U+DFFF) is no character
    and has no UTF-8 form: protobuf refuses to encode one and refuses the bytes of one
    in a string it receives, so only an in-process caller (the console, from a JSON
    body's `"\\ud800"`) can present it.
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains U+0000"
    return f"contains U+{ord(found.group()):04X}, a surrogate code point and no character"


def check_text(path: str, text: str) -> None:
    """InvalidArgument naming `path` if the stores cannot hold `text`. The message never
    repeats the text: it may be a payload's personal data."""
    problem = unstorable_text(text)
    if problem is not None:
        raise InvalidArgument(f"{path}: {problem}, which cannot be stored")


def check_message_text(message: Message, path: str = "") -> None:
    """Every string in `message`, at any depth, is one the stores can hold; InvalidArgument
    names the first that is not by its path (`payload.passenger.name`, `input.tags["k"]`).

    Driven by the message itself, so every string field of every request is covered,
    including fields added later: string fields, repeated strings, map keys and
    values, and a Struct's keys and string values (named as the JSON a caller wrote).
    Bytes are not text and are not looked into; a packed input (`Any`) is checked once
    unpacked, as `input.…` (`parse_typed_input`).
    """
    pending: deque[tuple[str, Any]] = deque([(path, message)])
    while pending:
        where, item = pending.popleft()
        if isinstance(item, str):
            check_text(where, item)
        elif isinstance(item, struct_pb2.Struct):
            for key, value in item.fields.items():
                pending.append((_keyed(where, key), value))
        elif isinstance(item, struct_pb2.Value):
            kind = item.WhichOneof("kind")
            if kind in ("string_value", "struct_value", "list_value"):
                pending.append((where, getattr(item, kind)))
        elif isinstance(item, struct_pb2.ListValue):
            pending.extend((f"{where}[{index}]", value) for index, value in enumerate(item.values))
        elif isinstance(item, Message):
            for field, value in item.ListFields():
                name = f"{where}.{field.name}" if where else field.name
                if field.message_type is not None and field.message_type.GetOptions().map_entry:
                    pending.extend((_keyed(name, key), value[key]) for key in value)
                elif field.is_repeated:
                    pending.extend((f"{name}[{index}]", each) for index, each in enumerate(value))
                else:
                    pending.append((name, value))


def _keyed(path: str, key: object) -> str:
    """The path of a map's or a Struct's entry; its key checked, as the stores keep it."""
    if not isinstance(key, str):
        return f"{path}[{key}]"
    problem = unstorable_text(key)
    if problem is not None:
        raise InvalidArgument(
            f"{path or 'the request'}: the key {json.dumps(key)} {problem}, which cannot be stored"
        )
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"
