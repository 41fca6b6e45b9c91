"""Log records, metrics and spans of the engine: no network, no database."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from orchestrator.core.machine import SagaRun
from orchestrator.core.records import SagaRecord, SagaStatus, StepRecord, StepStatus
from orchestrator.engine.driver import log_outcome
from orchestrator.examples import TRAVEL_BOOKING
from orchestrator.telemetry.engine import EngineTelemetry
from orchestrator.telemetry.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_context,
    make_formatter,
)
from orchestrator.telemetry.metrics import SagaMetrics, parse_listen
from orchestrator.telemetry.tracing import TRACING_OFF, configure_tracing, outbound_metadata

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    """A private logger writing through `formatter` and the context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(f"test.telemetry.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_about_a_saga_carries_its_fields_in_json():
    logger, stream = capture(JsonFormatter())

    with log_context(saga_id="s-1", saga_type="travel_booking", correlation_id="trip-7"):
        with log_context(step="book_hotel", kind="action", attempt=2):
            logger.warning("step %s failed", "book_hotel")
        logger.info("saga completed")
    logger.info("not about a saga")

    step_line, saga_line, other = lines(stream)
    assert step_line == {
        "timestamp": step_line["timestamp"],
        "level": "WARNING",
        "logger": logger.name,
        "message": "step book_hotel failed",
        "saga_id": "s-1",
        "saga_type": "travel_booking",
        "step": "book_hotel",
        "kind": "action",
        "attempt": 2,
        "correlation_id": "trip-7",
    }
    assert datetime.fromisoformat(step_line["timestamp"]).tzinfo is not None
    assert step_line["timestamp"].endswith("Z")
    assert saga_line["level"] == "INFO" and "step" not in saga_line
    assert saga_line["saga_id"] == "s-1" and saga_line["correlation_id"] == "trip-7"
    assert set(other) == {"timestamp", "level", "logger", "message"}


def test_extra_fields_win_over_the_context_and_missing_values_are_left_out():
    logger, stream = capture(JsonFormatter())

    with log_context(saga_id="s-1", saga_type="travel_booking", correlation_id=None):
        logger.info("elsewhere", extra={"saga_id": "s-2", "service": "flight"})

    (line,) = lines(stream)
    assert line["saga_id"] == "s-2"
    assert line["service"] == "flight"
    assert "correlation_id" not in line


def test_an_exception_is_one_json_field_not_extra_lines():
    logger, stream = capture(JsonFormatter())

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("driving the saga failed")

    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert "RuntimeError: boom" in line["exception"]


def test_text_lines_end_with_the_saga_fields():
    logger, stream = capture(TextFormatter())

    with log_context(saga_id="s-1", step="rent_car"):
        logger.error("compensation gave up")

    text = stream.getvalue()
    assert " ERROR " in text
    assert text.rstrip().endswith("compensation gave up [saga_id=s-1 step=rent_car]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("log_format", "stream", "expected"),
    [
        ("auto", io.StringIO(), JsonFormatter),
        ("auto", Terminal(), TextFormatter),
        ("json", Terminal(), JsonFormatter),
        ("text", io.StringIO(), TextFormatter),
    ],
)
def test_auto_format_is_json_unless_on_a_terminal(log_format, stream, expected):
    assert type(make_formatter(log_format, stream)) is expected


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="log format must be one of auto, json, text"):
        make_formatter("xml")


def test_configure_logging_twice_keeps_one_handler_and_other_handlers():
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    kept = logging.NullHandler()
    root.addHandler(kept)
    try:
        configure_logging("warning", "json")
        configure_logging("info", "text")
        ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter | TextFormatter)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
        assert kept in root.handlers
        assert root.level == logging.INFO
        assert logging.getLogger("transitions").level == logging.WARNING
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


# --- the engine's reports ----------------------------------------------------------------


def finished_run(status: SagaStatus, *, needs_intervention: bool = False) -> SagaRun:
    saga = SagaRecord(
        saga_id="s-1",
        saga_type=TRAVEL_BOOKING.name,
        definition_version=TRAVEL_BOOKING.version,
        correlation_id="trip-1",
        payload={},
        status=status,
        create_time=T0,
        update_time=T0 + timedelta(seconds=1.5),
        needs_intervention=needs_intervention,
        failure_reason="" if status is SagaStatus.COMPLETED else "step rent_car failed",
    )
    step_status = StepStatus.COMPLETED if status is SagaStatus.COMPLETED else StepStatus.PENDING
    steps = [
        StepRecord(saga_id="s-1", index=i, name=step.name, status=step_status)
        for i, step in enumerate(TRAVEL_BOOKING.all_steps)
    ]
    return SagaRun(TRAVEL_BOOKING, saga, steps, last_seq=1)


@pytest.mark.parametrize(
    ("status", "needs_intervention", "level", "counters"),
    [
        (SagaStatus.COMPLETED, False, logging.INFO, {"saga_completed_total": 1}),
        (
            SagaStatus.FAILED,
            False,
            logging.WARNING,
            {"saga_failed_total": 1, "saga_compensated_total": 1},
        ),
        (
            SagaStatus.FAILED,
            True,
            logging.ERROR,
            {"saga_failed_total": 1, "saga_needs_intervention_total": 1},
        ),
    ],
    ids=["completed", "compensated", "needs_intervention"],
)
def test_a_finished_saga_is_logged_at_its_level_and_counted_by_outcome(
    caplog, status, needs_intervention, level, counters
):
    run = finished_run(status, needs_intervention=needs_intervention)
    metrics = SagaMetrics(process_collectors=False)
    telemetry = EngineTelemetry(metrics)
    with caplog.at_level(logging.INFO, logger="orchestrator.engine.executor"):
        log_outcome(run)
    telemetry.saga_finished(run)

    (record,) = caplog.records
    assert record.levelno == level
    assert record.saga_id == "s-1" and record.saga_type == "travel_booking"
    labels = {"saga_type": "travel_booking"}
    for name in (
        "saga_completed_total",
        "saga_failed_total",
        "saga_compensated_total",
        "saga_needs_intervention_total",
    ):
        assert (metrics.registry.get_sample_value(name, labels) or 0) == counters.get(name, 0)
    outcome = {logging.INFO: "completed", logging.WARNING: "compensated"}.get(
        level, "needs_intervention"
    )
    duration = {"saga_type": "travel_booking", "outcome": outcome}
    assert metrics.registry.get_sample_value("saga_duration_seconds_count", duration) == 1
    assert metrics.registry.get_sample_value("saga_duration_seconds_sum", duration) == 1.5


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "no")


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, "ok"),
        (rpc_error(grpc.StatusCode.UNAVAILABLE), "transient"),
        (rpc_error(grpc.StatusCode.FAILED_PRECONDITION), "rejected"),
        (rpc_error(grpc.StatusCode.INTERNAL), "outcome_unknown"),
        (KeyError("bug"), "error"),
    ],
)
def test_a_command_attempt_is_timed_and_traced_by_outcome(error, outcome):
    run = finished_run(SagaStatus.COMPLETED)
    metrics = SagaMetrics(process_collectors=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = EngineTelemetry(metrics, provider.get_tracer("test"))
    seen_metadata = []
    with telemetry.driving(run):
        try:
            with telemetry.command(run, "rent_car", "action", 2, "/car.v1.Cars/RentCar"):
                seen_metadata.append(outbound_metadata())
                if error is not None:
                    raise error
        except (grpc.aio.AioRpcError, KeyError):
            pass

    labels = {"saga_type": "travel_booking", "step": "rent_car", "kind": "action"}
    sample = metrics.registry.get_sample_value(
        "saga_step_duration_seconds_count", {**labels, "outcome": outcome}
    )
    assert sample == 1
    step_span, saga_span = exporter.get_finished_spans()
    assert saga_span.name == "saga.travel_booking" and saga_span.parent is None
    assert saga_span.attributes["saga.id"] == "s-1"
    assert saga_span.attributes["saga.correlation_id"] == "trip-1"
    assert step_span.name == "action rent_car"
    assert step_span.parent.span_id == saga_span.context.span_id
    assert step_span.attributes["saga.step.attempt"] == 2
    assert step_span.attributes["saga.step.outcome"] == outcome
    assert step_span.attributes["rpc.method"] == "/car.v1.Cars/RentCar"
    assert step_span.status.status_code is (
        StatusCode.UNSET if outcome == "ok" else StatusCode.ERROR
    )
    (metadata,) = seen_metadata
    traceparent = dict(metadata)["traceparent"]
    assert traceparent.split("-")[2] == format(step_span.context.span_id, "016x")


def test_without_a_tracer_no_span_and_no_trace_metadata():
    run = finished_run(SagaStatus.COMPLETED)
    telemetry = EngineTelemetry()
    with telemetry.driving(run), telemetry.command(run, "rent_car", "action", 1, "/m"):
        assert outbound_metadata() is None
    assert configure_tracing("none", "test") is TRACING_OFF


def test_retries_and_store_commits_are_counted():
    run = finished_run(SagaStatus.COMPLETED)
    metrics = SagaMetrics(process_collectors=False)
    telemetry = EngineTelemetry(metrics)
    telemetry.retrying(run, "book_flight", "action")
    telemetry.retrying(run, "book_flight", "action")
    telemetry.retrying(run, "book_flight", "compensation")
    with telemetry.store_commit():
        pass

    retries = {"saga_type": "travel_booking", "step": "book_flight"}
    registry = metrics.registry
    assert registry.get_sample_value("saga_step_retries_total", {**retries, "kind": "action"}) == 2
    assert (
        registry.get_sample_value("saga_step_retries_total", {**retries, "kind": "compensation"})
        == 1
    )
    assert registry.get_sample_value("saga_store_commit_duration_seconds_count") == 1


def test_each_metrics_instance_has_its_own_registry_with_the_process_collectors():
    first, second = SagaMetrics(), SagaMetrics()
    first.sagas_started.labels("travel_booking").inc()

    labels = {"saga_type": "travel_booking"}
    assert first.registry.get_sample_value("saga_started_total", labels) == 1
    assert second.registry.get_sample_value("saga_started_total", labels) is None
    names = {metric.name for metric in first.registry.collect()}
    assert {"python_info", "python_gc_objects_collected", "process_cpu_seconds"} <= names


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:9464", ("::1", 9464)),
        (":9464", ("0.0.0.0", 9464)),
    ],
)
def test_metrics_address_is_host_and_port(listen, expected):
    assert parse_listen(listen) == expected


def test_metrics_address_without_port_is_refused():
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("localhost")
