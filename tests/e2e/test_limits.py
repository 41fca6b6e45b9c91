"""Client mistakes and limits over real gRPC, on both back ends: every malformed request
is INVALID_ARGUMENT (or OUT_OF_RANGE) naming the field and the rule, nothing is stored,
no traceback is logged, and the server keeps serving."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from orchestrator.core.clock import utc_now
from orchestrator.core.opening import open_saga
from orchestrator.examples.travel_booking import TRAVEL_BOOKING
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.test_bad_input import count_rows
from tests.e2e.test_batch_start import code_of
from tests.e2e.test_telemetry import scrape
from tests.e2e.test_telemetry import value as metric_value
from tests.support.payloads import struct, travel
from tests.support.starting import start_request, start_saga
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

pytestmark = pytest.mark.e2e

INVALID = grpc.StatusCode.INVALID_ARGUMENT
TABLES = ("sagas", "saga_steps", "saga_transitions")
SOME_ID = "6f1c0b7e-3f4a-4c5e-9d2b-8a7f6e5d4c3b"


def token(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def deep_struct(levels: int) -> struct_pb2.Struct:
    """A Struct nested `levels` objects deep, built bottom up (Struct.update recurses)."""
    inner = struct_pb2.Struct()
    for _ in range(levels - 1):
        outer = struct_pb2.Struct()
        outer.fields["a"].struct_value.CopyFrom(inner)
        inner = outer
    return inner


def deep_struct_bytes(levels: int) -> bytes:
    """A StartSagaRequest nested deeper than protobuf will decode, encoded by hand (the
    Python runtime refuses to build it): Struct{fields: {"a": Value{struct_value: ...}}}."""

    def length_delimited(number: int, body: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(body)) + body

    inner = b""
    for _ in range(levels):
        value = length_delimited(5, inner)  # Value.struct_value
        entry = length_delimited(1, b"a") + length_delimited(2, value)  # FieldsEntry
        inner = length_delimited(1, entry)  # Struct.fields
    request = pb.StartSagaRequest(saga_type="travel_booking", correlation_id="c-deep")
    return request.SerializeToString() + length_delimited(3, inner)  # payload


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def travel_with(**changes: Any) -> struct_pb2.Struct:
    payload = struct(travel())
    for key, value in changes.items():
        payload.fields[key].number_value = value
    return payload


def timestamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def digest_free_token(moment: str, saga_id: str = SOME_ID) -> str:
    """A forged ListSagas token for the empty filter (its digest is computable)."""
    from orchestrator.api.paging import filter_digest
    from orchestrator.core.records import SagaFilter

    return token({"t": moment, "id": saga_id, "f": filter_digest(SagaFilter())})


def start(payload: struct_pb2.Struct) -> tuple[str, Any]:
    return "StartSaga", pb.StartSagaRequest(
        saga_type="travel_booking", correlation_id="c-limits", payload=payload
    )


MISTAKES = [
    pytest.param(
        "ListSagas", pb.ListSagasRequest(status=99), INVALID, "status is 99", id="unknown-status"
    ),
    pytest.param("ListSagas", pb.ListSagasRequest(view=7), INVALID, "view is 7", id="unknown-view"),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(create_time_after=timestamp(-(10**12))),
        INVALID,
        "create_time_after.seconds",
        id="timestamp-before-year-1",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(create_time_before=timestamp(0, -5)),
        INVALID,
        "create_time_before.nanos",
        id="negative-nanos",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(page_token=digest_free_token("2025-01-01T00:00:00")),
        INVALID,
        "page_token",
        id="token-without-time-zone",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(page_token=digest_free_token("2025-01-01T00:00:00+00:00", "x")),
        INVALID,
        "page_token",
        id="token-with-bad-id",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(page_token="!!!not base64"),
        INVALID,
        "page_token",
        id="token-not-base64",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(page_token=token({"t": 5, "id": [], "f": {}})),
        INVALID,
        "page_token",
        id="token-wrong-types",
    ),
    pytest.param(
        "ListSagas",
        pb.ListSagasRequest(page_size=500, view=pb.SAGA_VIEW_FULL),
        INVALID,
        "page_size up to 50",
        id="full-view-large-page",
    ),
    pytest.param(
        "GetSagaHistory",
        pb.GetSagaHistoryRequest(
            saga_id=SOME_ID, page_token=base64.urlsafe_b64encode(b"1" + b"0" * 30).decode()
        ),
        grpc.StatusCode.OUT_OF_RANGE,
        "page_token",
        id="history-token-10e30",
    ),
    pytest.param(*start(travel_with(nights=math.nan)), INVALID, "payload.nights", id="nan"),
    pytest.param(
        *start(travel_with(car_days=math.inf)), INVALID, "numbers must be finite", id="inf"
    ),
    pytest.param(*start(deep_struct(25)), INVALID, "max payload depth", id="depth-25"),
    pytest.param(
        "StartSaga", deep_struct_bytes(60), INVALID, "not a valid message", id="undecodable"
    ),
]


@pytest.fixture
def limited(
    tmp_path: Path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    """An orchestrator with small limits, so each is cheap to reach."""
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        env={
            "SAGA_MAX_PAYLOAD_BYTES": "4096",
            "SAGA_MAX_WATCH_STREAMS": "2",
            "SAGA_MAX_SAGAS_IN_FLIGHT": "3",
        },
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def raw_call(address: str, method: str, body: bytes) -> bytes:
    """A unary call with a body as given, bypassing the client's encoder."""
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            f"/saga.v1.SagaOrchestrator/{method}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        return bytes(await call(body, timeout=10))


async def assert_serving(stub: pb_grpc.SagaOrchestratorStub) -> None:
    ok = await stub.StartSaga(
        pb.StartSagaRequest(
            saga_type="travel_booking", correlation_id="c-ok", payload=struct(travel())
        ),
        timeout=10,
    )
    assert ok.created


@pytest.mark.parametrize(("method", "request_message", "code", "words"), MISTAKES)
async def test_client_mistake_names_field_and_rule_stores_nothing_and_logs_no_traceback(
    stub, orchestrator, database_url, method, request_message, code, words
):
    before = {table: count_rows(database_url, table) for table in TABLES}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if isinstance(request_message, bytes):
            await raw_call(orchestrator.address, method, request_message)
        else:
            await getattr(stub, method)(request_message, timeout=10)
    error = raised.value
    assert (error.code(), words in error.details()) == (code, True), error.details()
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason
    assert {table: count_rows(database_url, table) for table in TABLES} == before
    log = orchestrator.log_file.read_text()
    assert "Traceback" not in log
    assert "request refused" in log
    await assert_serving(stub)


async def test_payload_over_the_size_limit_is_refused_naming_the_limit(limited, database_url):
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        payload = struct({**travel(), "traveller_name": "x" * 5000})
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id="c-big", payload=payload
                ),
                timeout=10,
            )
        assert raised.value.code() == INVALID
        assert "max payload bytes) is 4096" in raised.value.details()
        assert count_rows(database_url, "sagas") == 0
        await assert_serving(stub)


@pytest.fixture(scope="module")
def slow_participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """Participants that take 30 s over each action: sagas stay RUNNING through a test."""
    process = participants_process(
        tmp_path_factory.mktemp("slow-participants"),
        PARTICIPANT_SERVICES,
        ["--latency-ms", "30000"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def busy(
    tmp_path: Path, database_url: str, slow_participants: ChildProcess
) -> Iterator[ChildProcess]:
    """An orchestrator with room for 3 sagas and 2 watch streams, whose sagas stay RUNNING."""
    process = orchestrator_process(
        tmp_path,
        database_url,
        slow_participants.info["services"],
        env={
            "SAGA_MAX_WATCH_STREAMS": "2",
            "SAGA_MAX_SAGAS_IN_FLIGHT": "3",
            "SAGA_METRICS_LISTEN": "127.0.0.1:0",
        },
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def start_travel(stub: pb_grpc.SagaOrchestratorStub, correlation_id: str) -> str:
    return await start_saga(stub, travel(), correlation_id)


async def test_start_past_the_sagas_in_flight_limit_is_resource_exhausted_with_retry_delay(
    busy, database_url
):
    async with grpc.aio.insecure_channel(busy.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        for number in range(3):
            await start_travel(stub, f"c-{number}")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await start_travel(stub, "c-one-too-many")
        error = raised.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "(max sagas in flight) is 3" in error.details()
        status = rpc_status.from_call(error)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details)
        assert retry.retry_delay.ToTimedelta().total_seconds() > 0
        assert count_rows(database_url, "sagas") == 3


async def test_watch_streams_past_the_cap_are_resource_exhausted_and_a_closed_one_frees_room(
    busy,
):
    async with grpc.aio.insecure_channel(busy.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        saga_id = await start_travel(stub, "c-watched")
        request = pb.WatchSagaRequest(saga_id=saga_id)
        first, second = stub.WatchSaga(request), stub.WatchSaga(request)
        # Each stream is open once it has delivered the saga's first transition.
        await first.read()
        await second.read()
        third = stub.WatchSaga(request, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await third.read()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 WatchSaga streams" in raised.value.details()
        assert metric_value(scrape(busy.info["metrics_address"]), "saga_watch_streams") == 2
        first.cancel()
        fourth = stub.WatchSaga(request, timeout=10)
        for _ in range(50):  # the server notices the cancellation within a few reads
            try:
                assert (await fourth.read()).transition.seq == 1
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                await asyncio.sleep(0.1)
                fourth = stub.WatchSaga(request, timeout=10)
        else:
            pytest.fail("a closed watch stream never freed its place")
        second.cancel()
        fourth.cancel()
        for _ in range(100):  # the server notices both cancellations within a few reads
            if metric_value(scrape(busy.info["metrics_address"]), "saga_watch_streams") == 0:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the watch-streams gauge never came back to 0")


async def test_large_stored_payloads_never_break_listing(stub, orchestrator, database_url):
    """Payloads far past today's limit (stored before it, say) leave the default listing
    small and split a FULL listing into pages under the byte budget."""
    store = open_store(database_url)
    await store.open()
    try:
        for number in range(3):
            _, _, opening = open_saga(
                TRAVEL_BOOKING, f"c-big-{number}", {"blob": "x" * 1_500_000}, None, utc_now()
            )
            await store.create_saga(opening.saga, [], list(opening.transitions))
    finally:
        await store.close()
    basic = await stub.ListSagas(pb.ListSagasRequest(), timeout=10)
    assert len(basic.sagas) == 3 and not basic.next_page_token
    assert all(not saga.HasField("payload") for saga in basic.sagas)
    assert basic.ByteSize() < 10_000
    seen, token = [], ""
    while True:
        page = await stub.ListSagas(
            pb.ListSagasRequest(page_size=3, page_token=token, view=pb.SAGA_VIEW_FULL),
            timeout=10,
        )
        assert len(page.sagas) == 1  # the second saga would pass the 1 MiB budget
        seen += [saga.correlation_id for saga in page.sagas]
        assert len(page.sagas[0].payload.fields["blob"].string_value) == 1_500_000
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == ["c-big-0", "c-big-1", "c-big-2"]


async def test_a_request_past_the_grpc_message_size_is_resource_exhausted_not_internal(
    stub, orchestrator, database_url
):
    """gRPC's own receive limit (4 MiB with the default payload limit) answers first."""
    huge = struct({**travel(), "traveller_name": "x" * (5 * 1024 * 1024)})
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.StartSaga(
            pb.StartSagaRequest(saga_type="travel_booking", correlation_id="c-huge", payload=huge),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert count_rows(database_url, "sagas") == 0
    await assert_serving(stub)


BURST_LIMIT = 50


@pytest.fixture
def burst_limited(
    tmp_path: Path, database_url: str, slow_participants: ChildProcess
) -> Iterator[ChildProcess]:
    """An orchestrator with room for 50 sagas in flight, whose sagas stay RUNNING."""
    process = orchestrator_process(
        tmp_path,
        database_url,
        slow_participants.info["services"],
        env={"SAGA_MAX_SAGAS_IN_FLIGHT": str(BURST_LIMIT)},
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_a_burst_of_concurrent_starts_admits_exactly_the_sagas_in_flight_limit(
    burst_limited, database_url
):
    """200 StartSaga at once against room for 50: each takes its place before it awaits
    the store, so exactly 50 are admitted and 150 refused, none stored."""
    async with grpc.aio.insecure_channel(burst_limited.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)

        async def start(number: int) -> grpc.StatusCode:
            try:
                await start_travel(stub, f"c-burst-{number}")
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(start(number) for number in range(200)))
    assert Counter(codes) == {
        grpc.StatusCode.OK: BURST_LIMIT,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 200 - BURST_LIMIT,
    }
    assert count_rows(database_url, "sagas") == BURST_LIMIT


async def test_concurrent_batches_share_the_sagas_in_flight_limit(burst_limited, database_url):
    """Four StartSagas of 50 at once against room for 50: 50 items admitted in all, every
    other item answered RESOURCE_EXHAUSTED on its own."""
    async with grpc.aio.insecure_channel(burst_limited.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)

        async def batch(number: int) -> list[str]:
            requests = [
                start_request(travel(), f"c-batch-{number}-{item}") for item in range(BURST_LIMIT)
            ]
            reply = await stub.StartSagas(pb.StartSagasRequest(requests=requests), timeout=30)
            return [
                "admitted" if result.WhichOneof("result") == "saga" else code_of(result.error).name
                for result in reply.results
            ]

        answers = await asyncio.gather(*(batch(number) for number in range(4)))
    assert Counter(answer for answers_of in answers for answer in answers_of) == {
        "admitted": BURST_LIMIT,
        "RESOURCE_EXHAUSTED": 3 * BURST_LIMIT,
    }
    assert count_rows(database_url, "sagas") == BURST_LIMIT
