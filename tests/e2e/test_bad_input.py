"""Bad input gets a clear status, nothing is stored, and the server keeps serving."""

from __future__ import annotations

import sqlite3

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from saga.v1 import orchestrator_pb2 as pb
from tests.support.payloads import struct, travel

pytestmark = pytest.mark.e2e

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def count_rows(database_url: str, table: str) -> int:
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    with psycopg.connect(database_url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def without(payload: dict, key: str) -> dict:
    return {k: v for k, v in payload.items() if k != key}


BAD_STARTS = [
    pytest.param("", "c-1", travel(), INVALID, "saga_type is required", id="empty-type"),
    pytest.param("no_such_saga", "c-1", travel(), INVALID, "unknown saga type", id="unknown-type"),
    pytest.param("travel_booking", "", travel(), INVALID, "correlation_id", id="empty-correlation"),
    pytest.param(
        "travel_booking", "bad\nid", travel(), INVALID, "correlation_id", id="control-char-id"
    ),
    pytest.param("travel_booking", "x" * 300, travel(), INVALID, "longer", id="overlong-id"),
    pytest.param(
        "travel_booking",
        "c-1",
        {**travel(), "colour": "red"},
        INVALID,
        "colour",
        id="unknown-field",
    ),
    pytest.param(
        "travel_booking", "c-1", without(travel(), "nights"), INVALID, "nights", id="missing-field"
    ),
    pytest.param(
        "travel_booking", "c-1", {**travel(), "nights": "two"}, INVALID, "nights", id="wrong-type"
    ),
    pytest.param(
        "travel_booking",
        "c-1",
        {**travel(), "amount": {"currency_code": "EUR"}},
        INVALID,
        "amount.amount_minor",
        id="missing-nested-field",
    ),
    pytest.param("travel_booking", "c-1", {}, INVALID, "missing required", id="empty-payload"),
    pytest.param(
        "travel_booking", "c-1", {**travel(), "nights": 0}, INVALID, "nights", id="zero-nights"
    ),
    pytest.param(
        "travel_booking",
        "c-1",
        {**travel(), "amount": {"currency_code": "euro", "amount_minor": 5}},
        INVALID,
        "currency_code",
        id="bad-currency",
    ),
]


@pytest.mark.parametrize(("saga_type", "correlation_id", "payload", "code", "words"), BAD_STARTS)
async def test_bad_start_is_refused_and_stores_nothing(
    stub, database_url, saga_type, correlation_id, payload, code, words
):
    before = {t: count_rows(database_url, t) for t in ("sagas", "saga_steps", "saga_transitions")}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartSaga(
            pb.StartSagaRequest(
                saga_type=saga_type, correlation_id=correlation_id, payload=struct(payload)
            ),
            timeout=5,
        )
    error = raised.value
    assert error.code() == code
    assert words in error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason
    assert {t: count_rows(database_url, t) for t in before} == before
    ok = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="c-ok", payload=struct(travel())
        ),
        timeout=5,
    )
    assert ok.created


@pytest.mark.parametrize(
    ("saga_id", "code"),
    [
        ("", INVALID),
        ("not-a-uuid", INVALID),
        ("'; DROP TABLE sagas; --", INVALID),
        ("6f1c0b7e-3f4a-4c5e-9d2b-8a7f6e5d4c3b", grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_bad_or_unknown_saga_id(stub, orchestrator, saga_id, code):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetSaga(pb.GetSagaRequest(saga_id=saga_id), timeout=5)
    assert raised.value.code() == code
    assert raised.value.details()
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="saga.v1.SagaOrchestrator"), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
