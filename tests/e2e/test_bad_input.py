"""Bad input gets a clear status, nothing is stored, and the server keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.support.payloads import struct, travel
from tests.support.text_fields import string_paths, with_text
from tools.processes import ChildProcess, orchestrator_process

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


@contextlib.contextmanager
def row_counter(database_url: str) -> Iterator[Callable[[str], int]]:
    """`count_rows` on one connection held open, for a fuzz loop that counts around every
    request (a connection per count costs more than the request)."""
    query = "SELECT count(*) FROM {}"
    if database_url.startswith("sqlite:///"):
        lite = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        with contextlib.closing(lite):
            yield lambda table: int(lite.execute(query.format(table)).fetchone()[0])
        return
    with psycopg.connect(database_url, autocommit=True) as connection:

        def count(table: str) -> int:
            row = connection.execute(query.format(table)).fetchone()  # type: ignore[arg-type]
            assert row is not None
            return int(row[0])

        yield count


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


NUL_TEXT = "fine until \x00 here"
SAGA_TABLES = ("sagas", "saga_steps", "saga_transitions")
SERVICE = pb.DESCRIPTOR.services_by_name["SagaOrchestrator"]


def _valid_requests(saga_id: str) -> dict[str, Message]:
    """A request each method would act on, so that a string left unchecked reaches the
    store; StartSagas starts empty (the field under test adds its one request)."""
    start = pb.StartSagaRequest(
        saga_type="travel_booking",
        correlation_id="c-nul",
        payload=struct(travel()),
        idempotency_key="k-nul",
    )
    operator = {"saga_id": saga_id, "reason": "checking", "requested_by": "ops"}
    operator_note = {"reason": "checking", "requested_by": "ops"}
    bulk = pb.BulkSagaFilter(saga_type="travel_booking")
    return {
        "StartSaga": start,
        "ExecuteSaga": pb.ExecuteSagaRequest(start=start),
        "GetSaga": pb.GetSagaRequest(saga_id=saga_id),
        "ListSagas": pb.ListSagasRequest(),
        "GetSagaHistory": pb.GetSagaHistoryRequest(saga_id=saga_id),
        "WatchSaga": pb.WatchSagaRequest(saga_id=saga_id),
        "AbortSaga": pb.AbortSagaRequest(**operator),
        "RetrySaga": pb.RetrySagaRequest(**operator),
        "ResolveStep": pb.ResolveStepRequest(step="charge_payment", **operator),
        "BreakLock": pb.BreakLockRequest(**operator),
        # A real bulk run over every saga of the type: a string left unchecked would reach
        # the store's match and each saga's log row.
        "RetrySagas": pb.RetrySagasRequest(filter=bulk, **operator_note),
        "ResolveSagas": pb.ResolveSagasRequest(filter=bulk, step="charge_payment", **operator_note),
        "AbortSagas": pb.AbortSagasRequest(filter=bulk, **operator_note),
    }


def _packed_trip(**changes: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(json_format.ParseDict({**travel(), **changes}, TravelBookingInput()))
    return packed


def poisoned_requests(saga_id: str) -> Iterator[tuple[str, Message, str]]:
    """(method, request, the path its refusal must name): U+0000 in every string field of
    every request in turn, then in a payload's value and key and a packed input."""
    valid = _valid_requests(saga_id)
    for method in SERVICE.methods:
        for names in string_paths(method.input_type):
            request = method_request(method.name, valid)
            yield method.name, request, with_text(request, names, NUL_TEXT)
    bad_value = struct({**travel(), "traveller_name": NUL_TEXT})
    bad_key = struct({**travel(), "note\x00": "x"})
    start = valid["StartSaga"]
    yield "StartSaga", _with(start, payload=bad_value), "payload.traveller_name"
    yield "StartSaga", _with(start, payload=bad_key), 'payload: the key "note\\u0000"'
    packed = _packed_trip(traveller_name=NUL_TEXT)
    yield "StartSaga", _with(start, input=packed), "input.traveller_name"
    execute = pb.ExecuteSagaRequest(start=_with(start, input=packed))
    yield "ExecuteSaga", execute, "start.input.traveller_name"
    batch = pb.StartSagasRequest(requests=[_with(start, payload=bad_value)])
    yield "StartSagas", batch, "requests[0].payload.traveller_name"


def method_request(name: str, valid: dict[str, Message]) -> Message:
    template = valid.get(name)
    if template is None:
        return pb.__dict__[SERVICE.methods_by_name[name].input_type.name]()
    copy = type(template)()
    copy.CopyFrom(template)
    return copy


def _with(start: pb.StartSagaRequest, **fields: Any) -> pb.StartSagaRequest:
    copy = pb.StartSagaRequest()
    copy.CopyFrom(start)
    for name, value in fields.items():
        getattr(copy, name).CopyFrom(value)
    return copy


async def refusal_of(stub: Any, method: str, request: Message) -> tuple[grpc.StatusCode, str]:
    """The code and message a call ends with (for StartSagas, its one result's)."""
    try:
        if SERVICE.methods_by_name[method].server_streaming:
            call = getattr(stub, method)(request, timeout=10)
            await call.read()
            call.cancel()
            return grpc.StatusCode.OK, ""
        reply = await getattr(stub, method)(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    if method == "StartSagas" and reply.results[0].HasField("error"):
        error = reply.results[0].error
        return grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == error.code)), (
            error.message
        )
    return grpc.StatusCode.OK, ""


async def test_u0000_in_any_string_is_refused_naming_the_field_and_stores_nothing(
    stub, orchestrator, database_url
):
    """Every string field of every request, a payload's values and keys, a packed input:
    INVALID_ARGUMENT naming the field, before anything is queued, on both back ends."""
    seeded = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="c-seed", payload=struct(travel())
        ),
        timeout=10,
    )
    await wait_terminal(stub, seeded.saga_id)
    before = {table: count_rows(database_url, table) for table in SAGA_TABLES}
    wrong = []
    cases = list(poisoned_requests(seeded.saga_id))
    assert {method for method, _, _ in cases} == {method.name for method in SERVICE.methods}
    for method, request, path in cases:
        code, message = await refusal_of(stub, method, request)
        expected = f"{path}: contains U+0000, which cannot be stored"
        if code != INVALID or not message.startswith(path) or "U+0000" not in message:
            wrong.append(f"{method} {path}: {code.name} {message!r}, expected {expected!r}")
    assert not wrong, "\n".join(wrong)
    assert {table: count_rows(database_url, table) for table in SAGA_TABLES} == before
    ok = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="c-ok", payload=struct(travel())
        ),
        timeout=10,
    )
    assert ok.created
    assert "Traceback" not in orchestrator.log_file.read_text()
    assert "\x00" not in orchestrator.log_file.read_text()


async def test_list_sagas_by_a_lock_key_with_u0000_is_invalid_argument(stub):
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListSagas(pb.ListSagasRequest(lock_key="\x00"), timeout=10)
    assert raised.value.code() == INVALID
    assert raised.value.details() == "lock_key: contains U+0000, which cannot be stored"


async def test_a_start_with_u0000_fails_no_other_callers_start(stub, database_url):
    """Concurrent callers, two with U+0000 in their payload, and a batch with one such
    request: only those are refused; every other start is created."""
    poisoned = {3, 17}
    requests = [
        pb.StartSagaRequest(
            saga_type="travel_booking",
            correlation_id=f"c-{index}",
            payload=struct(
                {**travel(f"customer-{index}"), "traveller_name": "Ada\x00"}
                if index in poisoned
                else travel(f"customer-{index}")
            ),
        )
        for index in range(30)
    ]
    answers = await asyncio.gather(
        *(stub.StartSaga(request, timeout=20) for request in requests), return_exceptions=True
    )
    for index, answer in enumerate(answers):
        if index in poisoned:
            assert isinstance(answer, grpc.aio.AioRpcError) and answer.code() == INVALID, answer
        else:
            assert not isinstance(answer, BaseException), (index, answer)
            assert answer.created
    batch = await stub.StartSagas(
        pb.StartSagasRequest(
            requests=[
                _with(requests[0], payload=struct(travel("batch-a"))),
                requests[3],
                _with(requests[0], payload=struct(travel("batch-b"))),
            ]
        ),
        timeout=20,
    )
    assert [result.WhichOneof("result") for result in batch.results] == ["saga", "error", "saga"]
    assert batch.results[1].error.code == INVALID.value[0]
    assert batch.results[1].error.message.startswith("requests[1].payload.traveller_name: ")
    assert count_rows(database_url, "sagas") == 30


@pytest.fixture
def console(
    tmp_path: Path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    """An orchestrator with its console (laptop mode) on this test's back end."""
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        extra_args=["--http-listen", "127.0.0.1:0"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


def http(url: str, body: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """(status, JSON answer) of one console request; a refusal is an answer too."""
    request = urllib.request.Request(
        url, data=None if body is None else body.encode(), headers=headers or {}
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {}
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")
        try:
            return error.code, json.loads(text)
        except ValueError:  # aiohttp's own 500 page
            return error.code, {"error": {"message": text}}


def test_console_refuses_unstorable_text_and_bad_numbers_with_400(console, database_url):
    """Query parameters with U+0000, numbers out of range or not numbers, times outside
    Timestamp's range, JSON bodies with U+0000 or a lone surrogate: each a 400 whose
    message names the parameter; nothing stored, no traceback in the log."""
    with grpc.insecure_channel(console.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        saga_id = stub.StartSaga(
            pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="c-web", payload=struct(travel())
            ),
            timeout=10,
        ).saga_id
        for _ in stub.WatchSaga(pb.WatchSagaRequest(saga_id=saga_id), timeout=30):
            pass  # the stream ends when the saga has ended
    base = console.info["console_url"]
    before = {table: count_rows(database_url, table) for table in SAGA_TABLES}
    big = str(2**63)
    reads = [
        ("api/sagas?lock_key=a%00b", "lock_key: contains U+0000"),
        ("api/sagas?saga_type=%00", "saga_type: contains U+0000"),
        ("api/counts?correlation_id=x%00", "correlation_id: contains U+0000"),
        ("api/sagas?page_token=%00", "page_token: contains U+0000"),
        ("api/sagas/%00", "saga_id: contains U+0000"),
        ("api/sagas?page_size=99999999999", "page_size must be a whole number from 0 to 1000"),
        ("api/sagas?page_size=-1", "page_size must be a whole number from 0 to 1000"),
        ("api/sagas?page_size=ten", "page_size must be a whole number from 0 to 1000"),
        ("api/intervention?page_size=1e9", "page_size must be a whole number from 0 to 1000"),
        (f"api/sagas/{saga_id}/events?after_seq={big}", "after_seq must be a whole number"),
        (f"api/sagas/{saga_id}/events?after_seq=-5", "after_seq must be a whole number"),
        ("api/sagas?created_after=0001-01-01T00:00:00%2B14:00", "created_after lies outside"),
    ]
    wrong = []
    for path, words in reads:
        status, answer = http(base + path)
        if status != 400 or not answer["error"]["message"].startswith(words):
            wrong.append(f"{path}: {status} {answer}")
    status, answer = http(f"{base}api/sagas/{saga_id}/events", headers={"Last-Event-Id": "9" * 30})
    if status != 400 or "after_seq must be" not in answer["error"]["message"]:
        wrong.append(f"Last-Event-Id: {status} {answer}")
    actions = [
        ("abort", {"reason": "x\x00", "requested_by": "ops"}, "reason: contains U+0000"),
        ("abort", {"reason": "x\ud800", "requested_by": "ops"}, "reason: contains U+D800"),
        ("retry", {"reason": "r", "requested_by": "\udfff"}, "requested_by: contains U+DFFF"),
        ("resolve", {"reason": "r", "requested_by": "ops", "step": "\x00"}, "step: contains"),
    ]
    for action, body, words in actions:
        status, answer = http(f"{base}api/sagas/{saga_id}/{action}", json.dumps(body))
        if status != 400 or not answer["error"]["message"].startswith(words):
            wrong.append(f"{action} {body!r}: {status} {answer}")
    assert not wrong, "\n".join(wrong)
    assert {table: count_rows(database_url, table) for table in SAGA_TABLES} == before
    assert http(f"{base}api/sagas?page_size=10")[0] == 200
    assert "Traceback" not in console.log_file.read_text()


@pytest.mark.parametrize(
    ("method", "request_bytes"),
    [
        # ListSagasRequest.lock_key (field 10) holding U+D800 as a lenient encoder writes it.
        ("ListSagas", b"\x52\x03\xed\xa0\x80"),
        # StartSagaRequest.payload (3) -> fields entry (1): key "k", value.string_value (3).
        ("StartSaga", b"\x1a\x0c\x0a\x0a\x0a\x01k\x12\x05\x1a\x03\xed\xa0\x80"),
    ],
    ids=["lock-key", "payload-value"],
)
async def test_a_surrogate_on_the_wire_is_invalid_argument_saying_strings_are_utf8(
    orchestrator, database_url, method, request_bytes
):
    before = count_rows(database_url, "sagas")
    async with grpc.aio.insecure_channel(orchestrator.address) as channel:
        send = channel.unary_unary(
            f"/saga.v1.SagaOrchestrator/{method}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await send(request_bytes, timeout=10)
    assert raised.value.code() == INVALID
    assert "every string must be well-formed UTF-8" in (raw := raised.value.details() or ""), raw
    assert count_rows(database_url, "sagas") == before
