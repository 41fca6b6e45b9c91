"""docs/openapi.json and the copy the server serves are what the generator makes of the
protos now (`make openapi`), and the document describes every route the server serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.web.rest.openapi import (
    DOCUMENT_COPIES,
    document_path,
    openapi_document,
    openapi_text,
    parameter_name,
)
from orchestrator.web.rest.rules import routes

pytestmark = pytest.mark.unit

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.mark.parametrize("copy", DOCUMENT_COPIES, ids=lambda path: path.parent.name)
def test_each_committed_copy_is_current(copy: Path):
    assert copy.read_text() == openapi_text(), f"{copy} is stale: run make openapi"


def test_operations_and_fields_carry_the_protos_comments():
    document = openapi_document()
    start = document["paths"]["/v1/sagas"]["post"]
    assert start["description"].startswith("StartSaga validates the payload")
    saga = document["components"]["schemas"]["saga.v1.Saga"]
    assert saga["properties"]["sagaId"]["description"] == "The saga's id."


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
