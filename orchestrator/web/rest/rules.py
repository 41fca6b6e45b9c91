"""The HTTP/JSON routes, read from the `google.api.http` rules in the services' descriptors.

Every RPC of the public `saga.v1` services declares its own HTTP method, path template
and body in its .proto file; this module turns those declarations into one table of
`Route`s, so no route is written by hand and a new RPC with a rule is served as soon as
its service is. Templates use the subset of the rule syntax our protos need: literal
segments, `{field}` or `{field.subfield}` variables each matching one segment, and a
`:verb` after the last segment (Google's custom methods, `POST /v1/sagas/{saga_id}:abort`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from google.api import annotations_pb2
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor

from saga.participants.common.v1 import callbacks_pb2
from saga.v1 import events_admin_pb2, ingest_pb2, orchestrator_pb2, tasks_pb2, webhooks_pb2

PREFIX = "/v1/"
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)(?:=\*)?\}")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")

PUBLIC_SERVICES: tuple[ServiceDescriptor, ...] = (
    orchestrator_pb2.DESCRIPTOR.services_by_name["SagaOrchestrator"],
    tasks_pb2.DESCRIPTOR.services_by_name["SagaTasks"],
    webhooks_pb2.DESCRIPTOR.services_by_name["SagaWebhooks"],
    events_admin_pb2.DESCRIPTOR.services_by_name["SagaEvents"],
    callbacks_pb2.DESCRIPTOR.services_by_name["SagaCallbacks"],
    ingest_pb2.DESCRIPTOR.services_by_name["SagaEventIngest"],
)
"""The services served over HTTP, in the order the OpenAPI document lists them."""


@dataclass(frozen=True, slots=True)
class Route:
    """One RPC's HTTP rule: where it is served and how its request is assembled."""

    method: MethodDescriptor
    http_method: str
    """Upper case: GET, POST, PATCH, DELETE."""
    template: str
    segments: tuple[str | None, ...]
    """Each path segment after the host: a literal, or None where a variable stands."""
    variables: tuple[tuple[int, str], ...]
    """(segment index, request field path) of each variable."""
    verb: str
    """The custom verb after the last segment's colon, "" without one."""
    body: str
    """"*" (the whole request is the body), a request field's name, or "" (no body)."""

    @property
    def grpc_method(self) -> str:
        """The RPC's full gRPC path, as the auth policy's rules name it."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)

    def bindings(self, segments: Sequence[str], verb: str) -> dict[str, str] | None:
        """The path variables' values if the (decoded) path matches, else None."""
        if verb != self.verb or len(segments) != len(self.segments):
            return None
        for literal, segment in zip(self.segments, segments, strict=True):
            if literal is not None and literal != segment:
                return None
        found = {field: segments[index] for index, field in self.variables}
        return None if any(not value for value in found.values()) else found


def split_path(raw_path: str) -> tuple[list[str], str]:
    """A request's raw path (still percent-encoded) as decoded segments and its verb:
    `/v1/sagas/a%2Fb:abort` is (["v1", "sagas", "a/b"], "abort")."""
    segments = raw_path.lstrip("/").split("/")
    last, colon, verb = segments[-1].rpartition(":")
    if colon:
        segments[-1] = last
    else:
        verb = ""
    return [unquote(segment) for segment in segments], unquote(verb)


def route_of(method: MethodDescriptor) -> Route | None:
    """The method's route from its `google.api.http` option; None without one."""
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    kind = rule.WhichOneof("pattern")
    if kind not in _HTTP_METHODS:
        return None
    template: str = getattr(rule, kind)
    head, _, last = template.rpartition("/")
    stem, colon, verb = last.rpartition(":")
    if not colon:
        stem, verb = last, ""
    path = f"{head}/{stem}"
    segments: list[str | None] = []
    variables: list[tuple[int, str]] = []
    for index, segment in enumerate(path.lstrip("/").split("/")):
        variable = _VARIABLE.fullmatch(segment)
        if variable is not None:
            field_path = variable.group(1)
            field_at(method.input_type, field_path)  # a typo in a rule fails at start-up
            variables.append((index, field_path))
            segments.append(None)
        elif "{" in segment or "*" in segment:
            raise ValueError(f"{method.full_name}: unsupported path segment {segment!r}")
        else:
            segments.append(segment)
    if rule.body not in ("", "*"):
        field_at(method.input_type, rule.body)
    return Route(method, kind.upper(), template, tuple(segments), tuple(variables), verb, rule.body)


def field_at(message: object, path: str) -> FieldDescriptor:
    """The field a dotted path names in a message descriptor (KeyError if none)."""
    descriptor = message
    field: FieldDescriptor | None = None
    for name in path.split("."):
        fields = getattr(descriptor, "fields_by_name", None)
        if fields is None or name not in fields:
            raise KeyError(f"no field {path!r} in {getattr(message, 'full_name', message)}")
        field = fields[name]
        descriptor = field.message_type
    assert field is not None
    return field


def routes(services: Iterable[ServiceDescriptor] = PUBLIC_SERVICES) -> tuple[Route, ...]:
    """Every route of the services, in declaration order."""
    found = []
    for service in services:
        for method in service.methods:
            route = route_of(method)
            if route is not None:
                found.append(route)
    return tuple(found)
