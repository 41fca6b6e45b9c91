"""How the engine and the server interceptor record metrics: children bound once, the
in-flight count read at scrape, commits timed when they raise, every kind of RPC
behaviour counted by method and code. No network, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from orchestrator.core.machine import SagaRun
from orchestrator.core.records import SagaRecord, SagaStatus, StepRecord, StepStatus
from orchestrator.examples import TRAVEL_BOOKING
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.interceptors import ServerMetricsInterceptor
from orchestrator.telemetry.metrics import LabelledChildren, SagaMetrics

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def completed_run() -> SagaRun:
    saga = SagaRecord(
        saga_id="s-1",
        saga_type=TRAVEL_BOOKING.name,
        definition_version=TRAVEL_BOOKING.version,
        correlation_id="",
        payload={},
        status=SagaStatus.COMPLETED,
        create_time=T0,
        update_time=T0 + timedelta(seconds=2),
    )
    steps = [
        StepRecord(saga_id="s-1", index=i, name=step.name, status=StepStatus.COMPLETED)
        for i, step in enumerate(TRAVEL_BOOKING.all_steps)
    ]
    return SagaRun(TRAVEL_BOOKING, saga, steps, last_seq=1)


def test_a_kept_child_is_the_one_labels_returns_and_one_label_needs_no_tuple():
    metrics = SagaMetrics(process_collectors=False)
    by_type = LabelledChildren(metrics.sagas_started)
    by_step = LabelledChildren(metrics.step_retries)

    by_type["travel_booking"].inc()
    by_type["travel_booking"].inc()
    by_step["travel_booking", "book_hotel", "action"].inc()

    assert by_type["travel_booking"] is metrics.sagas_started.labels("travel_booking")
    assert by_step["travel_booking", "book_hotel", "action"] is metrics.step_retries.labels(
        "travel_booking", "book_hotel", "action"
    )
    registry = metrics.registry
    assert registry.get_sample_value("saga_started_total", {"saga_type": "travel_booking"}) == 2
    assert (
        registry.get_sample_value(
            "saga_step_retries_total",
            {"saga_type": "travel_booking", "step": "book_hotel", "kind": "action"},
        )
        == 1
    )


def test_sagas_in_flight_counts_the_drives_of_every_engine_sharing_the_metrics():
    metrics = SagaMetrics(process_collectors=False)
    first, second = EngineTelemetry(metrics), EngineTelemetry(metrics)

    first.drive_started()
    second.drive_started()
    second.drive_started()
    assert metrics.registry.get_sample_value("saga_in_flight") == 3
    second.drive_ended()
    first.drive_ended()
    assert metrics.registry.get_sample_value("saga_in_flight") == 1


def test_a_commit_that_raises_is_timed_and_the_error_goes_on():
    metrics = SagaMetrics(process_collectors=False)
    telemetry = EngineTelemetry(metrics)

    with pytest.raises(OSError), telemetry.store_commit():
        raise OSError("connection lost")
    with telemetry.store_commit():
        pass

    assert metrics.registry.get_sample_value("saga_store_commit_duration_seconds_count") == 2


def test_two_sagas_of_one_type_add_to_the_same_series():
    metrics = SagaMetrics(process_collectors=False)
    telemetry = EngineTelemetry(metrics)
    run = completed_run()

    for _ in range(2):
        telemetry.saga_started(run.saga.saga_type)
        with telemetry.command(run, "book_hotel", "action", 1, "/hotel.v1.Hotels/Book"):
            pass
        telemetry.saga_finished(run)

    registry = metrics.registry
    by_type = {"saga_type": "travel_booking"}
    assert registry.get_sample_value("saga_started_total", by_type) == 2
    assert registry.get_sample_value("saga_completed_total", by_type) == 2
    assert (
        registry.get_sample_value("saga_duration_seconds_sum", {**by_type, "outcome": "completed"})
        == 4.0
    )
    step = {**by_type, "step": "book_hotel", "kind": "action", "outcome": "ok"}
    assert registry.get_sample_value("saga_step_duration_seconds_count", step) == 2


class FakeContext:
    """The servicer context as the interceptor reads it: the code set, if any."""

    def __init__(self, code: grpc.StatusCode | None = None) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode | None:
        return self._code


async def answer(request: Any, context: Any) -> str:
    return f"answer to {request}"


async def stream_answers(request: Any, context: Any) -> Any:
    yield "one"
    yield "two"


def synchronous_answer(request: Any, context: Any) -> str:
    return "sync"


def fresh_closure() -> Any:
    """A new function object each call with the same code, as the API's inner
    interceptors hand on."""

    async def inner(request: Any, context: Any) -> str:
        raise ValueError("servicer bug")

    return inner


class Details:
    """The call details as the interceptor reads them."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def call_through(
    interceptor: ServerMetricsInterceptor, method: str, handler: grpc.RpcMethodHandler
) -> Any:
    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    return await interceptor.intercept_service(continuation, Details(method))


async def test_the_server_counts_and_times_every_kind_of_behaviour_by_method_and_code():
    metrics = SagaMetrics(process_collectors=False)
    interceptor = ServerMetricsInterceptor(metrics)

    for _ in range(2):
        wrapped = await call_through(
            interceptor, "/saga.v1.S/Get", grpc.unary_unary_rpc_method_handler(answer)
        )
        assert await wrapped.unary_unary("r", FakeContext()) == "answer to r"
    wrapped = await call_through(
        interceptor, "/saga.v1.S/Watch", grpc.unary_stream_rpc_method_handler(stream_answers)
    )
    assert [item async for item in wrapped.unary_stream("r", FakeContext())] == ["one", "two"]
    for _ in range(2):
        wrapped = await call_through(
            interceptor, "/saga.v1.S/Break", grpc.unary_unary_rpc_method_handler(fresh_closure())
        )
        with pytest.raises(ValueError, match="servicer bug"):
            await wrapped.unary_unary("r", FakeContext())
    aborted = await call_through(
        interceptor, "/saga.v1.S/Get", grpc.unary_unary_rpc_method_handler(answer)
    )
    await aborted.unary_unary("r", FakeContext(grpc.StatusCode.NOT_FOUND))
    sync_handler = grpc.unary_unary_rpc_method_handler(synchronous_answer)
    assert await call_through(interceptor, "/saga.v1.S/Sync", sync_handler) is sync_handler

    def requests(method: str, code: str) -> float | None:
        labels = {"method": method, "code": code}
        return metrics.registry.get_sample_value("saga_grpc_server_requests_total", labels)

    def timed(method: str, code: str) -> float | None:
        labels = {"method": method, "code": code}
        return metrics.registry.get_sample_value(
            "saga_grpc_server_request_duration_seconds_count", labels
        )

    for method, code, count in [
        ("/saga.v1.S/Get", "OK", 2),
        ("/saga.v1.S/Watch", "OK", 1),
        ("/saga.v1.S/Break", "UNKNOWN", 2),
        ("/saga.v1.S/Get", "NOT_FOUND", 1),
    ]:
        assert (requests(method, code), timed(method, code)) == (count, count), (method, code)
    assert requests("/saga.v1.S/Sync", "OK") is None
