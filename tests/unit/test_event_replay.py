"""Replaying a saga's events from its log renders what its commits rendered: the same
rows (sink, partition, id, type) and the same bodies, the `needsIntervention` flag
included, which the log keeps only through the events that set and clear it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.core.events import EventSet, EventSink, outbox_events, replayed_events
from orchestrator.core.records import (
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SINKS = (
    EventSink("lifecycle", partitions=4),
    EventSink("every", events=EventSet.ALL, include_payload=True, partitions=3),
)
E = TransitionEvent
RUNNING, COMPENSATING = SagaStatus.RUNNING, SagaStatus.COMPENSATING
COMPLETED, FAILED = SagaStatus.COMPLETED, SagaStatus.FAILED

Commit = tuple[dict[str, object], list[tuple[TransitionEvent, SagaStatus, str]]]
"""The saga row's changes after a commit, and its transitions (event, status, step)."""

HALTED_RETRIED_COMPLETED: list[Commit] = [
    ({}, [(E.SAGA_STARTED, RUNNING, "")]),
    ({}, [(E.STEP_STARTED, RUNNING, "charge")]),
    (
        {"needs_intervention": True},
        [(E.STEP_FAILED, RUNNING, "charge"), (E.SAGA_HALTED, RUNNING, "")],
    ),
    ({"needs_intervention": False}, [(E.SAGA_RETRIED, RUNNING, "")]),
    (
        {"status": COMPLETED, "output": b"\x0a\x02ok"},
        [(E.STEP_COMPLETED, RUNNING, "charge"), (E.SAGA_COMPLETED, COMPLETED, "")],
    ),
]
COMPENSATION_GAVE_UP_THEN_RESOLVED: list[Commit] = [
    ({}, [(E.SAGA_STARTED, RUNNING, "")]),
    (
        {"status": COMPENSATING},
        [(E.STEP_FAILED, RUNNING, "charge"), (E.SAGA_COMPENSATING, COMPENSATING, "")],
    ),
    (
        {"status": FAILED, "needs_intervention": True},
        [(E.COMPENSATION_FAILED, COMPENSATING, "hold"), (E.SAGA_FAILED, FAILED, "")],
    ),
    ({"needs_intervention": False}, [(E.STEP_RESOLVED, FAILED, "hold")]),
]
STILL_STUCK: list[Commit] = HALTED_RETRIED_COMPLETED[:3]


@pytest.mark.parametrize(
    "commits",
    [HALTED_RETRIED_COMPLETED, COMPENSATION_GAVE_UP_THEN_RESOLVED, STILL_STUCK],
    ids=["halted-retried-completed", "compensation-gave-up-then-resolved", "still-stuck"],
)
def test_a_replay_renders_every_event_as_its_commit_did(commits: list[Commit]):
    saga = SagaRecord(
        saga_id="0190a0b0-0000-7000-8000-000000000001",
        saga_type="trip",
        definition_version=2,
        correlation_id="order-7",
        payload={},
        status=RUNNING,
        create_time=T0,
        update_time=T0,
        namespace="acme",
    )
    log: list[TransitionRecord] = []
    steps: list[StepRecord] = []
    originals = []
    for number, (changes, transitions) in enumerate(commits):
        moment = T0 + timedelta(seconds=number)
        saga = dataclasses.replace(saga, update_time=moment, **changes)  # type: ignore[arg-type]
        written = [
            TransitionRecord(saga.saga_id, len(log) + n + 1, event, moment, status, step=step)
            for n, (event, status, step) in enumerate(transitions)
        ]
        if any(t.event is E.STEP_COMPLETED for t in written):
            steps = [StepRecord(saga.saga_id, 0, "charge", StepStatus.COMPLETED, result=b"\x01")]
        log.extend(written)
        originals.extend(outbox_events(SINKS, saga, written, steps))

    replayed = replayed_events(SINKS, saga, log, steps, {t.seq for t in log})

    assert replayed == originals
    assert any(b'"needsIntervention":true' in row.body for row in originals)
