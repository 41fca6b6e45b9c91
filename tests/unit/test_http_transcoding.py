"""The HTTP routes read from the protos, and requests transcoded from paths, queries and
bodies, without a server."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2

from orchestrator.web.rest.rules import Route, routes, split_path
from orchestrator.web.rest.transcoding import HTTP_STATUS, Refusal, build_request
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import webhooks_pb2

pytestmark = pytest.mark.unit


def deep(levels: int) -> dict:
    """A JSON object nested `levels` deep."""
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


def route(name: str) -> Route:
    return next(r for r in routes() if r.method.name == name)


def matching(method: str, raw_path: str) -> list[tuple[str, dict[str, str]]]:
    segments, verb = split_path(raw_path)
    found = []
    for candidate in routes():
        bindings = candidate.bindings(segments, verb)
        if bindings is not None and candidate.http_method == method:
            found.append((candidate.method.name, bindings))
    return found


@pytest.mark.parametrize(
    ("method", "path", "rpc", "bindings"),
    [
        ("POST", "/v1/sagas", "StartSaga", {}),
        ("GET", "/v1/sagas", "ListSagas", {}),
        ("GET", "/v1/sagas/s-1", "GetSaga", {"saga_id": "s-1"}),
        ("POST", "/v1/sagas/s-1:abort", "AbortSaga", {"saga_id": "s-1"}),
        ("POST", "/v1/sagas:abort", "AbortSagas", {}),
        ("GET", "/v1/sagas/s-1:watch", "WatchSaga", {"saga_id": "s-1"}),
        ("POST", "/v1/sagas/s-1/steps/pay:resolve", "ResolveStep",
         {"saga_id": "s-1", "step": "pay"}),
        ("POST", "/v1/sagas/s%2F1/tasks/ok:complete", "CompleteTask",
         {"saga_id": "s/1", "step": "ok"}),
        ("PATCH", "/v1/webhookEndpoints/e-1", "UpdateWebhookEndpoint",
         {"endpoint.endpoint_id": "e-1"}),
    ],
)  # fmt: skip
def test_each_path_finds_exactly_its_rpc(method, path, rpc, bindings):
    assert matching(method, path) == [(rpc, bindings)]


@pytest.mark.parametrize("path", ["/v1/sagas/", "/v1/sagas/s-1:nope", "/v1/sagas/a/b", "/v2/sagas"])
def test_a_path_outside_the_rules_finds_nothing(path):
    assert matching("GET", path) == [] and matching("POST", path) == []


def test_query_parameters_fill_scalars_enums_optionals_and_times_by_either_name():
    request = build_request(
        route("ListSagas"),
        {},
        [
            ("status", "SAGA_STATUS_FAILED"),
            ("sagaType", "trip"),
            ("page_size", "5"),
            ("needs_intervention", "false"),
            ("create_time_after", "2026-01-02T03:04:05Z"),
        ],
        None,
    )
    assert request == pb.ListSagasRequest(
        status=pb.SAGA_STATUS_FAILED,
        saga_type="trip",
        page_size=5,
        needs_intervention=False,
        create_time_after={"seconds": 1767323045},
    )
    assert request.HasField("needs_intervention")


def test_the_path_wins_over_the_body_and_a_nested_variable_lands_in_its_message():
    request = build_request(
        route("UpdateWebhookEndpoint"),
        {"endpoint.endpoint_id": "e-1"},
        [],
        {"endpoint": {"endpointId": "other", "url": "https://x.example"}, "updateMask": "url"},
    )
    assert request == webhooks_pb2.UpdateWebhookEndpointRequest(
        endpoint=webhooks_pb2.WebhookEndpoint(endpoint_id="e-1", url="https://x.example"),
        update_mask=field_mask_pb2.FieldMask(paths=["url"]),
    )


def test_a_body_field_rule_takes_the_body_as_that_field():
    request = build_request(route("CreateWebhookEndpoint"), {}, [], {"url": "https://x.example"})
    assert request.endpoint.url == "https://x.example"


@pytest.mark.parametrize(
    ("name", "query", "body", "words"),
    [
        ("ListSagas", [("nope", "1")], None, "unknown query parameter 'nope'"),
        ("ListSagas", [("page_size", "x")], None, "ListSagasRequest"),
        ("ListSagas", [("page_size", "1"), ("page_size", "2")], None, "given 2 times"),
        ("ListSagas", [("needs_intervention", "yes")], None, "true or false"),
        ("ListSagas", [("status", "SAGA_STATUS_NOPE")], None, "ListSagasRequest"),
        ("StartSaga", [], ["not", "an", "object"], "must be a JSON object"),
        ("StartSaga", [], {"sagaType": 5}, "StartSagaRequest"),
        ("StartSaga", [], {"unknownField": 1}, "StartSagaRequest"),
        ("StartSaga", [("saga_type", "x")], {}, "takes its fields in the body"),
        ("AbortSaga", [], {"reason": "\ud800"}, "AbortSagaRequest"),
        ("ExecuteSaga", [], {"start": {"input": {"@type": None}}}, "ExecuteSagaRequest"),
        ("StartSaga", [], {"input": {"@type": "type.googleapis.com/no.Such"}}, "StartSaga"),
        ("StartSaga", [], {"payload": deep(5000)}, "StartSagaRequest"),
    ],
)
def test_a_malformed_request_is_invalid_argument_naming_what_is_wrong(name, query, body, words):
    with pytest.raises(Refusal) as refused:
        build_request(route(name), {"saga_id": "s"} if "Abort" in name else {}, query, body)
    assert refused.value.status.code == 3 and refused.value.http_status == 400
    assert words in refused.value.status.message


def test_every_grpc_code_has_the_http_status_google_rpc_code_gives_it():
    assert HTTP_STATUS == {
        1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
        9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401,
    }  # fmt: skip
