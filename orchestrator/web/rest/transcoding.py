"""HTTP requests into request messages, and answers and refusals into JSON.

Bodies, path variables and query parameters follow the protobuf JSON mapping
(`google.protobuf.json_format`) as Google's HTTP transcoding defines it: the body (all of
the request for `body: "*"`, one field otherwise), then each query parameter naming a
field (`status=SAGA_STATUS_FAILED`, `filter.saga_type=x`, a repeated field given several
times), then the path's variables. Field names are accepted as in the .proto
(`saga_id`) or in their JSON form (`sagaId`); answers use the JSON form, with every field
that has no presence spelled out (an empty list is `[]`).

A refusal is a `google.rpc.Status` as JSON (code, message, details with ErrorInfo and
RetryInfo), under the HTTP status Google's `google.rpc.Code` names for its code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from orchestrator.web.rest.rules import Route

STATUS_DETAILS_KEY = "grpc-status-details-bin"

HTTP_STATUS: dict[int, int] = {
    grpc.StatusCode.CANCELLED.value[0]: 499,
    grpc.StatusCode.UNKNOWN.value[0]: 500,
    grpc.StatusCode.INVALID_ARGUMENT.value[0]: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED.value[0]: 504,
    grpc.StatusCode.NOT_FOUND.value[0]: 404,
    grpc.StatusCode.ALREADY_EXISTS.value[0]: 409,
    grpc.StatusCode.PERMISSION_DENIED.value[0]: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]: 429,
    grpc.StatusCode.FAILED_PRECONDITION.value[0]: 400,
    grpc.StatusCode.ABORTED.value[0]: 409,
    grpc.StatusCode.OUT_OF_RANGE.value[0]: 400,
    grpc.StatusCode.UNIMPLEMENTED.value[0]: 501,
    grpc.StatusCode.INTERNAL.value[0]: 500,
    grpc.StatusCode.UNAVAILABLE.value[0]: 503,
    grpc.StatusCode.DATA_LOSS.value[0]: 500,
    grpc.StatusCode.UNAUTHENTICATED.value[0]: 401,
}
"""Each gRPC code's HTTP status, as google/rpc/code.proto gives it."""


class Refusal(Exception):
    """A call ended with a status other than OK: the whole google.rpc.Status."""

    def __init__(self, status: status_pb2.Status, http_status: int | None = None) -> None:
        super().__init__(status.message)
        self.status = status
        self._http_status = http_status

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str) -> Refusal:
        return cls(status_pb2.Status(code=code.value[0], message=message))

    @classmethod
    def of_grpc_status(cls, status: grpc.Status) -> Refusal:
        """The status a servicer aborted with, its details (ErrorInfo, RetryInfo) kept."""
        for key, value in status.trailing_metadata or ():
            if key == STATUS_DETAILS_KEY:
                return cls(status_pb2.Status.FromString(value))
        return cls.of(status.code, status.details or "")

    @property
    def http_status(self) -> int:
        """The HTTP status of the code (or the one given: 405 for a wrong method)."""
        return self._http_status or HTTP_STATUS.get(self.status.code, 500)

    def retry_after(self) -> int | None:
        """Whole seconds from the RetryInfo, for a `Retry-After` header (None without)."""
        for detail in self.status.details:
            retry = error_details_pb2.RetryInfo()
            if detail.Unpack(retry):
                nanoseconds: int = retry.retry_delay.ToNanoseconds()
                return max(1, math.ceil(nanoseconds / 1e9))
        return None

    def body(self) -> dict[str, Any]:
        return json_format.MessageToDict(self.status)


def invalid(message: str) -> Refusal:
    return Refusal.of(grpc.StatusCode.INVALID_ARGUMENT, message)


def message_json(message: Message) -> dict[str, Any]:
    """An answer in the protobuf JSON mapping, every field without presence spelled out."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _field_named(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    field = descriptor.fields_by_name.get(name)
    if field is not None:
        return field
    return next((f for f in descriptor.fields if f.json_name == name), None)


def _query_value(field: FieldDescriptor, text: str, name: str) -> Any:
    """A query parameter's text as the JSON value the field takes."""
    if field.type == FieldDescriptor.TYPE_BOOL:
        if text not in ("true", "false"):
            raise invalid(f"query parameter {name}: true or false, got {text!r}")
        return text == "true"
    if field.message_type is not None and field.message_type.full_name not in (
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
    ):
        raise invalid(f"query parameter {name} names a message; name one of its fields")
    return text


def _place(fields: dict[str, Any], descriptor: Descriptor, path: str, value: Any) -> None:
    """Put `value` at a dotted field path of the JSON object `fields` (under the .proto
    names, replacing whatever the body gave the same field under either name)."""
    *parents, last = path.split(".")
    target = fields
    for name in parents:
        field = _field_named(descriptor, name)
        if field is None or field.message_type is None or field.is_repeated:
            raise invalid(f"{path!r} names no field of {descriptor.name}")
        descriptor = field.message_type
        inner = target.pop(field.json_name, None) or target.get(field.name) or {}
        if not isinstance(inner, dict):
            raise invalid(f"{field.name} must be an object")
        target[field.name] = target = inner
    field = _field_named(descriptor, last)
    if field is None:
        raise invalid(f"{path!r} names no field of {descriptor.name}")
    target.pop(field.json_name, None)
    target[field.name] = value


def build_request(
    route: Route,
    bindings: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: Any,
) -> Message:
    """The route's request message from the decoded JSON body (None without one), the
    query parameters and the path's variables; INVALID_ARGUMENT `Refusal` otherwise."""
    descriptor = route.method.input_type
    fields: dict[str, Any] = {}
    if route.body == "*":
        if body is not None and not isinstance(body, dict):
            raise invalid("the body must be a JSON object")
        fields = dict(body or {})
    elif route.body and body is not None:
        fields[route.body] = body
    repeated: dict[str, list[str]] = {}
    for name, text in query:
        repeated.setdefault(name, []).append(text)
    for name, texts in repeated.items():
        if route.body == "*":
            raise invalid(f"query parameter {name}: this call takes its fields in the body")
        field = _leaf(descriptor, name)
        if not field.is_repeated and len(texts) > 1:
            raise invalid(f"query parameter {name} given {len(texts)} times")
        values = [_query_value(field, text, name) for text in texts]
        _place(fields, descriptor, name, values if field.is_repeated else values[0])
    for path, value in bindings.items():
        _place(fields, descriptor, path, value)
    request = message_factory.GetMessageClass(descriptor)()
    try:
        json_format.ParseDict(fields, request)
    except Exception as error:
        # Only the client's JSON goes in, and json_format fails on some of it with more
        # than ParseError (an Any whose "@type" is null: AttributeError; deep nesting:
        # RecursionError): each is the request's fault, never the server's.
        reason = str(error) if isinstance(error, json_format.ParseError) else repr(error)
        raise invalid(f"{descriptor.name} does not take this JSON: {short(reason)}") from None
    return request


def _leaf(message: Descriptor, path: str) -> FieldDescriptor:
    field: FieldDescriptor | None = None
    descriptor: Descriptor | None = message
    for name in path.split("."):
        if descriptor is None:
            field = None
            break
        field = _field_named(descriptor, name)
        if field is None:
            break
        descriptor = field.message_type
    if field is None:
        raise invalid(f"unknown query parameter {short(path)!r}")
    return field


def short(text: str, limit: int = 300) -> str:
    """`text`, cut at `limit` characters (a message quotes the client's input)."""
    return text if len(text) <= limit else text[:limit] + "..."
