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
from types import TracebackType
from typing import Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram

from orchestrator.core.command_failures import classify_failure
from orchestrator.core.machine import SagaRun
from orchestrator.core.records import SagaStatus
from orchestrator.telemetry.logs import log_context
from orchestrator.telemetry.metrics import LabelledChildren, SagaMetrics

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

    A saga's span starts a new trace per drive (the first drive's is a child of the
    trace context StartSaga's caller sent, if any), so a saga resumed after a restart
    (or handed to another replica) appears as a new trace with the same saga.id
    attribute; the store, not the trace, links the two.
    """

    def __init__(
        self, metrics: SagaMetrics | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self._children = None if metrics is None else _BoundChildren(metrics)

    # --- saga lifecycle ----------------------------------------------------------------

    def saga_started(self, saga_type: str) -> None:
        children = self._children
        if children is not None:
            children.sagas_started[saga_type].inc()

    def drive_started(self) -> None:
        if self.metrics is not None:
            self.metrics.drives_in_flight += 1

    def drive_ended(self) -> None:
        if self.metrics is not None:
            self.metrics.drives_in_flight -= 1

    def saga_finished(self, run: SagaRun) -> None:
        """Count a terminal state this replica just committed, and its duration from
        creation (across restarts: the creation time is stored)."""
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("saga.status", str(run.status))
            span.set_attribute("saga.outcome", saga_outcome(run))
        children = self._children
        if children is None:
            return
        saga_type = run.saga.saga_type
        outcome = saga_outcome(run)
        if outcome == COMPLETED:
            children.sagas_completed[saga_type].inc()
        else:
            children.sagas_failed[saga_type].inc()
            if outcome == COMPENSATED:
                children.sagas_compensated[saga_type].inc()
            else:
                children.sagas_needing_intervention[saga_type].inc()
        elapsed = (run.saga.update_time - run.saga.create_time).total_seconds()
        children.saga_duration[saga_type, outcome].observe(max(0.0, elapsed))

    def leases_claimed(self, count: int) -> None:
        """Sagas claimed because their lease was missing or expired (a takeover)."""
        if self.metrics is not None and count:
            self.metrics.lease_claims.inc(count)

    def lease_lost(self) -> None:
        """A drive stopped because another replica holds the saga's lease now."""
        if self.metrics is not None:
            self.metrics.leases_lost.inc()

    def lock_queued(self, run: SagaRun) -> None:
        if self._children is not None:
            self._children.lock_waits[run.saga.saga_type].inc()

    def locks_acquired(self, run: SagaRun) -> None:
        """After a wait, how long it took (from the stored time the saga queued)."""
        since = run.saga.lock_wait_since
        if self._children is not None and since is not None:
            waited = (run.saga.update_time - since).total_seconds()
            self._children.lock_wait_duration[run.saga.saga_type].observe(max(0.0, waited))

    def lock_waiting(self, delta: int) -> None:
        if self.metrics is not None:
            self.metrics.lock_waiters.inc(delta)

    @contextlib.contextmanager
    def driving(self, run: SagaRun, parent: otel_context.Context | None = None) -> Iterator[None]:
        """Bind the saga's log fields and, when tracing, open the saga's span: a root, or
        the child of `parent` (the trace context StartSaga's caller sent)."""
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
                context=parent if parent is not None else otel_context.Context(),
                attributes={
                    "saga.id": saga.saga_id,
                    "saga.type": saga.saga_type,
                    "saga.definition_version": saga.definition_version,
                    "saga.correlation_id": saga.correlation_id,
                },
            ):
                yield

    # --- commands ----------------------------------------------------------------------

    def command(
        self,
        run: SagaRun,
        step: str,
        kind: str,
        attempt: int,
        rpc_method: str,
        retry_codes: frozenset[str] = frozenset(),
    ) -> CommandAttempt:
        """One attempt of a step's command: log fields, a client span that the outbound
        metadata carries to the participant, and its latency by outcome."""
        return CommandAttempt(self, run, step, kind, attempt, rpc_method, retry_codes)

    def retrying(self, run: SagaRun, step: str, kind: str) -> None:
        if self._children is not None:
            self._children.step_retries[run.saga.saga_type, step, kind].inc()

    # --- store -------------------------------------------------------------------------

    def store_commit(self) -> contextlib.AbstractContextManager[None]:
        """Time one commit as the saga waits for it (failed ones too)."""
        if self.metrics is None:
            return _UNTIMED
        return _TimedCommit(self.metrics.store_commit_duration)


_UNTIMED: Final = contextlib.nullcontext()


class _BoundChildren:
    """The labelled metrics the engine records per saga, their children bound once
    (see `LabelledChildren`): keyed by saga type, or by the tuple of label values."""

    __slots__ = (
        "lock_wait_duration",
        "lock_waits",
        "saga_duration",
        "sagas_compensated",
        "sagas_completed",
        "sagas_failed",
        "sagas_needing_intervention",
        "sagas_started",
        "step_duration",
        "step_retries",
    )

    def __init__(self, metrics: SagaMetrics) -> None:
        self.sagas_started = LabelledChildren(metrics.sagas_started)
        self.sagas_completed = LabelledChildren(metrics.sagas_completed)
        self.sagas_failed = LabelledChildren(metrics.sagas_failed)
        self.sagas_compensated = LabelledChildren(metrics.sagas_compensated)
        self.sagas_needing_intervention = LabelledChildren(metrics.sagas_needing_intervention)
        self.saga_duration = LabelledChildren(metrics.saga_duration)
        self.step_duration = LabelledChildren(metrics.step_duration)
        self.step_retries = LabelledChildren(metrics.step_retries)
        self.lock_waits = LabelledChildren(metrics.lock_waits)
        self.lock_wait_duration = LabelledChildren(metrics.lock_wait_duration)


class _TimedCommit:
    """Observes the time its body took, raised or not (a class, not a generator:
    it wraps every commit)."""

    __slots__ = ("_histogram", "_started")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self._histogram.observe(time.perf_counter() - self._started)


class CommandAttempt:
    """The context of one command attempt (see `EngineTelemetry.command`).

    A class rather than a generator because it wraps every command sent; its
    outcome is ok, or how the engine reads the error (transient, rejected,
    outcome_unknown), or cancelled (shutdown, lease lost), or error.
    """

    __slots__ = (
        "_attempt",
        "_kind",
        "_log_fields",
        "_retry_codes",
        "_rpc_method",
        "_run",
        "_span",
        "_started",
        "_step",
        "_telemetry",
        "_token",
    )

    def __init__(
        self,
        telemetry: EngineTelemetry,
        run: SagaRun,
        step: str,
        kind: str,
        attempt: int,
        rpc_method: str,
        retry_codes: frozenset[str],
    ) -> None:
        self._telemetry = telemetry
        self._run = run
        self._step = step
        self._kind = kind
        self._attempt = attempt
        self._rpc_method = rpc_method
        self._retry_codes = retry_codes
        self._span: trace.Span | None = None
        self._token: Token[otel_context.Context] | None = None
        self._log_fields = log_context(step=step, kind=kind, attempt=attempt)
        self._started = 0.0

    def __enter__(self) -> None:
        tracer = self._telemetry.tracer
        if tracer is not None:
            saga = self._run.saga
            self._span = tracer.start_span(
                f"{self._kind} {self._step}",
                kind=SpanKind.CLIENT,
                attributes={
                    "saga.id": saga.saga_id,
                    "saga.type": saga.saga_type,
                    "saga.step": self._step,
                    "saga.step.kind": self._kind,
                    "saga.step.attempt": self._attempt,
                    "rpc.system": "grpc",
                    "rpc.method": self._rpc_method,
                },
            )
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._log_fields.__enter__()
        self._started = time.perf_counter()

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        self._log_fields.__exit__()
        code = grpc.StatusCode.OK
        if error is None:
            outcome = "ok"
        elif isinstance(error, grpc.aio.AioRpcError):
            code = error.code()
            outcome = classify_failure(code.name, self._retry_codes).value
        elif isinstance(error, asyncio.CancelledError):
            outcome = "cancelled"
        else:
            outcome = "error"
        children = self._telemetry._children
        if children is not None:
            labels = (self._run.saga.saga_type, self._step, self._kind, outcome)
            children.step_duration[labels].observe(elapsed)
        span = self._span
        if span is not None:
            span.set_attribute("saga.step.outcome", outcome)
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if outcome != "ok":
                span.set_status(Status(StatusCode.ERROR, f"{outcome}: {code.name}"))
            span.end()
        if self._token is not None:
            otel_context.detach(self._token)
