"""What the executor reports while it drives sagas: metrics, log fields and spans.

The executor calls these at a handful of points (a saga started, a drive, a
command attempt, a retry, a terminal commit, a store commit) and stays free of
Prometheus and OpenTelemetry details. With no metrics and no tracer every call
is a few branches and a context-variable update for the log fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextvars import Token
from typing import Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from orchestrator.commands import classify
from orchestrator.machine import SagaRun
from orchestrator.records import SagaStatus
from orchestrator.telemetry.logs import log_context
from orchestrator.telemetry.metrics import SagaMetrics

ACTION: Final = "action"
COMPENSATION: Final = "compensation"

# Saga outcomes, as the `outcome` label of saga_duration_seconds.
COMPLETED: Final = "completed"
COMPENSATED: Final = "compensated"
NEEDS_INTERVENTION: Final = "needs_intervention"


def saga_outcome(run: SagaRun) -> str:
    """How a terminal saga ended: completed, compensated or needs_intervention."""
    if run.status is SagaStatus.COMPLETED:
        return COMPLETED
    return NEEDS_INTERVENTION if run.saga.needs_intervention else COMPENSATED


class EngineTelemetry:
    """Metrics (optional), log context and spans (optional) for one executor.

    A saga's span is a root: it starts a new trace per drive, so a saga resumed
    after a restart (or handed to another replica) appears as a new trace with
    the same saga.id attribute; the store, not the trace, links the two.
    """

    def __init__(
        self, metrics: SagaMetrics | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer

    # --- saga lifecycle ----------------------------------------------------------------

    def saga_started(self, saga_type: str) -> None:
        if self.metrics is not None:
            self.metrics.sagas_started.labels(saga_type).inc()

    def drive_started(self) -> None:
        if self.metrics is not None:
            self.metrics.sagas_in_flight.inc()

    def drive_ended(self) -> None:
        if self.metrics is not None:
            self.metrics.sagas_in_flight.dec()

    def saga_finished(self, run: SagaRun) -> None:
        """Count a terminal state this replica just committed, and its duration from
        creation (across restarts: the creation time is stored)."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("saga.status", str(run.status))
            span.set_attribute("saga.outcome", saga_outcome(run))
        metrics = self.metrics
        if metrics is None:
            return
        saga_type = run.saga.saga_type
        outcome = saga_outcome(run)
        if outcome == COMPLETED:
            metrics.sagas_completed.labels(saga_type).inc()
        else:
            metrics.sagas_failed.labels(saga_type).inc()
            if outcome == COMPENSATED:
                metrics.sagas_compensated.labels(saga_type).inc()
            else:
                metrics.sagas_needing_intervention.labels(saga_type).inc()
        elapsed = (run.saga.update_time - run.saga.create_time).total_seconds()
        metrics.saga_duration.labels(saga_type, outcome).observe(max(0.0, elapsed))

    @contextlib.contextmanager
    def driving(self, run: SagaRun) -> Iterator[None]:
        """Bind the saga's log fields and, when tracing, open the saga's span (a root)."""
        saga = run.saga
        with log_context(
            saga_id=saga.saga_id,
            saga_type=saga.saga_type,
            correlation_id=saga.correlation_id or None,
        ):
            if self.tracer is None:
                yield
                return
            with self.tracer.start_as_current_span(
                f"saga.{saga.saga_type}",
                context=otel_context.Context(),
                attributes={
                    "saga.id": saga.saga_id,
                    "saga.type": saga.saga_type,
                    "saga.definition_version": saga.definition_version,
                    "saga.correlation_id": saga.correlation_id,
                },
            ):
                yield

    # --- commands ----------------------------------------------------------------------

    @contextlib.contextmanager
    def command(
        self,
        run: SagaRun,
        step: str,
        kind: str,
        attempt: int,
        rpc_method: str,
        retry_codes: frozenset[str] = frozenset(),
    ) -> Iterator[None]:
        """One attempt of a step's command: log fields, a client span that the outbound
        metadata carries to the participant, and its latency by outcome.

        Outcome: ok, or how the engine reads the error (transient, rejected,
        outcome_unknown), or cancelled (shutdown, lease lost), or error.
        """
        saga_type = run.saga.saga_type
        span: trace.Span | None = None
        token: Token[otel_context.Context] | None = None
        if self.tracer is not None:
            span = self.tracer.start_span(
                f"{kind} {step}",
                kind=SpanKind.CLIENT,
                attributes={
                    "saga.id": run.saga.saga_id,
                    "saga.type": saga_type,
                    "saga.step": step,
                    "saga.step.kind": kind,
                    "saga.step.attempt": attempt,
                    "rpc.system": "grpc",
                    "rpc.method": rpc_method,
                },
            )
            token = otel_context.attach(trace.set_span_in_context(span))
        outcome = "ok"
        code = grpc.StatusCode.OK
        started = time.perf_counter()
        try:
            with log_context(step=step, kind=kind, attempt=attempt):
                yield
        except grpc.aio.AioRpcError as error:
            code = error.code()
            outcome = classify(code, retry_codes).value
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.step_duration.labels(saga_type, step, kind, outcome).observe(
                    time.perf_counter() - started
                )
            if span is not None:
                span.set_attribute("saga.step.outcome", outcome)
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if outcome != "ok":
                    span.set_status(Status(StatusCode.ERROR, f"{outcome}: {code.name}"))
                span.end()
            if token is not None:
                otel_context.detach(token)

    def retrying(self, run: SagaRun, step: str, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.step_retries.labels(run.saga.saga_type, step, kind).inc()

    # --- store -------------------------------------------------------------------------

    @contextlib.contextmanager
    def store_commit(self, batch_size: int) -> Iterator[None]:
        """Time one store commit (of `batch_size` saga commits); failed ones too."""
        if self.metrics is None:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        finally:
            self.metrics.store_commit_duration.observe(time.perf_counter() - started)
            self.metrics.store_commit_batch_size.observe(batch_size)
