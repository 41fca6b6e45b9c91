"""The catalogue of saga types as data: what `ListSagaTypes` answers and `saga describe
--json` prints, built once from the definitions the engine runs.

`definition_to_proto` is the one reading of a definition; `definition_document` turns
that message into the JSON document, so the document printed from loaded modules and
the one printed from a server's catalogue are the same.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from orchestrator.core.definition import (
    PIVOT_OUTCOMES,
    AsyncCompletion,
    RetryPolicy,
    SagaDefinition,
    Step,
)
from orchestrator.core.escalation import ESCALATION_ASSUMES, step_escalation
from orchestrator.core.tracking import Observed, OnStuck, Tracking
from saga.v1 import orchestrator_pb2 as pb


def _policy(policy: RetryPolicy) -> pb.RetryPolicy:
    return pb.RetryPolicy(
        max_attempts=policy.max_attempts,
        initial_backoff_seconds=policy.initial_backoff,
        max_backoff_seconds=policy.max_backoff,
        multiplier=policy.multiplier,
        jitter=policy.jitter,
        retry_codes=sorted(policy.retry_codes),
    )


def definition_to_proto(definition: SagaDefinition, *, latest: bool = True) -> pb.SagaDefinition:
    """One definition as the catalogue shows it; `latest` marks the version StartSaga uses."""
    message = pb.SagaDefinition(
        saga_type=definition.name,
        version=definition.version,
        description=definition.description,
        input=definition.input_type.DESCRIPTOR.full_name,
        output=(
            definition.output_type.DESCRIPTOR.full_name
            if definition.output_type is not None
            else ""
        ),
        latest=latest,
    )
    if definition.deadline is not None:
        message.deadline_seconds = definition.deadline
    pivot = definition.pivot_stage
    if pivot is not None:
        message.pivot_stage = pivot + 1
    if definition.tracking is not None:
        message.tracking.CopyFrom(tracking_to_proto(definition.tracking))
    for index, step in enumerate(definition.all_steps):
        entry = message.steps.add(
            name=step.name,
            group=definition.group_of(index),
            stage=definition.stage_of(index) + 1,
            participant=step.participant,
            action=f"{step.action.service}.{step.action.method}" if step.action else "",
            forward_only=definition.is_forward_only(index),
            retriable=step.retriable,
            timeout_seconds=step.timeout,
            retry=_policy(definition.action_retry(step)),
            compensation_retry=_policy(definition.compensation_retry_of(step)),
            read_only=step.read_only,
            escalation_seconds=_escalation_seconds(definition, step),
        )
        if step.compensation is not None:
            entry.compensation = f"{step.compensation.service}.{step.compensation.method}"
        if step.completion is not None:
            entry.completion.CopyFrom(completion_to_proto(step.completion))
        if step.observed is not None:
            entry.observed.CopyFrom(observed_to_proto(step.observed))
    return message


def _escalation_seconds(definition: SagaDefinition, step: Step) -> float:
    """An observed step is given up on (flagged or rescued) when its window ends."""
    if step.observed is not None:
        return step.observed.within
    return round(step_escalation(definition, step).total_seconds, 3)


def tracking_to_proto(tracking: Tracking) -> pb.TrackingDefinition:
    return pb.TrackingDefinition(
        started_by=list(tracking.started_by),
        correlation=tracking.correlation.describe(),
        on_stuck=tracking.on_stuck.value,
    )


def observed_to_proto(observed: Observed) -> pb.ObservedStepDefinition:
    return pb.ObservedStepDefinition(
        completes_on=list(observed.completes_on),
        fails_on=list(observed.fails_on),
        compensated_on=list(observed.compensated_on),
        within_seconds=observed.within,
        compensation_event=observed.compensation_event,
    )


def on_stuck_text(on_stuck: str) -> str:
    """What a missed window leads to, for people."""
    if on_stuck == OnStuck.COMPENSATE.value:
        return (
            "compensate: the orchestrator rescues the saga, undoing the completed steps "
            "(and the stuck one) itself, in reverse order"
        )
    return "needs_intervention: the saga is flagged for an operator (the flow is not ours)"


def observed_lines(step: pb.StepDefinition, on_stuck: str) -> list[tuple[str, str]]:
    """An observed step's events, window and undo, as (label, text) pairs."""
    observed = step.observed
    lines = [("completes on", ", ".join(observed.completes_on))]
    if observed.fails_on:
        lines.append(("fails on", ", ".join(observed.fails_on)))
    lines.append(("within", f"{observed.within_seconds:g}s of the previous step's event"))
    lines.append(("undone on", ", ".join(observed.compensated_on) or "none (not observed)"))
    if step.HasField("compensation"):
        rescue = f"in a rescue, call {step.compensation}"
    elif observed.compensation_event:
        rescue = f"in a rescue, publish {observed.compensation_event}"
    elif observed.compensated_on:
        rescue = "none: a rescue waits for its undo event"
    else:
        rescue = "none"
    lines.append(("compensation", rescue))
    then = "rescue" if on_stuck == OnStuck.COMPENSATE.value else "flag for an operator"
    lines.append(("on stuck", f"no event within the window: {then}"))
    return lines


def tracked_text(message: pb.SagaDefinition) -> str:
    """A tracked type for people: start events, correlation, each step's events,
    window and compensation, and what a stuck instance leads to."""
    title = f"{message.saga_type} v{message.version} (tracked)"
    lines = [f"{title}: {message.description}" if message.description else title]
    tracking = message.tracking
    lines.append(f"started by:  {', '.join(tracking.started_by)}")
    lines.append(f"correlation: {tracking.correlation}")
    lines.append(f"on stuck:    {on_stuck_text(tracking.on_stuck)}")
    lines.append("")
    for step in message.steps:
        lines.append(f"{step.stage}. {step.name} (observed)")
        lines.append(f"   participant:  {step.participant}")
        lines.extend(
            f"   {label + ':':<13} {text}"
            for label, text in observed_lines(step, tracking.on_stuck)
        )
    lines.append("")
    lines.append(
        "a failing event unwinds the saga: each completed step, last first, waits for its "
        "undo event"
    )
    return "\n".join(lines) + "\n"


def completion_to_proto(completion: AsyncCompletion) -> pb.AsyncCompletionDefinition:
    message = pb.AsyncCompletionDefinition(
        result_type=completion.result_type.DESCRIPTOR.full_name,
        timeout_seconds=completion.timeout,
        on_timeout=completion.on_timeout.value,
    )
    if completion.heartbeat_timeout is not None:
        message.heartbeat_timeout_seconds = completion.heartbeat_timeout
    return message


def completion_text(completion: pb.AsyncCompletionDefinition) -> str:
    """One line for people: what an asynchronous step waits for, how long, and then."""
    beats = (
        f", a heartbeat at least every {completion.heartbeat_timeout_seconds:g}s"
        if completion.HasField("heartbeat_timeout_seconds")
        else ""
    )
    then = "compensate" if completion.on_timeout == "compensate" else "wait for an operator"
    return (
        f"later, a {completion.result_type} within {completion.timeout_seconds:g}s"
        f"{beats}; on timeout: {then}"
    )


_OPTIONAL_FIELDS = {"deadline_seconds", "pivot_stage", "tracking"}
_OPTIONAL_STEP_FIELDS = {"compensation", "completion", "observed"}


def definition_document(message: pb.SagaDefinition) -> dict[str, Any]:
    """`saga describe --json`: the catalogue entry as JSON data; unset optional values
    are null, integers stay integers."""
    document: dict[str, Any] = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    for name in _OPTIONAL_FIELDS:
        document.setdefault(name, None)
    for step in document["steps"]:
        for name in _OPTIONAL_STEP_FIELDS:
            step.setdefault(name, None)
    return document


def escalation_text(step: pb.StepDefinition) -> str:
    """When the saga gives up on a failing step, at worst, and what it comes to then."""
    rollback = step.read_only and not (step.retriable or step.forward_only)
    then = "the steps before it are compensated" if rollback else "needs_intervention"
    return f"within {step.escalation_seconds:.1f}s of its first attempt, then {then}"


def describe_text(message: pb.SagaDefinition) -> str:
    """A catalogue entry for people: stages, steps, RPCs, pivot (what a server can say
    without the definition modules; `saga describe` without --address says more)."""
    if message.HasField("tracking"):
        return tracked_text(message)
    title = f"{message.saga_type} v{message.version}"
    lines = [f"{title}: {message.description}" if message.description else title]
    lines.append(f"input: {message.input}")
    if message.output:
        lines.append(f"output: {message.output}")
    if message.HasField("deadline_seconds"):
        lines.append(f"deadline: {message.deadline_seconds:g}s")
    lines.append("")
    for step in message.steps:
        group = f" (parallel group {step.group})" if step.group else ""
        lines.append(f"{step.stage}. {step.name}{group}")
        lines.append(f"   participant:  {step.participant}")
        lines.append(f"   action:       {step.action}")
        if step.HasField("compensation"):
            undo = step.compensation
        elif step.read_only:
            undo = "none (read-only: nothing to undo)"
        else:
            undo = "none (irreversible)"
        lines.append(f"   compensation: {undo}")
        if step.HasField("completion"):
            lines.append(f"   completes:    {completion_text(step.completion)}")
        lines.append(f"   timeout:      {step.timeout_seconds:g}s per attempt")
        lines.append(f"   retry:        {step.retry.max_attempts} attempts")
        lines.append(f"   gives up:     {escalation_text(step)}")
    lines.append("")
    lines.append(f"gives up within: the worst case, where {ESCALATION_ASSUMES}")
    if message.HasField("pivot_stage"):
        lines.append("")
        lines.append(f"pivot: stage {message.pivot_stage}")
        lines.extend(f"  {outcome}" for outcome in PIVOT_OUTCOMES)
    return "\n".join(lines) + "\n"
