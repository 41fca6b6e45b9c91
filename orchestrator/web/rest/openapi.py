"""The OpenAPI 3.1 document of the HTTP/JSON API, generated from the services' descriptors.

Nothing here is written per RPC: every operation comes from an RPC's `google.api.http`
rule (`rules.routes()`), every schema from a message's descriptor in the protobuf JSON
mapping (lowerCamelCase names, 64-bit integers as strings, enums by name, Timestamps as
RFC 3339), every description from the protos' comments (`comments`).

`make openapi` (`python -m orchestrator.web.rest.openapi`) writes it to docs/openapi.json
and to the copy the server ships and serves at /v1/openapi.json (`DOCUMENT_COPIES`); a
test fails while either is stale. Generating needs protos/ and grpc_tools (development).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from orchestrator.web.rest.rules import PUBLIC_SERVICES, Route, routes

OPENAPI_PATH = "/v1/openapi.json"
ROOT = Path(__file__).resolve().parents[3]
DOCUMENT_COPIES = (ROOT / "docs" / "openapi.json", Path(__file__).with_name("openapi.json"))
"""Where `make openapi` writes the document: the docs, and the copy the server serves."""
STATUS = "google.rpc.Status"
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"},
    FieldDescriptor.TYPE_FIXED64: {
        "type": "string",
        "format": "uint64",
        "pattern": "^[0-9]{1,20}$",
    },
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]{1,12}(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
}
_QUERY_TYPES = (
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
)


class _Schemas:
    """The components' schemas, one per message and enum reached from an operation."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self.components: dict[str, dict[str, Any]] = {}
        self.comments = comments

    def described(self, schema: dict[str, Any], full_name: str) -> dict[str, Any]:
        """`schema` with the element's comment as its description, when it has one."""
        text = self.comments.get(full_name)
        return {**schema, "description": text} if text else schema

    def ref(self, name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, descriptor: Descriptor, skip: frozenset[str] = frozenset()) -> Any:
        """A message's schema: a reference, or inline when fields are left out (those
        the path carries)."""
        if descriptor.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[descriptor.full_name])
        if skip:
            return self._object(descriptor, skip)
        if descriptor.full_name not in self.components:
            self.components[descriptor.full_name] = {}  # a recursive field refers back
            self.components[descriptor.full_name] = self._object(descriptor, skip)
        return self.ref(descriptor.full_name)

    def _object(self, descriptor: Descriptor, skip: frozenset[str]) -> dict[str, Any]:
        properties = {
            field.json_name: self.described(self.field(field), field.full_name)
            for field in descriptor.fields
            if field.name not in skip
        }
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        return self.described(schema, descriptor.full_name)

    def enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        if descriptor.full_name not in self.components:
            schema = {"type": "string", "enum": [value.name for value in descriptor.values]}
            self.components[descriptor.full_name] = self.described(schema, descriptor.full_name)
        return self.ref(descriptor.full_name)

    def single(self, field: FieldDescriptor) -> Any:
        if field.message_type is not None:
            return self.message(field.message_type)
        if field.enum_type is not None:
            return self.enum(field.enum_type)
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> Any:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.single(value)}
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)


def parameter_name(field_path: str) -> str:
    """A path variable's name in the document: its last field (`{endpoint.endpoint_id}` is
    `{endpoint_id}`; OpenAPI tools read a dot in a name as a path into an object)."""
    return field_path.rsplit(".", 1)[-1]


def document_path(route: Route) -> str:
    """The route's path as the document writes it (see `parameter_name`)."""
    path = route.template
    for _, field_path in route.variables:
        path = path.replace(f"{{{field_path}}}", f"{{{parameter_name(field_path)}}}")
    return path


def _query_parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    """Each top-level field the path does not carry, for a call without a body."""
    bound = {path for _, path in route.variables}
    parameters = []
    for field in route.method.input_type.fields:
        if field.name in bound:
            continue
        if field.message_type is not None and (
            field.message_type.full_name not in _QUERY_TYPES or field.is_repeated
        ):
            continue
        parameter: dict[str, Any] = {
            "name": field.name,
            "in": "query",
            "required": False,
            "schema": schemas.field(field),
        }
        if field.full_name in schemas.comments:
            parameter["description"] = schemas.comments[field.full_name]
        if field.is_repeated:
            parameter["explode"] = True
        parameters.append(parameter)
    return parameters


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    method = route.method
    parameters: list[dict[str, Any]] = [
        {
            "name": parameter_name(path),
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
        for _, path in route.variables
    ]
    operation: dict[str, Any] = {
        "operationId": f"{method.containing_service.name}_{method.name}",
        "summary": f"{method.containing_service.name}.{method.name}",
        "tags": [method.containing_service.name],
    }
    if method.full_name in schemas.comments:
        operation["description"] = schemas.comments[method.full_name]
    if route.body:
        top = frozenset(path for _, path in route.variables if "." not in path)
        if route.body == "*":
            body = schemas.message(method.input_type, top)
        else:
            body = schemas.field(method.input_type.fields_by_name[route.body])
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    else:
        parameters += _query_parameters(route, schemas)
    if route.streaming:
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]{1,10}$"},
            }
        )
        ok = {
            "description": "Server-sent events: `transition` (data: "
            f"{method.output_type.name} as JSON, id: its seq), then `end`; "
            "`error` (data: google.rpc.Status) if refused once started.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    else:
        ok = {
            "description": f"{method.output_type.name}",
            "content": {"application/json": {"schema": schemas.message(method.output_type)}},
        }
    if parameters:
        operation["parameters"] = parameters
    operation["responses"] = {
        "200": ok,
        "default": {
            "description": "The call's google.rpc.Status, under the HTTP status of its code.",
            "content": {"application/json": {"schema": schemas.ref(STATUS)}},
        },
    }
    return operation


def openapi_document(comments: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole document (deterministic: same protos and comments, same bytes); without
    `comments`, the protos' own (see `comments.proto_comments`)."""
    from google.rpc import status_pb2

    if comments is None:
        comments = _proto_comments()
    schemas = _Schemas(comments)
    schemas.message(status_pb2.Status.DESCRIPTOR)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes():
        paths.setdefault(document_path(route), {})[route.http_method.lower()] = _operation(
            route, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "saga-orchestrator HTTP/JSON API",
            "version": "v1",
            "description": "Every saga.v1 RPC over HTTP/JSON (docs/http.md), generated from "
            "the protos' google.api.http rules. Bodies use the protobuf JSON mapping; a "
            "refusal is a google.rpc.Status under the HTTP status of its code.",
        },
        "tags": [
            {"name": service.name, "description": comments.get(service.full_name, "")}
            for service in PUBLIC_SERVICES
        ],
        "security": [{}, {"bearer": []}, {"mutualTLS": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "mutualTLS": {"type": "mutualTLS"},
            },
        },
    }


def _proto_comments() -> dict[str, str]:
    from google.rpc import status_pb2

    from orchestrator.web.rest.comments import proto_comments

    sources = {service.file.name for service in PUBLIC_SERVICES}
    return proto_comments(ROOT / "protos", sorted({*sources, status_pb2.DESCRIPTOR.name}))


def openapi_text(comments: Mapping[str, str] | None = None) -> str:
    return json.dumps(openapi_document(comments), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    text = openapi_text()
    for copy in DOCUMENT_COPIES:
        copy.write_text(text)
        print(f"wrote {copy.relative_to(ROOT)}")
