"""Metrics, logs and traces of a known set of sagas: 3 that complete, 2 that compensate.

One scenario runs the orchestrator and the participants as processes (metrics
on their own port, JSON logs, spans printed as JSON lines) and the tests read
what it left: the scrape over HTTP, both log files, the spans of both
processes. The in-process test checks the same parent-child links with
in-memory exporters.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.core.records import SagaStatus
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.examples import DEFINITIONS, TRAVEL_BOOKING
from orchestrator.store import open_store
from orchestrator.telemetry.engine import EngineTelemetry
from participants.common.config import ParticipantConfig
from participants.common.server import build_example_server
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import FAIL_CAR_CLASS, MAX_CHARGE_MINOR, wait_terminal
from tests.support.payloads import struct, travel
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

pytestmark = pytest.mark.e2e

TRAVELLER = "Ada Lovelace"
"""A name in every saga's input: personal data that must appear in no log line."""
OK_SAGAS = 3
FAILING_SAGAS = 2
# Export spans within 50 ms instead of the 5 s default, so a test need not wait.
FAST_SPAN_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scenario:
    """What the processes left behind once they stopped."""

    completed: list[str]
    compensated: list[str]
    correlation_ids: dict[str, str]
    samples: Samples
    orchestrator_lines: list[dict[str, Any]]
    participant_lines: list[dict[str, Any]]
    raw_logs: str


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line that is a JSON object (the processes also print plain lines)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def scrape(address: str) -> Samples:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def run_known_sagas(address: str) -> tuple[list[str], list[str], dict[str, str]]:
    """3 trips that complete, 2 whose car is refused; then a few known API errors."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        started: dict[str, str] = {}
        for number in range(OK_SAGAS + FAILING_SAGAS):
            failing = number >= OK_SAGAS
            correlation_id = f"{'refused' if failing else 'trip'}-{number}"
            payload = travel(f"customer-{number}", car_class=FAIL_CAR_CLASS if failing else "suv")
            reply = await stub.StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking",
                    correlation_id=correlation_id,
                    payload=struct(payload),
                ),
                timeout=10,
            )
            started[reply.saga_id] = correlation_id
        finished = [await wait_terminal(stub, saga_id) for saga_id in started]
        known_errors = [
            ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
            (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
        ]
        for bad_id, code in known_errors:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.GetSaga(pb.GetSagaRequest(saga_id=bad_id), timeout=5)
            assert raised.value.code() == code
        watched = [
            reply
            async for reply in stub.WatchSaga(
                pb.WatchSagaRequest(saga_id=finished[0].saga_id), timeout=10
            )
        ]
        assert watched
    completed = [s.saga_id for s in finished if s.status == pb.SAGA_STATUS_COMPLETED]
    compensated = [s.saga_id for s in finished if s.status == pb.SAGA_STATUS_FAILED]
    return completed, compensated, started


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    workdir = tmp_path_factory.mktemp("telemetry")
    participants = participants_process(
        workdir,
        PARTICIPANT_SERVICES,
        [
            "--max-charge-minor",
            str(MAX_CHARGE_MINOR),
            "--fail-ids",
            FAIL_CAR_CLASS,
            "--log-format",
            "json",
            "--trace-exporter",
            "console",
        ],
        name="traced-participants",
    )
    participants.env.update(FAST_SPAN_EXPORT)
    orchestrator: ChildProcess | None = None
    try:
        participants.start()
        orchestrator = orchestrator_process(
            workdir,
            f"sqlite:///{workdir / 'saga.sqlite3'}",
            participants.info["services"],
            env=FAST_SPAN_EXPORT,
            name="traced-orchestrator",
        )
        orchestrator.argv += [
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--trace-exporter",
            "console",
        ]
        orchestrator.start()
        completed, compensated, correlation_ids = asyncio.run(run_known_sagas(orchestrator.address))
        samples = scrape(orchestrator.info["metrics_address"])
    finally:
        # Stopping flushes the spans still queued in either process.
        if orchestrator is not None:
            assert orchestrator.stop() in (0, None), orchestrator.log_tail()
        assert participants.stop() in (0, None), participants.log_tail()
    return Scenario(
        completed=completed,
        compensated=compensated,
        correlation_ids=correlation_ids,
        samples=samples,
        orchestrator_lines=json_lines(orchestrator.log_file),
        participant_lines=json_lines(participants.log_file),
        raw_logs=orchestrator.log_file.read_text() + participants.log_file.read_text(),
    )


def test_scrape_counts_the_known_sagas_by_type_and_outcome(scenario):
    samples = scenario.samples
    travel_type = {"saga_type": "travel_booking"}
    assert len(scenario.completed) == OK_SAGAS and len(scenario.compensated) == FAILING_SAGAS
    assert value(samples, "saga_started_total", **travel_type) == 5
    assert value(samples, "saga_completed_total", **travel_type) == 3
    assert value(samples, "saga_failed_total", **travel_type) == 2
    assert value(samples, "saga_compensated_total", **travel_type) == 2
    assert value(samples, "saga_needs_intervention_total", **travel_type) is None
    assert value(samples, "saga_needing_intervention", **travel_type) == 0  # counted in the store
    assert value(samples, "saga_started_total", saga_type="order_fulfillment") is None
    for outcome, count in (("completed", 3), ("compensated", 2)):
        labels = {**travel_type, "outcome": outcome}
        assert value(samples, "saga_duration_seconds_count", **labels) == count
        assert value(samples, "saga_duration_seconds_bucket", **labels, le="+Inf") == count
    assert value(samples, "saga_in_flight") == 0


def test_scrape_has_each_command_attempt_by_step_kind_and_outcome(scenario):
    attempts = {
        (dict(labels)["step"], dict(labels)["kind"], dict(labels)["outcome"]): count
        for (name, labels), count in scenario.samples.items()
        if name == "saga_step_duration_seconds_count"
    }
    assert attempts == {
        ("book_flight", "action", "ok"): 5,
        ("book_hotel", "action", "ok"): 5,
        ("rent_car", "action", "ok"): 3,
        ("rent_car", "action", "rejected"): 2,
        ("charge_payment", "action", "ok"): 3,
        ("book_hotel", "compensation", "ok"): 2,
        ("book_flight", "compensation", "ok"): 2,
    }
    assert not [key for key in scenario.samples if key[0] == "saga_step_retries_total"]


def test_scrape_has_grpc_requests_by_method_and_code(scenario):
    samples = scenario.samples
    api = "/saga.v1.SagaOrchestrator/"
    assert (
        value(samples, "saga_grpc_server_requests_total", method=api + "StartSaga", code="OK") == 5
    )
    assert (
        value(
            samples,
            "saga_grpc_server_request_duration_seconds_count",
            method=api + "StartSaga",
            code="OK",
        )
        == 5
    )
    # Waiting rides WatchSaga to its last message, which carries the saga: no GetSaga.
    assert (
        value(samples, "saga_grpc_server_requests_total", method=api + "GetSaga", code="OK") is None
    )
    for code in ("INVALID_ARGUMENT", "NOT_FOUND"):
        assert (
            value(samples, "saga_grpc_server_requests_total", method=api + "GetSaga", code=code)
            == 1
        )
    # A stream is counted once, when it ends: 5 waits and 1 watch.
    assert (
        value(samples, "saga_grpc_server_requests_total", method=api + "WatchSaga", code="OK") == 6
    )


def test_scrape_has_store_commits_and_the_process_collectors(scenario):
    samples = scenario.samples
    commits = value(samples, "saga_store_commit_duration_seconds_count")
    # At least each saga's terminal state (its start is written with the saga itself).
    assert commits is not None and commits >= 5
    assert value(samples, "saga_store_commit_duration_seconds_bucket", le="+Inf") == commits
    assert value(samples, "process_resident_memory_bytes") > 0
    assert any(name == "python_info" for name, _ in samples)


def test_orchestrator_log_lines_carry_the_saga_fields_at_the_outcome_level(scenario):
    finished = ("saga completed", "saga failed")
    outcomes = {
        line["saga_id"]: line
        for line in scenario.orchestrator_lines
        if line.get("message", "").startswith(finished)
    }
    assert sorted(outcomes) == sorted(scenario.correlation_ids)
    starts = [line for line in scenario.orchestrator_lines if line.get("message") == "saga started"]
    assert {line["saga_id"]: line["correlation_id"] for line in starts} == scenario.correlation_ids
    for saga_id in scenario.completed:
        line = outcomes[saga_id]
        assert line["message"] == "saga completed" and line["level"] == "INFO"
    for saga_id in scenario.compensated:
        line = outcomes[saga_id]
        assert line["message"].startswith("saga failed and was compensated")
        assert line["level"] == "WARNING"
    for saga_id, line in outcomes.items():
        assert line["logger"] == "orchestrator.engine.executor"
        assert line["saga_type"] == "travel_booking"
        assert line["correlation_id"] == scenario.correlation_ids[saga_id]
        assert line["timestamp"].endswith("Z")


def test_participant_log_lines_carry_service_saga_step_and_key(scenario):
    saga_id = scenario.compensated[0]
    commands = [line for line in scenario.participant_lines if line.get("saga_id") == saga_id]
    seen = Counter((line["service"], line["step"], line["idempotency_key"]) for line in commands)
    assert (("car_rental", "rent_car", f"{saga_id}:rent_car")) in seen
    assert ("flight", "book_flight", f"{saga_id}:book_flight:compensate") in seen
    assert ("hotel", "book_hotel", f"{saga_id}:book_hotel:compensate") in seen


def test_no_log_line_carries_personal_data(scenario):
    log_lines = [
        json.dumps(line)
        for line in scenario.orchestrator_lines + scenario.participant_lines
        if "message" in line
    ]
    assert log_lines
    assert not [line for line in log_lines if TRAVELLER in line]


def spans_of(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans the console exporter printed (a span has a name and a context)."""
    return [line for line in lines if "context" in line and "name" in line]


def test_participant_spans_in_another_process_are_children_of_the_step_spans(scenario):
    orchestrator_spans = spans_of(scenario.orchestrator_lines)
    participant_spans = spans_of(scenario.participant_lines)
    by_id = {span["context"]["span_id"]: span for span in orchestrator_spans}
    sagas = [span for span in orchestrator_spans if span["parent_id"] is None]
    assert sorted(span["attributes"]["saga.id"] for span in sagas) == sorted(
        scenario.correlation_ids
    )
    assert {span["name"] for span in sagas} == {"saga.travel_booking"}
    steps = [span for span in orchestrator_spans if span["parent_id"] is not None]
    for step in steps:
        parent = by_id[step["parent_id"]]
        assert parent["name"] == "saga.travel_booking"
        assert parent["context"]["trace_id"] == step["context"]["trace_id"]
        assert parent["attributes"]["saga.id"] == step["attributes"]["saga.id"]
    assert len(participant_spans) == len(steps) == 22
    for span in participant_spans:
        step = by_id[span["parent_id"]]
        assert step["kind"] == "SpanKind.CLIENT" and span["kind"] == "SpanKind.SERVER"
        assert span["context"]["trace_id"] == step["context"]["trace_id"]
        assert span["attributes"]["saga.step"] == step["attributes"]["saga.step"]
        assert step["attributes"]["rpc.method"] == "/{}/{}".format(
            span["attributes"]["rpc.service"], span["attributes"]["rpc.method"]
        )


# --- in process, with in-memory exporters -----------------------------------------------


def tracer_and_exporter(service: str):
    from opentelemetry.sdk.resources import Resource

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


async def test_trace_links_saga_step_and_participant_spans(tmp_path):
    participant_tracer, participant_spans = tracer_and_exporter("participants")
    orchestrator_tracer, orchestrator_spans = tracer_and_exporter("orchestrator")
    config = ParticipantConfig(
        state_dir=tmp_path / "participants",
        fail_ids=frozenset({FAIL_CAR_CLASS}),
        max_charge_minor=MAX_CHARGE_MINOR,
    )
    server, port = await build_example_server(config, tracer=participant_tracer)
    await server.start()
    store = open_store(f"sqlite:///{tmp_path / 'saga.sqlite3'}")
    await store.open()
    client = ParticipantClient(dict.fromkeys(PARTICIPANT_SERVICES, f"127.0.0.1:{port}"))
    executor = Executor(
        store, Registry(DEFINITIONS), client, telemetry=EngineTelemetry(tracer=orchestrator_tracer)
    )
    try:
        started = await executor.start_saga(
            TRAVEL_BOOKING, "trip-traced", travel(car_class=FAIL_CAR_CLASS), None
        )
        await asyncio.wait_for(executor.wait_idle(), 30)
        saga = await store.get_saga(started.saga.saga_id)
    finally:
        await executor.stop()
        await client.close()
        await store.close()
        await server.stop(None)

    assert saga is not None and saga.status is SagaStatus.FAILED
    (root,) = [s for s in orchestrator_spans.get_finished_spans() if s.parent is None]
    assert root.name == "saga.travel_booking"
    assert root.attributes["saga.id"] == saga.saga_id
    assert root.attributes["saga.correlation_id"] == "trip-traced"
    assert root.attributes["saga.outcome"] == "compensated"
    steps = {
        span.context.span_id: span
        for span in orchestrator_spans.get_finished_spans()
        if span.parent is not None
    }
    assert sorted(span.name for span in steps.values()) == [
        "action book_flight",
        "action book_hotel",
        "action rent_car",
        "compensation book_flight",
        "compensation book_hotel",
    ]
    for step in steps.values():
        assert parent_id(step) == root.context.span_id
        assert step.context.trace_id == root.context.trace_id
    refused = next(span for span in steps.values() if span.name == "action rent_car")
    assert refused.attributes["saga.step.outcome"] == "rejected"
    assert (
        refused.attributes["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    )
    served = participant_spans.get_finished_spans()
    assert len(served) == len(steps)
    for span in served:
        step = steps[parent_id(span)]
        assert span.context.trace_id == root.context.trace_id
        assert span.attributes["saga.id"] == saga.saga_id
        assert span.attributes["saga.step"] == step.attributes["saga.step"]
        assert span.resource.attributes["service.name"] == "participants"


async def test_a_traceparent_sent_with_start_saga_parents_the_sagas_trace(tmp_path):
    from orchestrator.api.grpc_server import create_server as create_orchestrator_server
    from orchestrator.api.servicer import SagaOrchestratorService

    tracer, spans = tracer_and_exporter("orchestrator")
    participants, port = await build_example_server(ParticipantConfig(state_dir=tmp_path / "p"))
    await participants.start()
    store = open_store(f"sqlite:///{tmp_path / 'saga.sqlite3'}")
    await store.open()
    client = ParticipantClient(dict.fromkeys(PARTICIPANT_SERVICES, f"127.0.0.1:{port}"))
    registry = Registry(DEFINITIONS)
    executor = Executor(store, registry, client, telemetry=EngineTelemetry(tracer=tracer))
    service = SagaOrchestratorService(registry, executor, store)
    server, api_port, _ = create_orchestrator_server("127.0.0.1:0", service, [])
    await server.start()
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
            await pb_grpc.SagaOrchestratorStub(channel).StartSaga(
                pb.StartSagaRequest(
                    saga_type="travel_booking", correlation_id="traced", payload=struct(travel())
                ),
                metadata=(("traceparent", f"00-{trace_id}-{span_id}-01"),),
                timeout=10,
            )
        await asyncio.wait_for(executor.wait_idle(), 30)
    finally:
        await server.stop(None)
        await executor.stop()
        await client.close()
        await store.close()
        await participants.stop(None)

    (saga_span,) = [s for s in spans.get_finished_spans() if s.name == "saga.travel_booking"]
    assert saga_span.parent is not None and saga_span.parent.is_remote
    assert saga_span.parent.span_id == int(span_id, 16)
    assert saga_span.context.trace_id == int(trace_id, 16)
    assert all(s.context.trace_id == int(trace_id, 16) for s in spans.get_finished_spans())
