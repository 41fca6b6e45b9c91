"""docs/openapi.json is what the generator makes of the protos now (`make openapi`), and
it describes every route the server serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.web.rest.openapi import (
    document_path,
    openapi_document,
    openapi_text,
    parameter_name,
)
from orchestrator.web.rest.rules import routes

pytestmark = pytest.mark.unit

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_document_is_current():
    assert DOCUMENT.read_text() == openapi_text(), "docs/openapi.json is stale: run make openapi"


def test_every_route_is_an_operation_with_a_status_for_errors():
    paths = openapi_document()["paths"]
    for route in routes():
        operation = paths[document_path(route)][route.http_method.lower()]
        assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/google.rpc.Status"
        }
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == {parameter_name(path) for _, path in route.variables}


def test_the_document_is_json_that_names_openapi_3_1():
    assert json.loads(DOCUMENT.read_text())["openapi"] == "3.1.0"
