"""The API's view of stored records: sagas, steps and transitions as messages.

One mapping of each record enum to its proto enum, so the servicer, the web console
(through the servicer) and every RPC answer with the same names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import any_pb2, struct_pb2

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.errors import SagaError
from orchestrator.core.machine import SagaRun
from orchestrator.core.namespaces import unqualified
from orchestrator.core.observing import Expectation, expectations
from orchestrator.core.records import (
    CreateSagaResult,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.core.timestamps import optional_timestamp
from orchestrator.core.tracking import TRACKED_KEY_PREFIX
from saga.v1 import orchestrator_pb2 as pb

SAGA_STATUS_PROTO: dict[SagaStatus, Any] = {
    status: pb.SagaStatus.Value(f"SAGA_STATUS_{status.value}") for status in SagaStatus
}
STEP_STATUS_PROTO: dict[StepStatus, Any] = {
    status: pb.StepStatus.Value(f"STEP_STATUS_{status.value}") for status in StepStatus
}
EVENT_PROTO: dict[TransitionEvent, Any] = {
    event: pb.TransitionEvent.Value(f"TRANSITION_EVENT_{event.value}") for event in TransitionEvent
}

ANY_TYPE_URL_PREFIX = "type.googleapis.com/"


def packed_reply(type_name: str, value: bytes | None) -> any_pb2.Any | None:
    """A step's stored reply bytes as an Any of its reply type (None if there is none)."""
    return (
        None
        if value is None
        else any_pb2.Any(type_url=ANY_TYPE_URL_PREFIX + type_name, value=value)
    )


def is_tracked(saga: SagaRecord) -> bool:
    """True for a tracked saga's instance (its idempotency key is the tracker's, a
    prefix StartSaga refuses), so a list without definitions can tell it apart."""
    return unqualified(saga.idempotency_key or "", saga.namespace).startswith(TRACKED_KEY_PREFIX)


def expected_next(
    definition: SagaDefinition, saga: SagaRecord, steps: list[StepRecord]
) -> dict[str, Expectation]:
    """A tracked saga's waiting steps by name, each with the events it expects next and
    by when (core's `expectations`); empty for an orchestrated saga."""
    if definition.tracking is None or len(steps) != len(definition.all_steps):
        return {}
    try:
        run = SagaRun(definition, saga, steps, 0)
    except SagaError:
        return {}
    return {expectation.step: expectation for expectation in expectations(run)}


def saga_to_proto(
    saga: SagaRecord,
    steps: list[StepRecord],
    groups: Callable[[int], str] | None = None,
    reply_types: Callable[[int], str] | None = None,
    *,
    with_payload: bool = True,
    with_output: bool = True,
    definition: SagaDefinition | None = None,
) -> pb.Saga:
    """The API's view of a stored saga; `groups` names each step's Parallel group and
    `reply_types` the full name of its action's reply (without it, replies are left out);
    `definition` adds each step's participant and, for a tracked saga, what its waiting
    steps expect next."""
    expected = expected_next(definition, saga, steps) if definition is not None else {}
    payload = struct_pb2.Struct()
    if with_payload:
        payload.update(saga.payload)
    output = None
    if with_output and saga.output is not None:
        output = any_pb2.Any.FromString(saga.output)
    return pb.Saga(
        saga_id=saga.saga_id,
        saga_type=saga.saga_type,
        definition_version=saga.definition_version,
        correlation_id=saga.correlation_id,
        status=SAGA_STATUS_PROTO[saga.status],
        failure_reason=saga.failure_reason,
        failed_step=saga.failed_step,
        needs_intervention=saga.needs_intervention,
        create_time=optional_timestamp(saga.create_time),
        update_time=optional_timestamp(saga.update_time),
        payload=payload if with_payload else None,
        idempotency_key=unqualified(saga.idempotency_key or "", saga.namespace),
        namespace=saga.namespace,
        tracked=is_tracked(saga),
        deadline_time=optional_timestamp(saga.deadline_time),
        lock_wait_time=optional_timestamp(saga.lock_wait_since),
        output=output,
        steps=[
            pb.Step(
                name=step.name,
                status=STEP_STATUS_PROTO[step.status],
                attempts=step.attempts,
                error=step.error,
                compensation_attempts=step.compensation_attempts,
                start_time=optional_timestamp(step.start_time),
                update_time=optional_timestamp(step.update_time),
                next_attempt_time=optional_timestamp(step.next_attempt_time),
                wait_deadline=optional_timestamp(step.wait_deadline),
                group=groups(step.index) if groups is not None else "",
                reply=(
                    packed_reply(reply_types(step.index), step.result)
                    if reply_types is not None
                    else None
                ),
                expected_event_types=(
                    expected[step.name].event_types if step.name in expected else ()
                ),
                expecting_undo=step.name in expected and expected[step.name].undo,
                participant=(
                    definition.all_steps[step.index].participant if definition is not None else ""
                ),
            )
            for step in steps
        ],
    )


def transition_to_proto(transition: TransitionRecord) -> pb.Transition:
    """The API's view of one log row."""
    return pb.Transition(
        seq=transition.seq,
        event=EVENT_PROTO[transition.event],
        time=optional_timestamp(transition.time),
        step=transition.step,
        saga_status=SAGA_STATUS_PROTO[transition.saga_status],
        step_status=(
            STEP_STATUS_PROTO[transition.step_status]
            if transition.step_status is not None
            else pb.STEP_STATUS_UNSPECIFIED
        ),
        attempt=transition.attempt,
        error=transition.error,
        actor=transition.actor,
        reason=transition.reason,
    )


def start_response(result: CreateSagaResult) -> pb.StartSagaResponse:
    """StartSaga's answer (also each StartSagas item's) for a created or repeated saga."""
    return pb.StartSagaResponse(
        saga_id=result.saga.saga_id,
        status=SAGA_STATUS_PROTO[result.saga.status],
        created=result.created,
    )
