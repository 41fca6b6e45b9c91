"""StartSagas against real orchestrator processes on SQLite and PostgreSQL: each request
of a batch answered as StartSaga would answer it alone, the good ones stored and run,
a batch sent again starting nothing, the batch and in-flight limits, the reject policy
of a locked type per request, the Python client, `saga start-many` from a JSON-lines
file, and a generic client that knows the RPC only from reflection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from orchestrator.client import Conflict, InvalidRequest, SagaToStart
from orchestrator.client.sync_client import SyncSagaClient
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_bad_input import count_rows
from tests.e2e.test_client import trip
from tests.support.payloads import struct, travel
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = pytest.mark.e2e


def good(correlation_id: str, key: str = "", **changes: object) -> pb.StartSagaRequest:
    return pb.StartSagaRequest(
        saga_type="travel_booking",
        correlation_id=correlation_id,
        payload=struct({**travel(), **changes}),
        idempotency_key=key,
    )


def code_of(status: status_pb2.Status) -> grpc.StatusCode:
    return next(code for code in grpc.StatusCode if code.value[0] == status.code)


def reason_of(status: status_pb2.Status) -> str:
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def test_a_mixed_batch_answers_each_request_as_start_saga_would_and_runs_the_good_ones(
    stub, database_url
):
    bad = [
        pb.StartSagaRequest(saga_type="no_such_saga", correlation_id="b-1", payload=struct({})),
        good("b-2", nights="two"),
        good(""),
        good("b-4", key=" padded "),
    ]
    batch = [
        good("b-0", key="batch-a"),
        *bad,
        good("b-5"),
        good("b-0", key="batch-a"),  # the same request again in the batch: its repeat
        good("b-other", key="batch-a"),  # the same key for another request
    ]

    reply = await stub.StartSagas(pb.StartSagasRequest(requests=batch), timeout=10)

    results = list(reply.results)
    assert len(results) == len(batch)
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["saga", "error", "error", "error", "error", "saga", "saga", "error"]
    for request, result in zip(bad, results[1:5], strict=True):
        with pytest.raises(grpc.aio.AioRpcError) as alone:
            await stub.StartSaga(request, timeout=10)
        assert code_of(result.error) == alone.value.code()
        assert result.error.message == alone.value.details()
        assert reason_of(result.error)
    first, repeat, reused = results[0].saga, results[6].saga, results[7].error
    assert first.created and not repeat.created and repeat.saga_id == first.saga_id
    assert code_of(reused) == grpc.StatusCode.ALREADY_EXISTS
    assert reason_of(reused) == "IDEMPOTENCY_KEY_REUSED" and first.saga_id in reused.message
    assert count_rows(database_url, "sagas") == 2
    for saga_id in (first.saga_id, results[5].saga.saga_id):
        assert (await wait_terminal(stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED


async def test_the_same_batch_sent_again_starts_nothing_and_names_the_same_sagas(
    stub, database_url
):
    batch = pb.StartSagasRequest(requests=[good(f"again-{n}", key=f"again-{n}") for n in range(20)])

    first = await stub.StartSagas(batch, timeout=10)
    second = await stub.StartSagas(batch, timeout=10)

    assert all(r.saga.created for r in first.results)
    assert not any(r.saga.created for r in second.results)
    assert [r.saga.saga_id for r in second.results] == [r.saga.saga_id for r in first.results]
    assert count_rows(database_url, "sagas") == 20
    for result in first.results:
        assert (await wait_terminal(stub, result.saga.saga_id)).status == pb.SAGA_STATUS_COMPLETED


@pytest.fixture
def small_limits(tmp_path: Path, database_url: str, participants: ChildProcess):
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        env={"SAGA_MAX_BATCH_STARTS": "5", "SAGA_MAX_SAGAS_IN_FLIGHT": "3"},
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_an_empty_or_too_long_batch_is_refused_whole_and_past_the_flight_limit_each_is(
    small_limits, database_url
):
    async with grpc.aio.insecure_channel(small_limits.address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await stub.StartSagas(pb.StartSagasRequest(), timeout=10)
        assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "requests is empty" in (empty.value.details() or "")
        six = [good(f"limit-{n}") for n in range(6)]
        with pytest.raises(grpc.aio.AioRpcError) as long:
            await stub.StartSagas(pb.StartSagasRequest(requests=six), timeout=10)
        assert long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "holds 6 requests; the limit (max batch starts) is 5" in (long.value.details() or "")
        assert count_rows(database_url, "sagas") == 0

        reply = await stub.StartSagas(pb.StartSagasRequest(requests=six[:5]), timeout=10)

        assert [r.WhichOneof("result") for r in reply.results] == ["saga"] * 3 + ["error"] * 2
        for result in reply.results[3:]:
            assert code_of(result.error) == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(result.error) == "SAGAS_IN_FLIGHT_EXHAUSTED"
            assert "(max sagas in flight) is 3" in result.error.message
            retry = error_details_pb2.RetryInfo()
            assert any(detail.Unpack(retry) for detail in result.error.details)
            assert retry.retry_delay.ToNanoseconds() > 0
        assert count_rows(database_url, "sagas") == 3
        for result in reply.results[:3]:
            done = await wait_terminal(stub, result.saga.saga_id)
            assert done.status == pb.SAGA_STATUS_COMPLETED


@pytest.fixture
def slow_trip_participants(tmp_path: Path):
    process = participants_process(
        tmp_path,
        ["flight", "hotel"],
        ["--latency-ms", "400", "--capacity", "1000"],
        name="trip-participants",
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_a_locked_type_that_rejects_conflicts_aborts_only_the_conflicting_request(
    tmp_path, database_url, slow_trip_participants
):
    process = orchestrator_process(
        tmp_path,
        database_url,
        slow_trip_participants.info["services"],
        env={"SAGA_DEFINITIONS": "tests.support.lock_sagas"},
    ).start()
    try:
        async with grpc.aio.insecure_channel(process.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            requests = [
                pb.StartSagaRequest(
                    saga_type="exclusive_trip",
                    correlation_id=f"{customer}-{n}",
                    payload=struct(travel(customer)),
                )
                for n, customer in enumerate(["zed", "zed", "amy"])
            ]
            reply = await stub.StartSagas(pb.StartSagasRequest(requests=requests), timeout=10)

            holder, refused, other = reply.results
            assert code_of(refused.error) == grpc.StatusCode.ABORTED
            assert "cust:zed" in refused.error.message
            assert holder.saga.saga_id in refused.error.message
            for result in (holder, other):
                done = await wait_terminal(stub, result.saga.saga_id)
                assert done.status == pb.SAGA_STATUS_COMPLETED
    finally:
        process.stop()


def test_the_sync_client_starts_many_and_answers_each_with_a_handle_or_its_error(orchestrator):
    with SyncSagaClient(orchestrator.address) as client:
        answers = client.start_many(
            [
                SagaToStart(trip(), correlation_id="many-1", idempotency_key="many-1"),
                SagaToStart({"nights": 1}, correlation_id="many-2", saga_type="travel_booking"),
                SagaToStart(travel(), correlation_id="many-3", saga_type="travel_booking"),
                SagaToStart(trip(), correlation_id="many-other", idempotency_key="many-1"),
            ],
            batch_size=3,
        )
        first, invalid, third, reused = answers
        assert isinstance(invalid, InvalidRequest) and invalid.reason == "INVALID_PAYLOAD"
        assert isinstance(reused, Conflict) and reused.code == grpc.StatusCode.ALREADY_EXISTS
        assert not isinstance(first, Exception) and not isinstance(third, Exception)
        assert first.created and third.created
        assert isinstance(first.result(timeout=30), TravelBookingOutput)
        assert isinstance(third.result(timeout=30), TravelBookingOutput)


def start_many_cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "start-many", "--address", address, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_start_many_streams_a_json_lines_file_and_a_second_run_starts_nothing(
    orchestrator, stub, tmp_path, database_url
):
    lines = [
        json.dumps({"correlation_id": f"file-{n}", "payload": travel(), "idempotency_key": f"f{n}"})
        for n in range(5)
    ]
    lines.insert(2, "{not json")
    lines.insert(4, "")
    lines.append(json.dumps({"saga_type": "no_such_saga", "correlation_id": "file-x"}))
    source = tmp_path / "sagas.jsonl"
    source.write_text("\n".join(lines) + "\n")

    first = start_many_cli(
        orchestrator.address, str(source), "--type", "travel_booking", "--batch-size", "2"
    )

    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    answers = [json.loads(line) for line in first.stdout.splitlines()]
    assert [a["line"] for a in answers] == [1, 2, 3, 4, 6, 7, 8]
    assert answers[2]["error"]["code"] == "INVALID_ARGUMENT"
    assert answers[6]["error"]["code"] == "INVALID_ARGUMENT"
    assert answers[6]["error"]["reason"] == "UNKNOWN_SAGA_TYPE"
    started = [a for a in answers if "saga_id" in a]
    assert len(started) == 5 and all(a["created"] for a in started)
    assert "5 started, 0 already started, 2 refused" in first.stderr

    good_only = tmp_path / "good.jsonl"
    good_only.write_text("\n".join(line for line in lines if line.startswith('{"corr')) + "\n")
    second = start_many_cli(orchestrator.address, str(good_only), "--type", "travel_booking")

    assert second.returncode == 0, second.stderr
    again = [json.loads(line) for line in second.stdout.splitlines()]
    assert [a["saga_id"] for a in again] == [a["saga_id"] for a in started]
    assert not any(a["created"] for a in again)
    assert count_rows(database_url, "sagas") == 5
    for answer in started:
        assert (await wait_terminal(stub, answer["saga_id"])).status == pb.SAGA_STATUS_COMPLETED


def test_a_generic_client_finds_start_sagas_by_reflection_and_calls_it(orchestrator):
    """Like grpcurl: the RPC, its messages and google.rpc.Status come from reflection."""
    with grpc.insecure_channel(orchestrator.address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        method = pool.FindServiceByName("saga.v1.SagaOrchestrator").methods_by_name["StartSagas"]
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        request = json_format.ParseDict(
            {
                "requests": [
                    {
                        "saga_type": "travel_booking",
                        "correlation_id": "refl-1",
                        "payload": travel(),
                    },
                    {"saga_type": "travel_booking", "correlation_id": ""},
                ]
            },
            request_type(),
        )
        reply = channel.unary_unary(
            "/saga.v1.SagaOrchestrator/StartSagas",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )(request, timeout=10)
        # The ErrorInfo packed in the error's details is looked up by reflection too.
        answered = json_format.MessageToDict(reply, descriptor_pool=pool)["results"]
    assert answered[0]["saga"]["status"] == "SAGA_STATUS_RUNNING"
    assert answered[1]["error"]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "correlation_id is required" in answered[1]["error"]["message"]
